"""Expected failures: the CLI shows their message as one line, with no traceback."""

import shlex
import sys


class MnistCliError(Exception):
    """A failure the user can act on (bad input, missing data, bad option)."""

    exit_code = 1


class DataError(MnistCliError):
    """The dataset is missing, unreadable or corrupt."""


class CheckpointError(MnistCliError):
    """A checkpoint cannot be read, is unsafe, or does not fit."""


class ImageError(MnistCliError):
    """A user's image cannot be read or holds no digit."""


class ImageTooLarge(ImageError):
    """An image over the size mnistcli decodes (a decompression bomb, or simply too big)."""


class OptionError(MnistCliError):
    """An option value that cannot work."""

    exit_code = 2


class MissingExtra(MnistCliError):
    """Something that needs an optional extra that is not installed; says how to add it."""

    def __init__(self, extra: str, what: str):
        self.extra = extra
        super().__init__(f"{what} needs the {extra} extra: {install_command(extra)}")


def install_command(extra: str) -> str:
    """The command that adds an optional extra to the Python this mnistcli runs in."""
    return f"{shlex.quote(sys.executable)} -m pip install {shlex.quote(f'mnistcli[{extra}]')}"

"""Expected failures: the CLI shows their message as one line, with no traceback."""


class MnistCliError(Exception):
    """A failure the user can act on (bad input, missing data, bad option)."""

    exit_code = 1


class DataError(MnistCliError):
    """The dataset is missing, unreadable or corrupt."""


class CheckpointError(MnistCliError):
    """A checkpoint cannot be read, is unsafe, or does not fit."""


class ImageError(MnistCliError):
    """A user's image cannot be read or holds no digit."""


class OptionError(MnistCliError):
    """An option value that cannot work."""

    exit_code = 2

"""What the commands share: error handling, option types and choices built from the registries."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from mnistcli import ui
from mnistcli.commands import params
from mnistcli.dataset_specs import dataset_names
from mnistcli.errors import MnistCliError
from mnistcli.models import model_names
from mnistcli.settings import DEVICES, RunSettings

F = TypeVar("F", bound=Callable[..., Any])

_state = {"debug": False}


def set_debug(on: bool) -> None:
    _state["debug"] = on


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get("MNISTCLI_DEBUG", "") not in ("", "0")


def handles_errors(fn: F) -> F:
    """Expected failures become one red line on stderr and a non-zero exit (a traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MnistCliError as exc:
            if debug_enabled():
                raise
            ui.error(str(exc))
            raise typer.Exit(exc.exit_code) from exc
        except KeyboardInterrupt as exc:
            if debug_enabled():
                raise
            ui.error("interrupted")
            raise typer.Exit(130) from exc

    return wrapper  # type: ignore[return-value]


def choices(name: str, values: Iterable[str]) -> type[Enum]:
    """An Enum of `values` for Typer: the parser refuses anything else, and help lists them."""
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


# Typer needs Enum classes in the annotations; to mypy they are the plain strings they stand for.
if TYPE_CHECKING:
    from typing import TypeAlias

    ModelName: TypeAlias = str
    DatasetName: TypeAlias = str
    DeviceName: TypeAlias = str
    SplitName: TypeAlias = str
else:
    ModelName = choices("ModelName", model_names())
    DatasetName = choices("DatasetName", dataset_names())
    DeviceName = choices("DeviceName", DEVICES)
    SplitName = choices("SplitName", ("test", "val", "train"))


def value(choice: Any) -> Any:
    """The plain value of a choice (Typer passes Enum members), or the value itself."""
    return choice.value if isinstance(choice, Enum) else choice


def print_json(document: Any) -> None:
    """One JSON document on stdout, nothing else there."""
    print(json.dumps(document, indent=2))


DataDir = Annotated[Optional[Path], params.declared_option(RunSettings, "data_dir")]
NoDownload = Annotated[bool, params.option("--no-download", help="Never download; fail if the data is not on disk.")]
Device = Annotated[DeviceName, params.declared_option(RunSettings, "device")]
Json = Annotated[bool, params.option("--json", help="Print one JSON document on stdout and nothing else.")]
CheckpointPath = Annotated[
    Optional[Path],
    params.option(
        "--checkpoint",
        "-c",
        help="Model file (.pt checkpoint or exported .safetensors).",
        default="./checkpoints/best.pt, else the bundled model",
        metavar="PATH",
    ),
]
BareModel = Annotated[
    Optional[ModelName],
    params.option(
        "--model", help="Architecture of a bare state_dict saved by other tools.", metavar="|".join(model_names())
    ),
]

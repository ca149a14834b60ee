"""The command line's options derived from the declared settings, and mnistcli's command classes.

`options(Recipe)` gives one Typer option per declared setting. Every value arrives as the text the
user typed (None when not given), and `parse` turns it into the setting's type, so that a bad value
of any kind is one plain line naming the option and what it allows, the same line a config file's
bad value gets. The classes lay `--help` out in the declared panels at any width, and turn the
parser's own usage errors into one line too.
"""

from __future__ import annotations

import enum
import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from mnistcli import declare, ui
from mnistcli.declare import Declared
from mnistcli.errors import OptionError

# The parser's exception classes, from Typer's own copy of click where it has one (0.29 and later).
_UsageError: type[Exception] = typer.BadParameter.__mro__[1]
_ClickException: type[Exception] = typer.BadParameter.__mro__[2]


def metavar(d: Declared) -> str:
    if d.setting.metavar:
        return d.setting.metavar
    choices = d.choices()
    if choices is not None:
        return "|".join(choices)
    return {int: "N", float: "X", str: "TEXT", Path: "PATH"}.get(d.base_type, "VALUE")


def default_text(d: Declared) -> Optional[str]:
    """What --help says the default is."""
    if d.setting.show_default is not None:
        return d.setting.show_default
    if d.base_type is bool:
        names = (d.setting.flag or d.flag).split("/")
        return None if len(names) == 1 else (names[0] if d.default else names[1]).lstrip("-")
    return None if d.default is None else f"{d.default:g}" if isinstance(d.default, float) else str(d.default)


def help_text(d: Declared) -> str:
    default = default_text(d)
    return d.setting.help + (f"  [default: {default}]" if default else "")


def declared_option(cls: type, name: str, *names: str) -> Any:
    """The Typer option of one declared setting, for a command that shares it (evaluate's --device is
    train's): the same help, metavar, default text and environment variable."""
    d = declare.by_name(cls)[name]
    return typer.Option(
        *(names or (d.setting.flag or d.flag,)),
        help=help_text(d),
        show_default=False,
        metavar=metavar(d),
        envvar=d.setting.envvar,
    )


def option(*names: str, help: str, default: Optional[str] = None, metavar: Optional[str] = None) -> Any:
    """A command's own option, with its help laid out as the declared ones are."""
    return typer.Option(
        *names, help=help + (f"  [default: {default}]" if default else ""), show_default=False, metavar=metavar
    )


def options(cls: type, skip: Iterable[str] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per command-line setting of `cls`, for a Typer command's signature."""
    out = []
    for d in declare.declared(cls):
        if not d.setting.cli or d.name in skip:
            continue
        names = (d.setting.flag or d.flag,)
        kind = Optional[bool] if d.base_type is bool else Optional[str]
        info = typer.Option(
            *names,
            help=help_text(d),
            rich_help_panel=d.setting.panel,
            show_default=False,
            metavar=metavar(d),
            envvar=d.setting.envvar,
            autocompletion=_completer(d.choices()) if d.setting.choices is not None else None,
        )
        out.append(
            inspect.Parameter(d.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind, info])
        )
    return out


def _completer(choices: Optional[list[str]]) -> Callable[[str], list[str]]:
    return lambda incomplete: [c for c in choices or [] if c.startswith(incomplete)]


def with_parameters(*groups: Sequence[inspect.Parameter]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command function (`def train(ctx, **values)`) the signature Typer reads its options from."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        params = [context] + [p for group in groups for p in group]
        fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return fn

    return decorate


def parse(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    """The settings of `cls` the user gave (not None in `raw`), converted to their types and checked."""
    values = {}
    for d in declare.declared(cls):
        text = raw.get(d.name)
        if text is None or not d.setting.cli:
            continue
        values[d.name] = convert(d, text)
        problem = declare.value_problem(d, values[d.name])
        if problem:
            raise OptionError(f"{d.flag} {problem}")
    return values


def convert(d: Declared, text: Any) -> Any:
    """The value of setting `d` from the text given for it (a bool flag arrives as a bool)."""
    kind = d.base_type
    if kind is bool or not isinstance(text, str):
        return text
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise OptionError(f"{d.flag} must be {noun}, got {text!r}") from None
    return Path(text) if kind is Path else text


class Command(TyperCommand):
    """A command whose --help lists its options in the declared panels, readable at 80 columns."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            _plain_metavar(param)
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(_argument_record(param, record))
                continue
            panel = getattr(param, "rich_help_panel", None) or "Options"
            panels.setdefault(panel, []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        order = [p for p in declare.PANELS if p in panels] + [p for p in panels if p not in declare.PANELS]
        for panel in order:
            with formatter.section(panel):
                formatter.write_dl(panels[panel])


def _plain_metavar(param: Any) -> None:
    """What --help shows for a value no declaration names: N, X, PATH, a|b|c (not Typer's `<int>`)."""
    if param.metavar is not None or getattr(param, "is_flag", False):
        return
    kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    kind = next(iter(getattr(kind, "__args__", ())), kind)  # list[Path] -> Path
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        param.metavar = "|".join(str(m.value) for m in kind)
    else:
        names: dict[Any, str] = {int: "N", float: "X", str: "TEXT", Path: "PATH"}
        param.metavar = names.get(kind, "VALUE")


def _argument_record(param: Any, record: tuple[str, str]) -> tuple[str, str]:
    """An argument by its name alone (IMAGES..., CKPT), as the usage line spells it."""
    name = param.metavar if param.metavar not in (None, "PATH") else (param.name or "value").upper()
    return (name + ("..." if param.nargs == -1 and not name.endswith("...") else ""), record[1])


class Group(TyperGroup):
    """The app: its parser's usage errors (an unknown option, a missing argument) are one line on
    stderr and exit 2, as mnistcli's own errors are."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        Command.format_options(self, ctx, formatter)  # type: ignore[arg-type]
        self.format_commands(ctx, formatter)

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: Optional[str] = None, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        if not standalone_mode:
            return super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        try:
            code = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except _UsageError as exc:
            context = getattr(exc, "ctx", None)
            hint = f" (see {context.command_path} --help)" if context is not None else ""
            message = exc.format_message().replace("Value error, ", "")  # type: ignore[attr-defined]
            ui.error(message + hint)
            sys.exit(2)
        except _ClickException as exc:
            ui.error(exc.format_message())  # type: ignore[attr-defined]
            sys.exit(getattr(exc, "exit_code", 1))
        except typer.Abort:
            ui.error("interrupted")
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

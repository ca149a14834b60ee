"""How a setting is declared once, and what is derived from the declaration.

A setting is a dataclass field whose metadata is a `Setting`: its help, the panel of `--help` it
sits in, its allowed range or choices, the presets and datasets that change it, how the run
summary says it. Its name, type and default are the field's own. From that one place come the
command-line options (`commands/params.py`), the checks (`check`), the run summary and the curve
note (`phrases`), the printed commands (`flags`) and the config file (`config.py`).

Plain data with no torch import, so that `--help` and shell completion stay quick.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from mnistcli.errors import OptionError


class _NoValue:
    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Any = _NoValue()  # "not declared" for `legacy` and `off`

# The panels of `--help`, in the order they are shown.
LEARNS = "What it learns"
AUGMENTS = "Augmentation"
FILES = "Where it reads and writes"
RUNS = "How it runs"
PANELS = (LEARNS, AUGMENTS, FILES, RUNS)


@dataclass(frozen=True)
class Setting:
    """What is declared about a setting besides its name, type and default (the field's own)."""

    help: str
    panel: str = LEARNS
    flag: Optional[str] = None  # the option as typed when not --field-name ("--no-download", "--x/--no-x")
    metavar: Optional[str] = None  # how --help shows its value (default: from the type)
    choices: Optional[Callable[[], Sequence[str]]] = None
    at_least: Optional[float] = None
    above: Optional[float] = None
    at_most: Optional[float] = None
    below: Optional[float] = None
    or_off: bool = False  # 0 is allowed too, as "off", outside the range
    presets: Mapping[str, Any] = field(default_factory=dict)  # its value in named presets
    datasets: Mapping[str, Any] = field(default_factory=dict)  # its value for a dataset, in every preset
    legacy: Any = NO_VALUE  # what files written before it existed did (fields added later)
    phrase: Union[str, Callable[[Any], str], None] = None  # how the run summary says it ("batch {}")
    shown_if: Optional[Callable[[Any], bool]] = None  # shown in the summary only when this holds of the record
    off: Any = NO_VALUE  # the value that turns it off: left out of summaries and notes
    in_training_note: bool = False  # changes the training figures (augmentation, smoothing): say so by the curves
    resumable: bool = False  # may change when a run is resumed
    on_resume: bool = False  # given again in the command that resumes a stopped run
    show_default: Optional[str] = None  # what --help says the default is, when not the value itself
    envvar: Optional[str] = None  # an environment variable that gives it too
    cli: bool = True  # a command-line option (False: set by the program, not the user)


def setting(default: Any, help: str, **declared: Any) -> Any:
    """A dataclass field declared as a setting: `lr: float = setting(0.1, "Learning rate.", above=0)`."""
    return field(default=default, metadata={"setting": Setting(help, **declared)})


@dataclass(frozen=True)
class Declared:
    """One setting as declared: the field's name, type and default, and its `Setting`."""

    name: str
    type: Any
    default: Any
    setting: Setting

    @property
    def flag(self) -> str:
        """The option as a user types it: --batch-size (the positive form of a bool pair)."""
        if self.setting.flag:
            return self.setting.flag.split("/")[0]
        return "--" + self.name.replace("_", "-")

    @property
    def key(self) -> str:
        """Its name in a config file: batch-size."""
        return self.name.replace("_", "-")

    @property
    def base_type(self) -> Any:
        """int for Optional[int], and so on."""
        args = [a for a in typing.get_args(self.type) if a is not type(None)]
        return args[0] if typing.get_origin(self.type) is Union and len(args) == 1 else self.type

    @property
    def optional(self) -> bool:
        return typing.get_origin(self.type) is Union and type(None) in typing.get_args(self.type)

    def choices(self) -> Optional[list[str]]:
        return list(self.setting.choices()) if self.setting.choices is not None else None


def declared(cls: type) -> Iterator[Declared]:
    """The settings of a dataclass, in the order they are declared."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "setting" in f.metadata:
            yield Declared(f.name, hints[f.name], f.default, f.metadata["setting"])


def by_name(cls: type) -> dict[str, Declared]:
    return {d.name: d for d in declared(cls)}


# Checks --------------------------------------------------------------------------------------
def check(record: Any) -> None:
    """Refuse impossible values before any work, saying what is allowed (OptionError)."""
    for d in declared(type(record)):
        problem = value_problem(d, getattr(record, d.name))
        if problem:
            raise OptionError(f"{d.flag} {problem}")


def value_problem(d: Declared, value: Any) -> Optional[str]:
    """What is wrong with `value` for setting `d` ("must be at least 1, got 0"), or None."""
    if value is None:
        return None if d.optional else f"needs a value ({_type_name(d.base_type)})"
    wrong_type = _type_problem(d.base_type, value)
    if wrong_type:
        return wrong_type
    choices = d.choices()
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(map(repr, choices))}, got {value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _in_range(d.setting, value):
        return f"must be {range_text(d.setting)}, got {value:g}"
    return None


def _type_name(kind: Any) -> str:
    return {int: "a whole number", float: "a number", bool: "true or false", str: "text", Path: "a path"}.get(
        kind, str(kind)
    )


def _type_problem(kind: Any, value: Any) -> Optional[str]:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        Path: isinstance(value, (str, Path)),
    }.get(kind, True)
    return None if ok else f"must be {_type_name(kind)}, got {value!r}"


def _in_range(s: Setting, value: float) -> bool:
    if s.or_off and value == 0:
        return True
    if s.above is not None and not (value > s.above and math.isfinite(value)):
        return False
    return not (
        (s.at_least is not None and not value >= s.at_least)
        or (s.at_most is not None and not value <= s.at_most)
        or (s.below is not None and not value < s.below)
    )


def range_text(s: Setting) -> str:
    """The allowed range in words: "at least 1", "a positive number", "in [0, 1)", "0 to 45"."""
    low, high = s.at_least, s.at_most if s.at_most is not None else s.below
    if s.above == 0 and high is None:
        text = "a positive number"
    elif low is not None and high is None:
        text = "0 or more" if low == 0 else f"at least {low:g}"
    elif low is not None and s.at_most is not None:
        text = f"{low:g} to {s.at_most:g}"
    elif low is not None and s.below is not None:
        text = f"in [{low:g}, {s.below:g})"
    else:
        text = "any number"
    return f"0 (off) or {text}" if s.or_off else text


# What is derived for people ---------------------------------------------------------------------
def is_off(d: Declared, value: Any) -> bool:
    return d.setting.off is not NO_VALUE and value == d.setting.off


def phrase(d: Declared, value: Any) -> Optional[str]:
    """How the run summary says the setting's value (None: it says nothing of it)."""
    p = d.setting.phrase
    if p is None or is_off(d, value):
        return None
    return p(value) if callable(p) else p.format(value)


def phrases(record: Any, only_training_note: bool = False) -> list[str]:
    """The summary's words for each setting of `record` that has a phrase, is on and applies."""
    out = []
    for d in declared(type(record)):
        if only_training_note and not d.setting.in_training_note:
            continue
        if d.setting.shown_if is not None and not d.setting.shown_if(record):
            continue
        words = phrase(d, getattr(record, d.name))
        if words:
            out.append(words)
    return out


def flags(d: Declared, value: Any) -> list[str]:
    """The command-line words that give setting `d` the value `value` (a bool flag alone, or its --no- form)."""
    if d.base_type is not bool:
        return [d.flag, str(value)]
    names = (d.setting.flag or d.flag).split("/")
    if len(names) == 2:  # --nesterov/--no-nesterov
        return [names[0] if value else names[1]]
    return [names[0]] if value else []  # a one-way switch such as --compile

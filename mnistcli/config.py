"""A training run described by a file: config.toml, in the option names users type.

Every run writes its resolved settings into its folder (`files.CONFIG`); `mnistcli train --config FILE`
reads one back (options on the command line override it, it overrides the preset), and
`--print-config` prints one. The keys are the settings' flags without the dashes, laid out in the
panels of `--help`:

    recipe = "default"          # the preset the run started from
    # What it learns
    epochs = 20
    batch-size = 128
    ...

Written here (a few plain types need no library); read with tomllib (tomli before Python 3.11).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

from mnistcli import declare
from mnistcli.declare import PANELS, Declared
from mnistcli.errors import OptionError
from mnistcli.settings import PRESET_NAMES, Recipe, RunSettings

PRESET_KEY = "recipe"  # the preset, as --recipe names it


def to_toml(recipe: Recipe, run: RunSettings, preset: Optional[str] = None) -> str:
    """The settings of a run as config.toml text. Unset optional settings are left out, as comments."""
    lines = ["# mnistcli train settings: `mnistcli train --config THIS_FILE` runs them again.", ""]
    if preset is not None:
        lines.append(f"{PRESET_KEY} = {_value(preset)}  # the preset the values below started from")
    else:
        lines.append("# (a resumed run: its preset is not recorded; the values below are complete)")
    chosen = [(d, getattr(recipe, d.name)) for d in declare.declared(Recipe)]
    chosen += [(d, getattr(run, d.name)) for d in declare.declared(RunSettings) if d.setting.cli and d.name != "resume"]
    for panel in PANELS:
        lines += ["", f"# {panel}"]
        for d, value in chosen:
            if d.setting.panel == panel:
                lines.append(_line(d, value))
    return "\n".join(lines) + "\n"


def _line(d: Declared, value: Any) -> str:
    if value is None:
        default = d.setting.show_default or "not set"
        return f"# {d.key} =  ({default})"
    return f"{d.key} = {_value(value)}"


def _value(value: Any) -> str:
    """A TOML value: true/false, a number, or a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no TOML form here")
        return repr(value)
    return json.dumps(str(value))  # JSON's escapes are TOML's for basic strings


def read(path: Path) -> tuple[Optional[str], dict[str, Any], dict[str, Any]]:
    """(preset, recipe settings, run settings) that a config file gives; an unknown key or a bad value
    is one OptionError that names the key and the file."""
    table = _parse(Path(path))
    by_key = {d.key: d for cls in (Recipe, RunSettings) for d in declare.declared(cls) if d.setting.cli}
    preset = table.pop(PRESET_KEY, None)
    if preset is not None and preset not in PRESET_NAMES:
        raise OptionError(f"{path}: {PRESET_KEY} must be one of {', '.join(map(repr, PRESET_NAMES))}, got {preset!r}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        d = by_key.get(key)
        if d is None:
            hint = f" (did you mean {key.replace('_', '-')}?)" if key.replace("_", "-") in by_key else ""
            raise OptionError(f"{path}: unknown key {key!r}{hint}; the keys are the options of `mnistcli train`")
        values[d.name] = _typed(d, value, path)
    recipe_names = {f.name for f in fields(Recipe)}
    return (
        preset,
        {k: v for k, v in values.items() if k in recipe_names},
        {k: v for k, v in values.items() if k not in recipe_names},
    )


def _parse(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover (Python 3.10)
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise OptionError(f"config file not found: {path}") from None
    except OSError as exc:
        raise OptionError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise OptionError(f"{path}: not a valid TOML file ({exc})") from exc
    nested = [k for k, v in table.items() if isinstance(v, dict)]
    if nested:
        raise OptionError(f"{path}: unknown table [{nested[0]}]; the settings are plain keys")
    return table


def _typed(d: Declared, value: Any, path: Path) -> Any:
    """The setting's value from the file's: a path from a string, a float from an integer; checked."""
    if d.base_type is Path and isinstance(value, str):
        value = Path(value)
    elif d.base_type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    problem = declare.value_problem(d, value)
    if problem:
        raise OptionError(f"{path}: {d.key} {problem}")
    return value

"""`mnistcli train`: train a network; checkpoints every epoch, history and curves.

Parse, call, render: the options come from the declared settings (settings.py), the run from
trainer.fit, the drawing from ui.TrainDisplay.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from mnistcli import config, files, launch, settings, ui
from mnistcli.commands import params
from mnistcli.commands.common import handles_errors
from mnistcli.declare import FILES, LEARNS, RUNS, setting
from mnistcli.settings import PRESET_NAMES, Recipe, RunSettings
from mnistcli.stopping import NoStop, StopFlag

if TYPE_CHECKING:  # torch is imported only when a run starts, so --help stays quick
    from mnistcli.trainer import RunResult


@dataclass
class TrainCommand:
    """The options of the command itself, besides the settings of the run."""

    recipe: Optional[str] = setting(
        None,
        "Preset: 'default', or 'report' (its CNN, SGD lr 0.01 momentum 0.5, batch 128, all 60,000 images). "
        "Options given explicitly override it; the defaults shown are the default recipe's.",
        panel=LEARNS,
        choices=lambda: PRESET_NAMES,
        show_default=settings.DEFAULT_PRESET,
    )
    config: Optional[Path] = setting(
        None,
        "Read the settings from this file (as config.toml in a run folder); options given here override it.",
        panel=FILES,
        show_default="none",
        metavar="FILE",
    )
    print_config: bool = setting(
        False,
        "Print the settings as a config file and exit (to edit, then --config).",
        panel=FILES,
        flag="--print-config",
    )
    list_models: bool = setting(False, "List the models and exit.", panel=RUNS, flag="--list-models")


@handles_errors
@params.with_parameters(params.options(TrainCommand), params.options(Recipe), params.options(RunSettings))
def train_command(ctx: typer.Context, **raw: Any) -> None:
    """Train a network; checkpoints every epoch, history and curves into --out-dir."""
    command = TrainCommand(**params.parse(TrainCommand, raw))
    if command.list_models:
        return _print_models()
    preset, given, run_values = _settings(command, raw)
    run = RunSettings(**run_values, command=shlex.join(["mnistcli", *sys.argv[1:]]))
    run.check()
    if command.print_config:
        return _print_config(preset, given, run)
    if run.nproc > 1 and not launch.under_torchrun():
        raise typer.Exit(launch.launch(run.nproc, launch.train_arguments(preset, given, run)))
    result, exit_code = _train(preset, given, run)
    _report(result, run)
    if result.interrupted:
        raise typer.Exit(exit_code)


def _settings(command: TrainCommand, raw: dict[str, Any]) -> tuple[Optional[str], dict[str, Any], dict[str, Any]]:
    """(preset, recipe settings, run settings) given: on the command line, over those of --config."""
    preset, given, run_values = command.recipe, params.parse(Recipe, raw), params.parse(RunSettings, raw)
    if command.config is None:
        return preset, given, run_values
    file_preset, file_recipe, file_run = config.read(command.config)
    return preset or file_preset, {**file_recipe, **given}, {**file_run, **run_values}


def _print_config(preset: Optional[str], given: dict[str, Any], run: RunSettings) -> None:
    """The settings a run with these options would have, as a config file, on stdout."""
    if run.resume is not None:
        from mnistcli import checkpoint, trainer

        resolved = trainer.resolve_for_resume(preset, given, checkpoint.load(run.resume), run.resume)
    else:
        resolved = settings.resolve_recipe(preset, given)
    print(config.to_toml(resolved.recipe, run, resolved.preset), end="")


def _train(preset: Optional[str], given: dict[str, Any], run: RunSettings) -> tuple[RunResult, int]:
    """The run, drawn as it goes, and the exit code of a stop: a signal stops it after the batch in
    progress (not under torchrun, where every worker gets the signal)."""
    from mnistcli import trainer

    display = ui.TrainDisplay()
    with NoStop() if launch.under_torchrun() else StopFlag(display.notice) as stop:
        try:
            result = trainer.fit(run, preset=preset, given=given, hooks=display, should_stop=stop)
        finally:
            display.close()
    return result, stop.exit_code


def _report(result: RunResult, run: RunSettings) -> None:
    """The summary table, where the files are, and what to do next."""
    if result.history:
        ui.console.print(ui.history_table(result.history, result.best_epoch))
        out = result.out_dir
        ui.info(f"History: {out / files.HISTORY_JSON}, {out / files.HISTORY_CSV}; curves: {out / files.CURVES}")
    if result.interrupted_at is not None:
        epoch, batch = result.interrupted_at
        ui.warn(f"stopped in epoch {epoch} after batch {batch}; saved {result.out_dir / files.LAST}")
        ui.info("Resume with: " + resume_command(result.out_dir / files.LAST, run))
        return
    best = result.best
    if best is not None:
        held_out = f"val {ui.pct(best.val_acc)}, " if best.val_acc is not None else ""
        ui.info(f"Best epoch {best.epoch}: {held_out}test {ui.pct(best.test_acc)} -> {result.out_dir / files.BEST}")


def resume_command(last: Path, run: RunSettings) -> str:
    """The command that continues a stopped run: its last.pt and the run settings to give again (the
    recipe and the data folder are in the checkpoint)."""
    return shlex.join(["mnistcli", "train", "--resume", str(last), *settings.resume_flags(run)])


def _print_models() -> None:
    from mnistcli.models import DEFAULT_MODEL, count_parameters, create_model, model_names, model_spec

    rows = [(n, count_parameters(create_model(n)), model_spec(n).description) for n in model_names()]
    ui.console.print(ui.model_table(rows, DEFAULT_MODEL))

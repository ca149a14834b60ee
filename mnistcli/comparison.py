"""Runs side by side: what each run is and how it did, from its folder (history.json and a checkpoint).

A run still going, or stopped, is compared on the epochs it has. The report's own experiment (a
fully connected net against a CNN, trained alike) is `mnistcli compare --train fc,report-cnn --recipe
report`: the command trains each network in its own folder, then compares them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from statistics import median
from typing import Any, Optional

from mnistcli import declare, files, history
from mnistcli.errors import MnistCliError, OptionError
from mnistcli.history import HistoryRow
from mnistcli.settings import PRESETS, Recipe, resolve_recipe

TARGET = 0.99  # the accuracy the "first epoch to reach it" column looks for: 99.0%


@dataclass
class RunSummary:
    """One row of the comparison."""

    name: str
    folder: Path
    model: str
    dataset: str
    parameters: int
    changes: str  # what its recipe changes from a preset: "the report recipe" or "default, lr 0.05"
    epochs_done: int
    epochs: int  # of the run's recipe
    seconds: float
    images_per_s: float
    best_val: Optional[float]
    best_test: Optional[float]  # the test accuracy of best.pt
    last_test: Optional[float]
    first_at_target: Optional[int]  # the first epoch at TARGET test accuracy or more
    history: list[HistoryRow]

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "history"}
        out["folder"] = str(self.folder)
        out["history"] = [row.to_dict() for row in self.history]
        return out


def summarize(path: Path) -> RunSummary:
    """A run folder (or a checkpoint in one) summed up; MnistCliError when it has no readable history."""
    from mnistcli import checkpoint
    from mnistcli.models import count_parameters, create_model

    if not Path(path).exists():
        raise MnistCliError(f"{path}: no such run folder or checkpoint")
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    rows = history.read(folder)
    if not rows:
        raise MnistCliError(f"{folder}: no epoch has finished yet")
    source = folder / files.LAST if (folder / files.LAST).is_file() else folder / files.BEST
    ck = checkpoint.load(source)
    best = checkpoint.load(folder / files.BEST) if (folder / files.BEST).is_file() else ck
    recipe = ck.recipe
    seconds = sum(r.seconds for r in rows if r.seconds is not None)
    speeds = [r.images_per_s for r in rows if r.images_per_s is not None]
    vals = [r.val_acc for r in rows if r.val_acc is not None]
    return RunSummary(
        name=folder.name or str(folder),
        folder=folder,
        model=ck.model,
        dataset=ck.dataset,
        parameters=count_parameters(create_model(ck.model)),
        changes=recipe_changes(recipe),
        epochs_done=len(rows),
        epochs=recipe.epochs,
        seconds=seconds,
        images_per_s=median(speeds) if speeds else float("nan"),
        best_val=max(vals) if vals else None,
        best_test=best.metrics.get("test_acc"),
        last_test=rows[-1].test_acc,
        first_at_target=next((r.epoch for r in rows if r.test_acc is not None and r.test_acc >= TARGET), None),
        history=rows,
    )


def recipe_changes(recipe: Recipe) -> str:
    """The recipe in words: the preset nearest to it, and what differs from that (epochs and model aside)."""
    by_name = declare.by_name(Recipe)
    best_preset, best_diff = "", None
    for preset in PRESETS:
        base = resolve_recipe(preset, {"dataset": recipe.dataset}).recipe
        diff = [
            " ".join(declare.flags(by_name[f.name], getattr(recipe, f.name)))
            for f in fields(Recipe)
            if f.name not in ("epochs", "model", "dataset") and getattr(recipe, f.name) != getattr(base, f.name)
        ]
        if best_diff is None or len(diff) < len(best_diff):
            best_preset, best_diff = preset, diff
    return ", ".join([f"{best_preset} recipe", *(best_diff or [])])


def compare(paths: list[Path]) -> tuple[list[RunSummary], list[str]]:
    """The runs that could be read, and a line for each that could not. Runs of different datasets are
    not compared (OptionError)."""
    runs, failures = [], []
    for path in paths:
        try:
            runs.append(summarize(path))
        except MnistCliError as exc:
            failures.append(str(exc))
    datasets = sorted({r.dataset for r in runs})
    if len(datasets) > 1:
        raise OptionError(f"these runs are on different datasets ({', '.join(datasets)}); compare runs of one")
    _unique_names(runs)
    return runs, failures


def _unique_names(runs: list[RunSummary]) -> None:
    """Runs in folders of the same name (a/run, b/run) are told apart by their parent folder."""
    names = [r.name for r in runs]
    for r in runs:
        if names.count(r.name) > 1:
            r.name = f"{r.folder.parent.name}/{r.name}"

"""A run's history: one `HistoryRow` per finished epoch, and its files (history.json, history.csv).

The trainer writes the rows, the saver keeps them in the run folder and in every checkpoint, and
the summary table, the curves and `compare` read them back. Plain standard library.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

from mnistcli import files
from mnistcli.errors import MnistCliError


@dataclass
class HistoryRow:
    """What one epoch did: training figures measured during the epoch, then validation and test."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: Optional[float]  # None without a validation split
    val_acc: Optional[float]
    test_loss: float
    test_acc: float
    lr: float  # the learning rate at the end of the epoch
    seconds: float  # training time of the epoch (evaluation not included)
    images_per_s: float
    steps: int  # optimiser steps taken in this process
    temperature: Optional[float] = None  # the calibration fitted on the validation split (None without one)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HistoryRow:
        """A row as any version wrote it: unknown keys are ignored, missing figures are None."""
        known: dict[str, Any] = {f.name: values.get(f.name) for f in fields(cls)}
        return cls(**known)

    def metrics(self) -> dict[str, Optional[float]]:
        """The epoch's losses and accuracies: what a checkpoint records as its metrics."""
        return {name: getattr(self, name) for name in METRICS}

    def score(self, by: str) -> float:
        """The figure a best epoch is chosen by ("val_acc" or "test_acc"); -1 where there is none."""
        value = getattr(self, by)
        return -1.0 if value is None or math.isnan(value) else float(value)


FIELDS = tuple(f.name for f in fields(HistoryRow))
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def to_json(rows: list[HistoryRow]) -> str:
    """history.json: one field a line, for people."""
    return json.dumps([r.to_dict() for r in rows], indent=2)


def to_csv(rows: list[HistoryRow]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.to_dict().items()})
    return text.getvalue()


def read(run_dir: Path) -> list[HistoryRow]:
    """The rows of a run folder's history.json; MnistCliError says what is wrong with it."""
    path = Path(run_dir) / files.HISTORY_JSON
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise MnistCliError(f"{run_dir}: no {files.HISTORY_JSON} (not a run folder, or no epoch finished)") from None
    except (OSError, ValueError) as exc:
        raise MnistCliError(f"{path}: not a readable history ({exc})") from exc
    if not isinstance(values, list) or not all(isinstance(v, dict) and "epoch" in v for v in values):
        raise MnistCliError(f"{path}: not a readable history (expected a list of epochs)")
    return [HistoryRow.from_dict(v) for v in values]

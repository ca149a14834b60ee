"""The files a training run leaves in its folder, and the order they are written in.

After each epoch: `epoch-NNN.pt`, then `best.pt` (when the epoch is the best so far), then
`last.pt`, then `history.json` and `history.csv`. `last.pt` goes last: a crash before it is
renamed into place resumes from the previous epoch and redoes this one, so `best.pt` never
lags behind the history that `last.pt` carries. When a run is stopped mid-epoch only
`last.pt` is written. Modelled on timm's CheckpointSaver.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any, Optional

from mnistcli import checkpoint
from mnistcli.checkpoint import Checkpoint
from mnistcli.errors import CheckpointError

HISTORY_FIELDS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "lr",
    "seconds",
    "images_per_s",
    "steps",
)


def epoch_file(epoch: int) -> str:
    return f"epoch-{epoch:03d}.pt"


class CheckpointSaver:
    """Owns a run folder: checks it can be written, clears what a crash left, writes the file set."""

    def __init__(self, out_dir: Path, keep: Optional[int] = None):
        if keep is not None and keep < 1:
            raise ValueError("keep must be at least 1")
        self.out_dir = Path(out_dir)
        self.keep = keep

    @property
    def last(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.out_dir / "best.pt"

    def prepare(self) -> None:
        """Fail before training when nothing could be written; delete temp files of a crashed save."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.out_dir):
                pass
        except OSError as exc:
            raise CheckpointError(f"cannot write to output folder {self.out_dir}: {exc.strerror or exc}") from exc
        checkpoint.remove_stale_temps(self.out_dir)

    def save_epoch(self, ckpt: Checkpoint, is_best: bool) -> list[Path]:
        """The files of a finished epoch, serialised once and written in order; returns them."""
        assert ckpt.epoch is not None
        paths = [self.out_dir / epoch_file(ckpt.epoch)] + ([self.best] if is_best else []) + [self.last]
        checkpoint.write_files(checkpoint.to_bytes(ckpt), paths)
        self.write_history(ckpt.history)
        self._prune(ckpt.epoch)
        return paths

    def save_stopped(self, ckpt: Checkpoint) -> Path:
        """A run stopped mid-epoch: only last.pt, which knows where the epoch stopped."""
        checkpoint.write_files(checkpoint.to_bytes(ckpt), [self.last])
        return self.last

    def write_history(self, history: list[dict[str, Any]]) -> None:
        try:
            checkpoint.atomic_write(self.out_dir / "history.json", json.dumps(history, indent=2).encode())
            checkpoint.atomic_write(self.out_dir / "history.csv", history_csv(history).encode())
        except OSError as exc:
            raise CheckpointError(f"cannot write history in {self.out_dir}: {exc.strerror or exc}") from exc

    def _prune(self, epoch: int) -> None:
        """With keep=N, delete epoch files older than the last N (best.pt and last.pt stay)."""
        if self.keep is None:
            return
        for old in range(1, epoch - self.keep + 1):
            (self.out_dir / epoch_file(old)).unlink(missing_ok=True)


def history_csv(history: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in HISTORY_FIELDS})
    return text.getvalue()

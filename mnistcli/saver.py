"""The files a training run leaves in its folder, and the order they are written in.

After each epoch: `epoch-NNN.pt`, then `best.pt` (when the epoch is the best so far), then
`last.pt`, then `history.json`, `history.csv` and `curves.png`. `last.pt` goes before the
history: a crash before it is renamed into place resumes from the previous epoch and redoes this
one, so `best.pt` never lags behind the history that `last.pt` carries. When a run is stopped
mid-epoch only `last.pt` is written. Modelled on timm's CheckpointSaver.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

from mnistcli import checkpoint, files, history
from mnistcli.checkpoint import Checkpoint
from mnistcli.errors import CheckpointError
from mnistcli.history import HistoryRow


class CheckpointSaver:
    """Owns a run folder: checks it can be written, clears what a crash left, writes the file set."""

    def __init__(self, out_dir: Path, keep: Optional[int] = None, curves_title: str = "", curves_note: str = ""):
        if keep is not None and keep < 1:
            raise ValueError("keep must be at least 1")
        self.out_dir = Path(out_dir)
        self.keep = keep
        self.curves_title = curves_title
        self.curves_note = curves_note

    @property
    def last(self) -> Path:
        return self.out_dir / files.LAST

    @property
    def best(self) -> Path:
        return self.out_dir / files.BEST

    @property
    def curves(self) -> Path:
        return self.out_dir / files.CURVES

    def prepare(self) -> None:
        """Fail before training when nothing could be written; delete temp files of a crashed save."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.out_dir):
                pass
        except OSError as exc:
            raise CheckpointError(f"cannot write to output folder {self.out_dir}: {exc.strerror or exc}") from exc
        files.remove_stale_temps(self.out_dir)

    def write_config(self, text: str) -> Path:
        """config.toml: the run's settings, as `mnistcli train --config` reads them."""
        path = self.out_dir / files.CONFIG
        checkpoint.write_file(path, text.encode())
        return path

    def save_epoch(self, ckpt: Checkpoint, is_best: bool) -> list[Path]:
        """The files of a finished epoch, the checkpoint serialised once; returns the checkpoints written."""
        assert ckpt.epoch is not None
        paths = [self.out_dir / files.epoch_file(ckpt.epoch)] + ([self.best] if is_best else []) + [self.last]
        checkpoint.write_checkpoint(checkpoint.training_bytes(ckpt), paths)
        self.write_history(ckpt.history, ckpt.best_epoch)
        self._prune(ckpt.epoch)
        return paths

    def save_stopped(self, ckpt: Checkpoint) -> Path:
        """A run stopped mid-epoch: only last.pt, which knows where the epoch stopped."""
        checkpoint.write_checkpoint(checkpoint.training_bytes(ckpt), [self.last])
        return self.last

    def write_history(self, rows: list[HistoryRow], best_epoch: Optional[int] = None) -> None:
        """history.json, history.csv and curves.png (redrawn every epoch, so it is never stale)."""
        from mnistcli import plots

        try:
            files.atomic_write(self.out_dir / files.HISTORY_JSON, history.to_json(rows).encode())
            files.atomic_write(self.out_dir / files.HISTORY_CSV, history.to_csv(rows).encode())
            if rows:
                png = plots.training_curves_png(rows, self.curves_title, self.curves_note, best_epoch)
                files.atomic_write(self.curves, png)
        except OSError as exc:
            raise CheckpointError(f"cannot write history in {self.out_dir}: {exc.strerror or exc}") from exc

    def _prune(self, epoch: int) -> None:
        """With keep=N, delete epoch files older than the last N (best.pt and last.pt stay)."""
        if self.keep is None:
            return
        for old in range(1, epoch - self.keep + 1):
            (self.out_dir / files.epoch_file(old)).unlink(missing_ok=True)

"""TensorBoard event files for a run (`train --tensorboard`, the `tensorboard` extra).

Written into the run folder itself, so `tensorboard --logdir runs/` shows each run under its folder's
name, the way Lightning's loggers lay them out. A resumed run appends to the same folder and goes on
from the step it reached.

Tags: `train/loss` and `train/accuracy` every --log-every batches (the same window as the printed
rows, at the global optimiser step); per epoch, `epoch/<figure>` for every figure of history.json
(losses, accuracies, learning rate, seconds, images/s, temperature), at the epoch number.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistcli.errors import OptionError

if TYPE_CHECKING:  # the trainer imports this module
    from mnistcli.engine import BatchEvent
    from mnistcli.trainer import EpochEnd, StartInfo

EXTRA_HINT = "pip install 'mnistcli[tensorboard]'"
NOT_SCALARS = ("epoch", "steps")


def require() -> None:
    """OptionError unless the tensorboard package is installed (checked before a run starts)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise OptionError(f"--tensorboard needs the tensorboard package: {EXTRA_HINT}")


class TensorBoardHooks:
    """Training hooks that log to TensorBoard; `close` flushes the event file."""

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.steps_per_epoch = 0

    def on_start(self, info: StartInfo) -> None:
        from mnistcli import settings

        self.steps_per_epoch = info.steps_per_epoch
        self.writer.add_text("recipe", settings.summary(info.recipe), global_step=info.start_epoch)

    def on_epoch_start(self, epoch: int, total_epochs: int, steps: int, start_batch: int) -> None:
        self.steps_per_epoch = steps

    def on_batch(self, epoch: int, event: BatchEvent) -> None:
        if event.window is None:
            return
        step = (epoch - 1) * self.steps_per_epoch + event.batch
        self.writer.add_scalar("train/loss", event.window.loss, step)
        self.writer.add_scalar("train/accuracy", event.window.accuracy, step)

    def on_evaluating(self, epoch: int) -> None: ...

    def on_epoch_end(self, end: EpochEnd) -> None:
        row = end.row
        for name, value in row.to_dict().items():
            if name not in NOT_SCALARS and value is not None:
                self.writer.add_scalar(f"epoch/{name}", value, row.epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class BothHooks:
    """Two sets of hooks called in turn (the display, then the log)."""

    def __init__(self, first: Any, second: Any) -> None:
        self.first, self.second = first, second

    def on_start(self, info: StartInfo) -> None:
        self.first.on_start(info)
        self.second.on_start(info)

    def on_epoch_start(self, epoch: int, total_epochs: int, steps: int, start_batch: int) -> None:
        self.first.on_epoch_start(epoch, total_epochs, steps, start_batch)
        self.second.on_epoch_start(epoch, total_epochs, steps, start_batch)

    def on_batch(self, epoch: int, event: BatchEvent) -> None:
        self.first.on_batch(epoch, event)
        self.second.on_batch(epoch, event)

    def on_evaluating(self, epoch: int) -> None:
        self.first.on_evaluating(epoch)
        self.second.on_evaluating(epoch)

    def on_epoch_end(self, end: EpochEnd) -> None:
        self.first.on_epoch_end(end)
        self.second.on_epoch_end(end)

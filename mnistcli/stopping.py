"""Stopping a training run gracefully: SIGINT (Ctrl-C) and SIGTERM ask it to stop after the batch in
progress, so that it saves a resumable checkpoint; a second Ctrl-C aborts at once.

The run asks the flag (`should_stop()`) after every batch; the flag says which signal it got, so the
command can exit 130 (SIGINT) or 143 (SIGTERM) as shells expect.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, Optional


class StopFlag:
    """A context in which SIGINT and SIGTERM ask for a stop instead of ending the process."""

    def __init__(self, notice: Callable[[str], None] = lambda message: None):
        self.notice = notice  # told once when a stop is asked for (safe to call from a signal handler)
        self.signal: Optional[int] = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        self.notice("Stopping after this batch to save a resumable checkpoint (Ctrl-C again to abort)")

    def __call__(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """What the process exits with after a stop: 128 + the signal, as a shell reports it."""
        return 128 + (self.signal if self.signal is not None else signal.SIGINT)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class NoStop(StopFlag):
    """Signals left alone: under torchrun every worker gets the signal and stops at once; the last
    finished epoch's checkpoint is what --resume continues from."""

    def __enter__(self) -> NoStop:
        return self

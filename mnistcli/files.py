"""The files mnistcli writes: their names in a run folder, and the one way every one of them is written.

`atomic_write` is the only writer of files: a temp file beside the target, fsync, rename over it,
fsync of the folder. A crash at any moment leaves the old file or the new one, never half of one
(and perhaps a temp file, which `remove_stale_temps` clears). New files get the usual mode of the
user's umask, as `open` would give them.

Plain standard library, so that every module can use it (the data cache, checkpoints, exports,
history and figures) and the command line can name the files without importing torch.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# A training run's folder.
RUN_DIR = Path("checkpoints")  # where `mnistcli train` writes unless told otherwise
LAST = "last.pt"  # the run's latest state: what --resume continues
BEST = "best.pt"  # the best epoch by validation accuracy (test accuracy without a validation split)
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
CURVES = "curves.png"
CONFIG = "config.toml"

TEMP_SUFFIX = ".tmp"


def epoch_file(epoch: int) -> str:
    """The checkpoint of one finished epoch: epoch-001.pt, epoch-002.pt, ..."""
    return f"epoch-{epoch:03d}.pt"


def temp_prefix(path: Path) -> str:
    """Temp files of `path` are named `.NAME.XXXXXXXX.tmp` beside it."""
    return f".{Path(path).name}."


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` through a temp file beside it, renamed over `path`.

    `durable` (the default) fsyncs the file before the rename and the folder after it, so the new
    file survives a power cut; a cache that can always be rebuilt may skip that.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode of a new file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (not every file system allows it)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temp files that a crashed write left in `folder`; returns them."""
    stale = [p for p in Path(folder).glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""Run mnistcli in this process with a real crash at one step of saving a checkpoint.

    python tests/crashing.py POINT NAME AFTER -- train ARGS...

The crash point is armed once the file NAME (e.g. last.pt) has been renamed into place AFTER
times, so that AFTER=1 crashes while the second epoch is being saved. POINT is one of:

  write          the kernel kills the process (SIGXFSZ, RLIMIT_FSIZE) in the middle of writing
                 the next checkpoint file
  efbig          the kernel refuses the bytes of the next checkpoint file (RLIMIT_FSIZE with
                 SIGXFSZ ignored: the write fails with EFBIG, "File too large")
  before-fsync   the process dies after writing a temp file of NAME, before it is fsynced
  before-rename  the process dies after that temp file is fsynced, before it is renamed over NAME

Exits with CRASHED (77) when it died at a before-* point, so a test can tell that the point was
reached; a save that writes NAME in place never reaches one.
"""

from __future__ import annotations

import os
import resource
import signal
import sys

CRASHED = 77
LIMIT = 256 * 1024  # bytes: more than curves.png and the history, far less than a checkpoint (600 KB)


def main() -> None:
    point, name, after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    assert sys.argv[4] == "--", "usage: crashing.py POINT NAME AFTER -- ARGS"
    renamed = 0
    real_replace, real_fsync = os.replace, os.fsync

    def is_temp_of_name(path: str) -> bool:
        base = os.path.basename(path)
        return base.startswith(f".{name}.") and base.endswith(".tmp")

    def fsync(fd: int) -> None:
        if point == "before-fsync" and renamed >= after and is_temp_of_name(os.readlink(f"/proc/self/fd/{fd}")):
            os._exit(CRASHED)
        real_fsync(fd)

    def replace(src, dst, **kw) -> None:
        nonlocal renamed
        if point == "before-rename" and renamed >= after and is_temp_of_name(os.fspath(src)):
            os._exit(CRASHED)
        real_replace(src, dst, **kw)
        if os.path.basename(os.fspath(dst)) == name:
            renamed += 1
            if point in ("write", "efbig") and renamed >= after:
                # Python ignores SIGXFSZ; by default the kernel's signal ends the process mid-write.
                signal.signal(signal.SIGXFSZ, signal.SIG_DFL if point == "write" else signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    os.fsync = fsync
    os.replace = replace
    from mnistcli.cli import main as mnistcli

    sys.argv = ["mnistcli", *sys.argv[5:]]
    mnistcli()


if __name__ == "__main__":
    main()

"""Launching a training run as several processes: `mnistcli train --nproc N` runs
`torchrun --nproc-per-node N -m mnistcli train ...`, each worker with the options the user gave.

Plain standard library (torch is imported by the workers), so the command line stays quick.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from typing import Any, Optional

from mnistcli import declare
from mnistcli.settings import Recipe, RunSettings, command_flags


def under_torchrun() -> bool:
    """Whether this process is one of several that torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch(nproc: int, arguments: list[str]) -> int:
    """Run `torchrun --nproc-per-node nproc -m mnistcli ARGUMENTS` and return its exit code."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--standalone",
        "-m",
        "mnistcli",
        *arguments,
    ]
    # Each process gets an equal share of the cores (torchrun would otherwise pin every worker to 1 thread).
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc))),
    }
    return subprocess.call(cmd, env=env)


def train_arguments(preset: Optional[str], given: dict[str, Any], run: RunSettings) -> list[str]:
    """The `train` command each process runs: the recipe and run settings the user gave, less --nproc
    (rebuilt from the settings, so that each worker resolves the same recipe the launcher would)."""
    words = ["train"] + (["--recipe", preset] if preset else [])
    words += command_flags(Recipe(**given), given)
    defaults = RunSettings()
    plain = replace(run, nproc=1)
    names = [
        d.name
        for d in declare.declared(RunSettings)
        if d.setting.cli and getattr(plain, d.name) != getattr(defaults, d.name)
    ]
    return words + command_flags(plain, names)

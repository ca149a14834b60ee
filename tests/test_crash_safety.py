"""Crash-safe saving, tried for real: a child process dies (or the kernel refuses the bytes) at
each step of saving a checkpoint; what is left must load, and --resume must carry on exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnistcli import checkpoint

from crashing import CRASHED
from helpers import NEUTRAL, ROOT, train_cmd

pytestmark = pytest.mark.slow
RUN = ("--epochs", 3, "--seed", 3)  # a seed whose epoch 2 is a new best (checked below)


@pytest.fixture(scope="module")
def straight_run(fixture_data, tmp_path_factory) -> Path:
    """The same three epochs without a crash: what every crashed-and-resumed run must end as."""
    out = tmp_path_factory.mktemp("straight")
    subprocess.run(train_cmd(fixture_data, out, *RUN), check=True, capture_output=True, cwd=NEUTRAL)
    history = json.loads((out / "history.json").read_text())
    assert [h["val_acc"] for h in history][1] > history[0]["val_acc"], "epoch 2 must be a new best.pt here"
    return out


def crash(point: str, name: str, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "tests" / "crashing.py"), point, name, "1", "--", *args[3:]]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=NEUTRAL)


def _loads_whole(path: Path) -> checkpoint.Checkpoint:
    ckpt = checkpoint.load(path)
    checkpoint.build_model(ckpt, path)
    return ckpt


@pytest.mark.parametrize(
    "point, name",
    [
        ("write", "last.pt"),  # killed while the epoch-2 files are being written
        ("before-fsync", "best.pt"),
        ("before-rename", "best.pt"),
        ("before-fsync", "last.pt"),
        ("before-rename", "last.pt"),
    ],
)
def test_a_crash_at_any_step_of_a_save_loses_nothing(fixture_data, tmp_path, straight_run, point, name):
    out = tmp_path / "run"
    result = crash(point, name, train_cmd(fixture_data, out, *RUN))
    expected = -signal.SIGXFSZ if point == "write" else CRASHED
    assert result.returncode == expected, f"the crash point was not reached:\n{result.stdout}\n{result.stderr}"
    assert [p for p in os.listdir(out) if p.endswith(".tmp")], "a crash mid-save leaves its temp file"

    # Epoch 1 stays whole; where epoch 2 got its own file in place, that file is whole too.
    last, best = _loads_whole(out / "last.pt"), _loads_whole(out / "best.pt")
    assert last.epoch == 1 and [h.epoch for h in last.history] == [1]
    assert best.epoch == (2 if point.startswith("before") and name == "last.pt" else 1)  # best.pt goes before last.pt
    for path in out.glob("*.pt"):
        _loads_whole(path)

    resumed = subprocess.run(
        train_cmd(fixture_data, out, *RUN, "--resume", out), capture_output=True, text=True, cwd=NEUTRAL
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")], "the resumed run clears stale temp files"
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2, 3]
    for file in ("last.pt", "best.pt"):
        mine, straight = checkpoint.load(out / file), checkpoint.load(straight_run / file)
        assert mine.epoch == straight.epoch
        assert all(torch.equal(mine.state_dict[k], straight.state_dict[k]) for k in straight.state_dict), file


def test_a_write_the_kernel_refuses_is_one_line_and_keeps_the_previous_files(fixture_data, tmp_path):
    out = tmp_path / "run"
    args = train_cmd(fixture_data, out, *RUN)
    result = crash("efbig", "last.pt", args)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write checkpoint" in lines[0] and "File too large" in lines[0], lines
    assert sorted(os.listdir(out)) == [
        "best.pt",
        "config.toml",
        "curves.png",
        "epoch-001.pt",
        "history.csv",
        "history.json",
        "last.pt",
    ]
    before = {p: (out / p).read_bytes() for p in ("last.pt", "best.pt")}
    assert _loads_whole(out / "last.pt").epoch == 1
    resumed = subprocess.run([*args, "--resume", str(out)], capture_output=True, text=True, cwd=NEUTRAL)
    assert resumed.returncode == 0, resumed.stderr
    assert [h.epoch for h in checkpoint.load(out / "last.pt").history] == [1, 2, 3]
    assert before["last.pt"] != (out / "last.pt").read_bytes()

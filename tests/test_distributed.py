"""Data-parallel training with torch.distributed: how an epoch is dealt out, and real runs (gloo, 2 CPU
processes)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnistcli import checkpoint, distributed

from helpers import NEUTRAL, REAL_MNIST, needs_real_mnist

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("world, batch, n", [(2, 32, 500), (3, 12, 100), (4, 8, 37)])
def test_each_process_takes_its_own_share_of_every_batch(world, batch, n):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(world))
    shards = [distributed.shard(order, distributed.Group(rank, world, rank)) for rank in range(world)]
    per_rank = batch // world
    assert {len(s) for s in shards} == {n // world}  # the same number of steps on every rank
    for step in range(-(-(n // world) // per_rank)):
        taken = [s[step * per_rank : (step + 1) * per_rank] for s in shards]
        together = torch.cat(taken)
        assert len(set(together.tolist())) == len(together)  # no image twice in a step
        # One step of all the processes is the batch a single process would take, image for image.
        single = order[step * batch : step * batch + len(together)]
        assert sorted(together.tolist()) == sorted(single.tolist())


def train(*args):
    cmd = [sys.executable, "-m", "mnistcli", "train", "--no-download", *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=NEUTRAL, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_processes_write_one_set_of_checkpoints_that_load_anywhere(fixture_data, tmp_path):
    out = tmp_path / "ddp"
    result = train(
        "--nproc", 2, "--epochs", 2, "--data-dir", fixture_data, "--out-dir", out, "--val-size", 100, "--batch-size", 32
    )
    assert "x 2 processes" in result.stdout
    assert result.stdout.count("Epoch 1/2 |") == 1  # only rank 0 prints
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "config.toml",
        "curves.png",
        "epoch-001.pt",
        "epoch-002.pt",
        "history.csv",
        "history.json",
        "last.pt",
    ]
    history = json.loads((out / "history.json").read_text())
    # 500 training images: each process takes 250, 16 at a time -> 16 steps, as one process with 32.
    assert [h["steps"] for h in history] == [16, 16]
    ckpt = checkpoint.load(out / "last.pt")
    assert not any(k.startswith("module.") for k in ckpt.state_dict)  # saved unwrapped
    checkpoint.build_model(ckpt)
    # ...and a plain single-process run resumes it.
    train("--resume", out / "last.pt", "--epochs", 3, "--data-dir", fixture_data)
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2, 3]


@pytest.mark.slow
def test_batch_must_split_evenly(fixture_data, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "mnistcli",
        "train",
        "--nproc",
        "2",
        "--batch-size",
        "33",
        "--data-dir",
        str(fixture_data),
        "--out-dir",
        str(tmp_path),
        "--val-size",
        "100",
        "--epochs",
        "1",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=NEUTRAL, timeout=300)
    assert result.returncode != 0 and "does not split evenly over 2 processes" in result.stderr


@pytest.mark.slow
@needs_real_mnist
def test_two_processes_match_one_on_real_mnist(tmp_path):
    accs = {}
    for nproc in (1, 2):
        train("--nproc", nproc, "--epochs", 1, "--data-dir", REAL_MNIST, "--out-dir", tmp_path / str(nproc))
        accs[nproc] = json.loads((tmp_path / str(nproc) / "history.json").read_text())[0]["test_acc"]
    assert abs(accs[1] - accs[2]) <= 0.003, accs

"""Faults tried for real: hostile and broken checkpoints, kills and signals mid-training, full disks."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from mnistcli import checkpoint
from mnistcli.models import create_model

from helpers import NEUTRAL, one_error_line, run, train_cmd


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_checkpoints(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words its error must contain)."""
    cases = {}

    def add(name, data: bytes, expected: str):
        path = tmp_path / f"{name}.pt"
        path.write_bytes(data)
        cases[name] = (path, expected)

    raw = good.read_bytes()
    add("zero-bytes", b"", "empty file")
    add("truncated", raw[: len(raw) // 2], "not a readable PyTorch checkpoint")
    add("random-bytes", random.Random(0).randbytes(4096), "not a readable model file")
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, "JPEG")
    add("jpeg-renamed", jpeg.getvalue(), "not a readable model file")
    ckpt = checkpoint.load(good).to_dict()
    for name, change, expected in (
        ("unknown-model", {"model": "resnet9000"}, "unknown model"),
        ("wrong-shapes", {"model": "report-cnn", "model_args": {}}, "do not fit"),
        ("newer-format", {"format_version": checkpoint.FORMAT_VERSION + 1}, "newer than this mnistcli reads"),
        ("not-a-dict", None, "not an mnistcli checkpoint"),
    ):
        buf = io.BytesIO()
        torch.save([1, 2, 3] if change is None else {**ckpt, **change}, buf)
        add(name, buf.getvalue(), expected)
    return cases


def test_every_broken_checkpoint_gives_one_clear_line(trained_run, fixture_data, tmp_path):
    for name, (path, expected) in _bad_checkpoints(tmp_path, trained_run / "best.pt").items():
        for command in (["evaluate", path, "--data-dir", fixture_data], ["predict", path, "-c", path]):
            line = one_error_line(run(*command))
            assert expected in line and str(path) in line, (name, line)


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path, fixture_data):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model": "cnn", "model_args": {}, "state_dict": Evil(marker)}, path)
    line = one_error_line(run("evaluate", path, "--data-dir", fixture_data))
    assert "refused" in line and "could run code" in line
    line = one_error_line(run("train", "--resume", path, "--data-dir", fixture_data, "--out-dir", tmp_path / "o"))
    assert "refused" in line
    assert not marker.exists()


def test_a_bare_state_dict_loads_with_model_or_says_how(tmp_path, fixture_data):
    path = tmp_path / "mnist_cnn.pt"
    torch.save(create_model("report-cnn").state_dict(), path)
    assert "--model NAME" in one_error_line(run("evaluate", path, "--data-dir", fixture_data))
    result = run("evaluate", path, "--model", "report-cnn", "--data-dir", fixture_data, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoint"]["model"] == "report-cnn"
    assert "do not fit" in one_error_line(run("evaluate", path, "--model", "cnn", "--data-dir", fixture_data))


def test_a_gpu_saved_checkpoint_loads_on_the_cpu(trained_run, tmp_path, fixture_data):
    """Tensors stored with a CUDA location tag are mapped to the CPU when loaded."""
    src, dst = trained_run / "best.pt", tmp_path / "cuda.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                # the storage location, pickled as BINUNICODE: "X", 4-byte length, text
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            zout.writestr(item, data)
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, pickle.UnpicklingError), match="CUDA"):  # what a plain torch.load does
            torch.load(dst, weights_only=True)
    result = run("evaluate", dst, "--data-dir", fixture_data, "--json")
    assert result.exit_code == 0, result.output


_train_cmd = train_cmd


def _epochs_in(out_dir: Path) -> list[int]:
    return [h.epoch for h in checkpoint.load(out_dir / "last.pt").history]


@pytest.mark.slow
def test_sigkill_at_random_moments_never_breaks_a_checkpoint(fixture_data, tmp_path):
    """Kill training four times at random moments (epochs here take a fraction of a second, so
    kills land while checkpoints are being written too); every checkpoint left must load, and
    resuming must give a history with no gap and no duplicate."""
    out = tmp_path / "run"
    rng = random.Random(1)
    for _attempt in range(4):
        cmd = _train_cmd(fixture_data, out, "--epochs", 500, "--seed", 3)
        if (out / "last.pt").exists():
            cmd += ["--resume", str(out / "last.pt")]
        done_before = len(_epochs_in(out)) if (out / "last.pt").exists() else 0
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=NEUTRAL)
        deadline = time.time() + 60
        while not (out / f"epoch-{done_before + 1:03d}.pt").exists() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.kill()
        proc.wait()
        for name in ("last.pt", "best.pt"):
            if (out / name).exists():  # (a kill right after the first epoch file may precede both)
                checkpoint.build_model(checkpoint.load(out / name))  # loads, whole
        done = _epochs_in(out) if (out / "last.pt").exists() else []
        assert done == list(range(1, len(done) + 1)) and len(done) >= done_before
    final = len(_epochs_in(out)) + 2
    cmd = _train_cmd(fixture_data, out, "--epochs", final, "--seed", 3, "--resume", out / "last.pt")
    subprocess.run(cmd, check=True, capture_output=True, cwd=NEUTRAL)
    assert _epochs_in(out) == list(range(1, final + 1))
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, final + 1))


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.slow
def test_sigint_and_sigterm_save_a_resumable_checkpoint(fixture_data, tmp_path, sig, code):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        _train_cmd(fixture_data, out, "--epochs", 50),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NEUTRAL,
    )
    deadline = time.time() + 60
    while not (out / "epoch-001.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Resume with: mnistcli train --resume" in stdout and "Traceback" not in stderr
    ckpt = checkpoint.load(out / "last.pt")
    assert ckpt.epoch < 50
    result = subprocess.run(
        _train_cmd(fixture_data, out, "--epochs", ckpt.epoch + 2, "--resume", out / "last.pt"),
        capture_output=True,
        text=True,
        cwd=NEUTRAL,
    )
    assert result.returncode == 0, result.stderr
    assert _epochs_in(out) == list(range(1, ckpt.epoch + 3))


def test_an_output_folder_that_cannot_be_written_is_refused_before_training(fixture_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = one_error_line(run("train", "--epochs", 1, "--data-dir", fixture_data, "--out-dir", blocker / "run"))
    assert "cannot write to output folder" in line


def test_debug_shows_the_traceback(tmp_path):
    args = ["train", "--data-dir", tmp_path, "--no-download", "--out-dir", tmp_path / "o"]
    quiet = run(*args)
    assert quiet.exit_code == 1 and quiet.exception is not None and isinstance(quiet.exception, SystemExit)
    for result in (run("--debug", *args), run(*args, env={"MNISTCLI_DEBUG": "1"})):
        assert type(result.exception).__name__ == "DataError"

"""The GPU path: run where CUDA is (skipped elsewhere, saying why). benchmarks/gpu_time_to_99.py times it."""

from __future__ import annotations

import json

import pytest
import torch

from mnistcli import checkpoint, trainer
from mnistcli.settings import RunSettings

from helpers import run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def _fit(data, out, epochs, stop=lambda: False, resume=None, precision="fp32"):
    options = RunSettings(data_dir=data, download=False, out_dir=out, device="cuda", precision=precision, resume=resume)
    given = {"epochs": epochs} if resume else {"epochs": epochs, "val_size": 100, "batch_size": 32}
    return trainer.fit(options, given=given, should_stop=stop)


@pytest.fixture(autouse=True)
def _deterministic(monkeypatch):
    torch.use_deterministic_algorithms(True, warn_only=True)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    yield
    torch.use_deterministic_algorithms(False)


def test_resume_on_cuda_gives_the_same_weights_as_a_straight_run(fixture_data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    _fit(fixture_data, tmp_path / "straight", 2)
    calls = iter(range(10_000))
    _fit(fixture_data, tmp_path / "stopped", 2, stop=lambda: next(calls) >= 5)
    _fit(fixture_data, tmp_path / "stopped", 2, resume=tmp_path / "stopped" / "last.pt")
    a, b = checkpoint.load(tmp_path / "straight" / "last.pt"), checkpoint.load(tmp_path / "stopped" / "last.pt")
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def test_evaluate_on_cuda_matches_what_train_reported(fixture_data, tmp_path):
    _fit(fixture_data, tmp_path, 1)
    history = json.loads((tmp_path / "history.json").read_text())
    result = run("evaluate", tmp_path / "best.pt", "--device", "cuda", "--data-dir", fixture_data, "--json")
    assert json.loads(result.stdout)["accuracy"] == history[0]["test_acc"]


def test_bf16_autocast_trains_and_is_recorded(fixture_data, tmp_path):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    _fit(fixture_data, tmp_path, 1, precision="bf16")
    ckpt = checkpoint.load(tmp_path / "last.pt")
    assert ckpt.config.precision == "bf16" and ckpt.config.device.startswith("cuda")


def test_a_checkpoint_saved_on_the_gpu_loads_on_the_cpu(fixture_data, tmp_path):
    _fit(fixture_data, tmp_path, 1)
    result = run("evaluate", tmp_path / "best.pt", "--device", "cpu", "--data-dir", fixture_data, "--json")
    assert result.exit_code == 0, result.output

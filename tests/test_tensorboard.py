"""`train --tensorboard`: event files that TensorBoard's own reader opens, with the run's figures."""

import json

import pytest

from helpers import one_error_line, run


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_the_event_files_hold_every_epochs_figures_and_the_logged_rows(fixture_data, tmp_path):
    pytest.importorskip("tensorboard")
    args = ("train", "--data-dir", fixture_data, "--out-dir", tmp_path, "--val-size", 100, "--batch-size", 64)
    result = run(*args, "--epochs", 2, "--log-every", 3, "--tensorboard")
    assert result.exit_code == 0, result.output
    assert list(tmp_path.glob("events.out.tfevents.*"))
    scalars = _scalars(tmp_path)
    history = json.loads((tmp_path / "history.json").read_text())
    for name in ("train_loss", "train_acc", "val_acc", "test_loss", "test_acc", "lr", "temperature"):
        expected = [(h["epoch"], pytest.approx(h[name], rel=1e-6)) for h in history]
        assert scalars[f"epoch/{name}"] == expected, name
    # 500 training images in batches of 64: 8 steps an epoch, a row at batches 3 and 6 of each
    assert [step for step, _ in scalars["train/loss"]] == [3, 6, 11, 14]
    resumed = run("train", "--resume", tmp_path, "--epochs", 3, "--tensorboard", "--data-dir", fixture_data)
    assert resumed.exit_code == 0, resumed.output
    assert [step for step, _ in _scalars(tmp_path)["epoch/test_acc"]] == [1, 2, 3]


def test_without_the_extra_it_is_one_line_saying_how_to_install_it(fixture_data, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    line = one_error_line(run("train", "--data-dir", fixture_data, "--out-dir", tmp_path, "--tensorboard"))
    assert "pip install 'mnistcli[tensorboard]'" in line and not list(tmp_path.glob("*"))


def test_a_run_stopped_mid_epoch_has_logged_its_rows(fixture_data, tmp_path):
    pytest.importorskip("tensorboard")
    from mnistcli import trainer
    from mnistcli.settings import RunSettings

    calls = iter(range(1000))
    settings = RunSettings(data_dir=fixture_data, out_dir=tmp_path, device="cpu", log_every=1, tensorboard=True)
    result = trainer.fit(
        settings, given={"epochs": 2, "val_size": 100, "batch_size": 64}, should_stop=lambda: next(calls) >= 3
    )
    assert result.interrupted and not result.history  # stopped in epoch 1: no epoch row, the batch rows
    steps = [step for step, _ in _scalars(tmp_path)["train/loss"]]
    assert steps == [1, 2, 3, 4], steps  # asked before each batch after the first

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import REAL_MNIST, needs_real_mnist
from mnistcli import checkpoint, trainer
from mnistcli.cli import app
from mnistcli.recipes import make_recipe

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_the_commands():
    result = run("--help")
    assert result.exit_code == 0, result.output
    for command in ("train", "evaluate", "predict", "show-samples"):
        assert command in result.output


def test_list_models_shows_parameter_counts():
    result = run("train", "--list-models")
    assert result.exit_code == 0, result.output
    assert "report-cnn" in result.output and "21,840" in result.output and "fc" in result.output


def test_one_epoch_writes_checkpoints_history_and_curves(fixture_data, tmp_path):
    out = tmp_path / "run"
    result = run("train", "--epochs", 1, "--data-dir", fixture_data, "--out-dir", out, "--val-size", 100,
                 "--log-every", 2, "--batch-size", 64)
    assert result.exit_code == 0, result.output
    for name in ("epoch-001.pt", "last.pt", "best.pt", "history.json", "history.csv", "curves.png"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1] and 0 <= history[0]["test_acc"] <= 1
    ckpt = checkpoint.load(out / "best.pt")
    assert ckpt["model"] == "cnn" and ckpt["epoch"] == 1 and ckpt["metrics"]["val_acc"] == history[0]["val_acc"]
    assert ckpt["config"]["recipe"]["val_size"] == 100
    # Not a terminal: plain log lines, a row every 2 batches, no live bar.
    assert "Epoch 1/1 | train loss" in result.stdout and "Loss" in result.stdout
    assert result.stdout.count("%") >= 4


def test_report_recipe_is_one_flag(fixture_data, tmp_path):
    result = run("train", "--recipe", "report", "--epochs", 1, "--data-dir", fixture_data, "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    recipe = checkpoint.load(tmp_path / "last.pt")["config"]["recipe"]
    assert (recipe["model"], recipe["optimizer"], recipe["lr"], recipe["momentum"], recipe["batch_size"]) == (
        "report-cnn", "sgd", 0.01, 0.5, 128)
    assert recipe["val_size"] == 0 and "chosen by test accuracy" in result.stdout


def _fit(data_dir, out, epochs, resume=None, stop=lambda: False, explicit=None, scheduler="onecycle"):
    recipe = make_recipe(epochs=epochs, val_size=100, batch_size=20, augment=2, ema=0.9, scheduler=scheduler)
    options = trainer.RunOptions(data_dir=data_dir, download=False, out_dir=out, device="cpu", resume=resume)
    return trainer.fit(recipe, options, should_stop=stop, explicit=explicit or {"epochs"})


def _same_weights(a, b):
    sa, sb = checkpoint.load(a)["state_dict"], checkpoint.load(b)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_gives_the_same_weights_as_a_straight_run(fixture_data, tmp_path):
    # With a constant learning rate, 1 epoch then --resume --epochs 2 is the same run as 2 epochs.
    _fit(fixture_data, tmp_path / "straight", 2, scheduler="none")
    _fit(fixture_data, tmp_path / "split", 1, scheduler="none")
    assert not _same_weights(tmp_path / "straight" / "last.pt", tmp_path / "split" / "last.pt")
    result = _fit(fixture_data, tmp_path / "split", 2, resume=tmp_path / "split" / "last.pt", scheduler="none")
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert _same_weights(tmp_path / "straight" / "last.pt", tmp_path / "split" / "last.pt")


def test_stop_after_an_epoch_and_resume_follows_the_same_schedule(fixture_data, tmp_path):
    _fit(fixture_data, tmp_path / "straight", 2)
    result = _fit(fixture_data, tmp_path / "stopped", 2, stop=lambda: (tmp_path / "stopped" / "epoch-001.pt").exists())
    assert result.interrupted and [h["epoch"] for h in result.history] == [1]
    assert checkpoint.load(tmp_path / "stopped" / "last.pt")["partial"] is None
    _fit(fixture_data, tmp_path / "stopped", 2, resume=tmp_path / "stopped")
    assert _same_weights(tmp_path / "straight" / "last.pt", tmp_path / "stopped" / "last.pt")


def test_interrupt_mid_epoch_saves_and_resumes_exactly(fixture_data, tmp_path):
    _fit(fixture_data, tmp_path / "straight", 2)
    calls = iter(range(1000))
    result = _fit(fixture_data, tmp_path / "stopped", 2, stop=lambda: next(calls) >= 0)  # stop at once
    assert result.interrupted and result.interrupted_at == (1, 1)  # stops after the batch in progress
    partial = checkpoint.load(tmp_path / "stopped" / "last.pt")
    assert partial["epoch"] == 0 and partial["partial"]["batch"] == 1
    result = _fit(fixture_data, tmp_path / "stopped", 2, resume=tmp_path / "stopped" / "last.pt")
    assert not result.interrupted and [h["epoch"] for h in result.history] == [1, 2]
    assert _same_weights(tmp_path / "straight" / "last.pt", tmp_path / "stopped" / "last.pt")


def test_cli_resume_continues_and_refuses_conflicts(fixture_data, tmp_path):
    base = ("--data-dir", fixture_data, "--out-dir", tmp_path, "--val-size", 100)
    assert run("train", "--epochs", 1, *base).exit_code == 0
    refused = run("train", "--resume", tmp_path, "--model", "fc", "--epochs", 2)
    assert refused.exit_code != 0 and "cannot resume" in refused.output and "--model fc" in refused.output
    done = run("train", "--resume", tmp_path / "last.pt", "--data-dir", fixture_data)
    assert done.exit_code != 0 and "already finished 1 of 1" in done.output
    resumed = run("train", "--resume", tmp_path, "--epochs", 2, "--data-dir", fixture_data)
    assert resumed.exit_code == 0, resumed.output
    assert "--epochs: 1 -> 2" in resumed.stdout
    assert [h["epoch"] for h in json.loads((tmp_path / "history.json").read_text())] == [1, 2]


def test_missing_data_is_one_clear_line(tmp_path):
    result = run("train", "--epochs", 1, "--data-dir", tmp_path / "none", "--no-download", "--out-dir", tmp_path / "o")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train-images-idx3-ubyte" in lines[0] and "--data-dir" in lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (("--epochs", "0"), "--epochs must be at least 1"),
        (("--batch-size", "0"), "--batch-size must be at least 1"),
        (("--lr", "-1"), "--lr must be a positive number"),
        (("--model", "nope"), "choose from: fc, report-cnn, cnn"),
        (("--optimizer", "lbfgs"), "choose from: sgd, adam, adamw"),
        (("--recipe", "fast"), "unknown recipe"),
    ],
)
def test_impossible_options_are_refused_before_any_work(tmp_path, args, expected):
    result = run("train", *args, "--data-dir", tmp_path / "none", "--no-download", "--out-dir", tmp_path / "o")
    assert result.exit_code == 2 and expected in result.stderr, result.output
    assert not (tmp_path / "o").exists()


def test_cuda_device_without_cuda_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run("train", "--device", "cuda", "--data-dir", tmp_path, "--out-dir", tmp_path / "o")
    assert result.exit_code == 2 and "no CUDA GPU" in result.stderr


@needs_real_mnist
def test_default_model_reaches_98_5_percent_in_one_epoch_on_real_mnist(tmp_path):
    result = run("train", "--epochs", 1, "--data-dir", REAL_MNIST, "--no-download", "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "history.json").read_text())
    assert history[0]["test_acc"] >= 0.985, history


def test_compile_trains_and_saves_a_plain_checkpoint(fixture_data, tmp_path):
    result = run("train", "--compile", "--epochs", 1, "--data-dir", fixture_data, "--out-dir", tmp_path,
                 "--val-size", 100, "--batch-size", 100, "--precision", "fp32")
    assert result.exit_code == 0, result.output
    ckpt = checkpoint.load(tmp_path / "best.pt")
    assert not any(k.startswith("_orig_mod.") for k in ckpt["state_dict"])
    checkpoint.build_model(ckpt)

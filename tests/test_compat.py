"""Model files written by an earlier release still load, evaluate, predict and resume."""

import json

import torch

from mnistcli import checkpoint

from helpers import ROOT, run

RELEASE = ROOT / "tests" / "fixtures" / "release-0.1.0"


def test_a_checkpoint_stopped_mid_epoch_by_release_0_1_0_resumes(fixture_data, tmp_path):
    saved = checkpoint.load(RELEASE / "last.pt")
    assert saved.resumable and saved.model == "report-cnn" and saved.epoch == 1
    assert saved.recipe.ema == 0.99 and saved.recipe.val_size == 100 and saved.recipe.scheduler == "none"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes((RELEASE / "last.pt").read_bytes())
    result = run("train", "--resume", tmp_path / "run", "--data-dir", fixture_data, "--no-download")
    assert result.exit_code == 0, result.output
    assert "at epoch 2, batch 3" in result.stdout
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history[0] == saved.history[0].to_dict()
    assert history[1]["steps"] == 4 - 3  # 500 images in batches of 128: the epoch's last batch only


def test_an_export_by_release_0_1_0_evaluates_as_it_recorded_and_matches_its_checkpoint(fixture_data):
    export = checkpoint.load(RELEASE / "best.safetensors")
    assert not export.resumable and export.epoch == 1 and export.recipe.model == "report-cnn"
    result = run("evaluate", RELEASE / "best.safetensors", "--data-dir", fixture_data, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == export.metrics["test_acc"]
    trained = checkpoint.load(RELEASE / "last.pt")
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    best_epoch_weights = checkpoint.build_model(export)(x)
    assert best_epoch_weights.shape == (4, 10)
    assert not torch.equal(best_epoch_weights, checkpoint.build_model(trained)(x))  # a later step's weights

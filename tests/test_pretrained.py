"""The pretrained checkpoint shipped inside the package."""

import json

import numpy as np
import torch
from typer.testing import CliRunner

from mnistcli import checkpoint, data, engine, preprocess
from mnistcli.cli import app

import imagegen
from helpers import REAL_MNIST, ROOT, needs_real_mnist


def test_bundled_model_is_a_small_inference_only_file_with_its_record():
    path = checkpoint.PRETRAINED
    assert path.is_file() and not path.is_symlink(), path
    assert path.read_bytes()[8:9] == b"{" and path.stat().st_size <= 600 * 1024  # safetensors, weights only
    ckpt = checkpoint.load(path)
    assert ckpt.metrics["test_acc"] >= 0.995 and 0.2 < ckpt.temperature < 1  # calibrated: the raw model is unsure
    assert ckpt.recipe.seed == 0 and 1 <= ckpt.epoch <= ckpt.recipe.epochs
    assert ckpt.optimizer is None and ckpt.history == [] and not ckpt.resumable
    model = checkpoint.build_model(ckpt, path)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_predict_uses_the_bundled_model_when_there_is_no_local_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 13:16] = 255  # a "1"
    from PIL import Image

    Image.fromarray(digit).save(tmp_path / "one.png")
    result = CliRunner().invoke(app, ["predict", "one.png", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["checkpoint"]["source"] == "bundled pretrained"
    assert doc["predictions"][0]["digit"] == 1


@needs_real_mnist
def test_bundled_model_scores_99_6_percent_on_the_whole_real_test_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./checkpoints/best.pt here: the bundled model is the one used
    result = CliRunner().invoke(app, ["evaluate", "--data-dir", str(REAL_MNIST), "--no-download", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["checkpoint"]["source"] == "bundled pretrained" and doc["images"] == 10_000
    assert doc["accuracy"] >= 0.995, doc["accuracy"]
    assert doc["ece"] < 0.01 < doc["ece_uncalibrated"], doc


@needs_real_mnist
def test_bundled_model_reads_realistic_pictures(tmp_path):
    """300 pictures (50 real test digits in each of six styles): at least 98% read right."""
    test = data.load_dataset("mnist", REAL_MNIST, download_ok=False, val_size=0, splits=("test",)).test
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(123))[:50]
    files = imagegen.write_set(tmp_path, test.images[idx].numpy(), test.labels[idx].numpy(), seed=123)
    model = checkpoint.build_model(checkpoint.load(checkpoint.PRETRAINED))
    inputs = torch.from_numpy(np.stack([preprocess.load_digit(p) for p, _, _ in files]))
    predicted = engine.predict_probabilities(model, inputs).argmax(1).tolist()
    right = sum(p == label for p, (_, label, _) in zip(predicted, files))
    assert right / len(files) >= 0.98, f"{right}/{len(files)}"


@needs_real_mnist
def test_the_bundled_model_reads_corrupted_digits():
    """MNIST-C's corruptions (benchmarks/corruptions.py) on 1,000 test images: a grey background, fog,
    noise, stripes and edge maps no longer floor it (it read about 10% of the fog and brightness ones
    before its recipe put digits on other paper)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("corruptions", ROOT / "benchmarks" / "corruptions.py")
    corruptions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corruptions)
    test = data.load_dataset("mnist", REAL_MNIST, download_ok=False, val_size=0, splits=("test",)).test
    images, labels = test.images[:1000].numpy(), test.labels[:1000]
    model = checkpoint.load_model(checkpoint.PRETRAINED, torch.device("cpu"))
    accuracy = {}
    for name in corruptions.CORRUPTIONS:
        corrupted = torch.from_numpy(corruptions.corrupt(name, images))
        probs = engine.predict_probabilities(model.net, corrupted)
        accuracy[name] = float((probs.argmax(1) == labels).float().mean())
    assert min(accuracy.values()) >= 0.85 and sum(accuracy.values()) / len(accuracy) >= 0.95, accuracy

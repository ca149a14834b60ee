"""More MNIST-style datasets: Fashion-MNIST, KMNIST, EMNIST Digits."""

import json
from pathlib import Path

import pytest
import torch

from mnistcli import checkpoint, data
from mnistcli.dataset_specs import DATASETS, dataset_spec
from mnistcli.errors import DataError, OptionError

from helpers import FASHION, needs_real_fashion, render_digits, run, write_dataset


@pytest.mark.parametrize("name", ["fashion-mnist", "kmnist", "emnist-digits"])
def test_each_dataset_reads_its_own_layout(tmp_path, name):
    root = write_dataset(tmp_path, n_train=50, n_test=20, dataset=name)
    ds = data.load_dataset(name, root, download_ok=False, val_size=10)
    spec = DATASETS[name]
    assert ds.spec is spec and ds.classes == list(spec.classes) and ds.test.mean == spec.mean
    # EMNIST is stored transposed; it comes out the right way round, like the others.
    assert torch.equal(ds.test.images, torch.from_numpy(render_digits(20, 2)[0]))
    if not any(Path(d).is_dir() for d in spec.system_dirs):  # else found where the OS package put it
        with pytest.raises(DataError, match=spec.title):
            data.load_dataset(name, tmp_path / "elsewhere", download_ok=False)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(OptionError, match="fashion-mnist, kmnist, emnist-digits"):
        dataset_spec("cifar10")


def test_a_fashion_run_keeps_its_classes_and_normalisation(tmp_path):
    root = write_dataset(tmp_path / "d", dataset="fashion-mnist")
    out = tmp_path / "run"
    result = run(
        "train", "--dataset", "fashion-mnist", "--epochs", 1, "--data-dir", root, "--out-dir", out, "--val-size", 100
    )
    assert result.exit_code == 0, result.output
    ckpt = checkpoint.load(out / "best.pt")
    assert ckpt.dataset == "fashion-mnist" and ckpt.classes[9] == "Ankle boot"
    assert ckpt.normalization == {"mean": 0.2860, "std": 0.3530}
    shown = run("evaluate", out / "best.pt", "--data-dir", root)
    assert shown.exit_code == 0 and "Ankle boot" in shown.stdout and "T-shirt/top" in shown.stdout
    refused = run("train", "--resume", out, "--dataset", "mnist", "--epochs", 2, "--data-dir", root)
    assert refused.exit_code == 2 and "--dataset mnist (checkpoint: fashion-mnist)" in refused.stderr


@needs_real_fashion
@pytest.mark.slow
def test_real_fashion_mnist_trains_to_90_percent_in_5_epochs(tmp_path):
    result = run(
        "train",
        "--dataset",
        "fashion-mnist",
        "--epochs",
        5,
        "--data-dir",
        tmp_path / "none",
        "--no-download",
        "--out-dir",
        tmp_path / "run",
    )
    assert result.exit_code == 0, result.output
    assert str(FASHION) in result.stdout  # found where Debian's package put it
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[-1]["test_acc"] >= 0.90, history[-1]
    doc = json.loads(
        run("evaluate", tmp_path / "run" / "best.pt", "--json", "--data-dir", tmp_path / "none", "--no-download").stdout
    )
    assert doc["classes"][9] == "Ankle boot" and doc["accuracy"] >= 0.90

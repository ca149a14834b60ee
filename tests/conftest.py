"""Shared fixtures: a small real IDX dataset written into a temp folder, and real MNIST when present."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from mnistcli.data import DATASETS

REAL_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_real_fashion = pytest.mark.skipif(
    not FASHION.is_dir(), reason=f"Debian's dataset-fashion-mnist is not installed ({FASHION})"
)
needs_real_mnist = pytest.mark.skipif(
    not (REAL_MNIST / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"real MNIST not found at {REAL_MNIST}",
)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0, 0, 0x08, ndim; big-endian sizes; data)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(array)
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def render_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n MNIST-like images (light strokes on black, 28x28) of digits drawn with a font, varied in size,
    position, angle and stroke; labels cycle through 0-9. Learnable, so a small model trains on it."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    for i in range(n):
        size = int(rng.integers(34, 44))
        font = ImageFont.load_default(size=size)
        canvas = Image.new("L", (56, 56), 0)
        draw = ImageDraw.Draw(canvas)
        draw.text((28, 28), str(labels[i]), fill=255, font=font, anchor="mm", stroke_width=int(rng.integers(1, 4)), stroke_fill=255)
        canvas = canvas.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR, translate=tuple(int(t) for t in rng.integers(-3, 4, 2)))
        images[i] = np.asarray(canvas.resize((28, 28), Image.BILINEAR))
    return images, labels


def write_dataset(
    root: Path, n_train: int = 600, n_test: int = 200, gz: bool = True, layout: str = "torchvision",
    dataset: str = "mnist",
) -> Path:  # fmt: skip
    """Write the four IDX files of `dataset` under `root` (in FOLDER/raw/ or flat); returns `root`."""
    spec = DATASETS[dataset]
    folder = root / spec.folder / "raw" if layout == "torchvision" else root
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = render_digits(n, seed)
        if spec.transpose:
            images = images.transpose(0, 2, 1)  # stored column by column, as EMNIST is
        img_name, lbl_name = spec.files[split]
        write_idx(folder / img_name, images, gz)
        write_idx(folder / lbl_name, labels, gz)
    return root


@pytest.fixture(scope="session")
def fixture_data(tmp_path_factory) -> Path:
    """A small MNIST-format dataset, gzipped, in torchvision's MNIST/raw layout."""
    return write_dataset(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="session")
def fixture_data_flat(tmp_path_factory) -> Path:
    """The same kind of dataset, uncompressed, flat in one folder."""
    return write_dataset(tmp_path_factory.mktemp("mnist_flat"), gz=False, layout="flat")


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    # Tests say where the data is; a developer's MNISTCLI_DATA_DIR must not leak in.
    monkeypatch.delenv("MNISTCLI_DATA_DIR", raising=False)
    monkeypatch.delenv("MNISTCLI_DEBUG", raising=False)


@pytest.fixture(scope="session")
def trained_run(fixture_data, tmp_path_factory) -> Path:
    """A small checkpoint trained for a few epochs on the fixture dataset; returns its run folder."""
    from mnistcli import trainer
    from mnistcli.recipes import make_recipe

    out = tmp_path_factory.mktemp("run")
    recipe = make_recipe(epochs=4, batch_size=32, lr=0.05, val_size=100)
    trainer.fit(recipe, trainer.RunOptions(data_dir=fixture_data, download=False, out_dir=out, device="cpu"))
    return out

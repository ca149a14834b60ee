"""The datasets mnistcli knows: names, files, normalisation and class names.

Plain data with no torch import, so that `--help` and shell completion stay quick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mnistcli.errors import OptionError

MEAN = 0.1307  # MNIST's; each dataset has its own (DatasetSpec)
STD = 0.3081
DEFAULT_DATASET = "mnist"
DEFAULT_VAL_SIZE = 5000  # training images held out to choose best.pt

RAW_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DatasetSpec:
    """An MNIST-style dataset: four IDX files of 28x28 grey images and labels 0-9."""

    name: str  # as given to --dataset
    title: str
    folder: str  # torchvision's folder for it under the data dir (FOLDER/raw/)
    files: dict[str, tuple[str, str]]  # split -> (images, labels) file names without .gz
    mean: float
    std: float
    classes: tuple[str, ...]
    torchvision_class: str
    torchvision_args: tuple[tuple[str, str], ...] = ()
    transpose: bool = False  # EMNIST stores its images column by column
    system_dirs: tuple[str, ...] = ()  # where an OS package puts it
    object_size: int = 20  # longer side of the object in the 28x28 field (20 for handwriting)

    def raw_files(self, splits: Sequence[str] = ("train", "test")) -> list[str]:
        """The IDX files (without .gz) of `splits`."""
        return [name for split in splits for name in self.files[split]]


DIGITS = tuple(str(d) for d in range(10))
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("mnist", "MNIST", "MNIST", RAW_FILES, MEAN, STD, DIGITS, "MNIST"),
        DatasetSpec(
            "fashion-mnist",
            "Fashion-MNIST",
            "FashionMNIST",
            RAW_FILES,
            0.2860,
            0.3530,
            ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
            "FashionMNIST",
            system_dirs=("/usr/share/datasets/fashion-mnist",),
            object_size=28,
        ),
        DatasetSpec(
            "kmnist",
            "Kuzushiji-MNIST",
            "KMNIST",
            RAW_FILES,
            0.1918,
            0.3483,
            ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
            "KMNIST",
        ),
        DatasetSpec(
            "emnist-digits",
            "EMNIST Digits",
            "EMNIST",
            {
                split: (f"emnist-digits-{split}-images-idx3-ubyte", f"emnist-digits-{split}-labels-idx1-ubyte")
                for split in ("train", "test")
            },
            0.1733,
            0.3317,
            DIGITS,
            "EMNIST",
            torchvision_args=(("split", "digits"),),
            transpose=True,
        ),
    )
}
MNIST_SPEC = DATASETS["mnist"]


def dataset_names() -> list[str]:
    return list(DATASETS)


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise OptionError(f"unknown dataset {name!r}; choose from: {', '.join(DATASETS)}") from None

"""Using a trained model: reading people's pictures and predicting them, the dataset a checkpoint
belongs to, and picking images to show. What `predict`, `evaluate`, `show-samples` and `serve`
compute, without printing anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch

from mnistcli import engine, metrics, preprocess
from mnistcli.checkpoint import Checkpoint, LoadedModel
from mnistcli.data import Dataset, load_dataset
from mnistcli.engine import EvalResult
from mnistcli.errors import ImageError, ImageTooLarge
from mnistcli.predictions import Failure, Prediction, Ranked

if TYPE_CHECKING:
    from PIL import Image

# A prediction is flagged as unsure when the answer's probability, averaged over the picture and
# eight slightly changed copies of it (augment.views: moved a pixel, turned 10 degrees, strokes bolder
# or thinner), is under this: an answer that another crop or pen would overturn is not sure. Chosen on
# the tuning halves with the bundled `cnn` of that release: it flagged 2 of the 2 misses of the
# development set's tuning half and 11 of the 20 of the UCI digits', against 0 and 7 for the picture's
# own probability under 60%, for 0 and 2.2% of the right answers (0.4% and 1.6%). The README gives
# what it does with today's bundled model.
UNSURE_BELOW = 0.6


def dataset_of(ckpt: Checkpoint, data_dir: Optional[Path], download: bool, splits: tuple[str, ...]) -> Dataset:
    """The dataset a checkpoint was trained on, with the same validation split; looked for in the
    folder the checkpoint recorded too."""
    return load_dataset(
        ckpt.dataset,
        data_dir,
        download_ok=download,
        val_size=ckpt.recipe.val_size,
        splits=splits,
        recorded_dir=ckpt.data_dir,
    )


def splits_for(split: str) -> tuple[str, ...]:
    """The splits to read for `split` (val is carved from train)."""
    return ("test",) if split == "test" else ("train", "test")


@dataclass
class Evaluation:
    """How a model does on a split: what `mnistcli evaluate --json` prints (with `to_dict`)."""

    split: str
    data_dir: str
    classes: list[str]
    result: EvalResult = field(repr=False)  # the logits and labels, for figures
    images: torch.Tensor = field(repr=False)  # the split's uint8 images (N, 28, 28)
    confusion: torch.Tensor = field(repr=False)

    @property
    def accuracy(self) -> float:
        return self.result.accuracy

    @property
    def loss(self) -> float:
        return self.result.loss

    @property
    def errors(self) -> int:
        return self.result.total - self.result.correct

    @property
    def ece(self) -> float:
        """Expected calibration error of the probabilities the model gives (calibrated)."""
        return metrics.expected_calibration_error(self.result.probabilities, self.result.labels)

    @property
    def ece_uncalibrated(self) -> float:
        """The same of the raw softmax (temperature 1)."""
        return metrics.expected_calibration_error(self.result.logits.softmax(1), self.result.labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "images": self.result.total,
            "data_dir": self.data_dir,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "errors": self.errors,
            "temperature": self.result.temperature,
            "ece": self.ece,
            "ece_uncalibrated": self.ece_uncalibrated,
            "classes": self.classes,
            "per_class": metrics.per_class(self.confusion),
            "confusion_matrix": self.confusion.tolist(),
        }


def evaluate_model(loaded: LoadedModel, data_dir: Optional[Path], split: str, download: bool = True) -> Evaluation:
    """Accuracy, loss, calibration and the confusion matrix of a model on one split of its dataset."""
    ck = loaded.checkpoint
    data = dataset_of(ck, data_dir, download, splits_for(split))
    images = data.split(split)
    device = next(loaded.net.parameters()).device
    result = engine.evaluate_split(loaded.net, images.to(device), temperature=ck.temperature)
    cm = metrics.confusion_matrix(result.labels, result.predictions, len(ck.classes))
    return Evaluation(split, str(data.root), list(ck.classes), result, images.images, cm)


# What a picture may be given as: a file, its bytes, or the image itself.
Picture = Union[str, Path, bytes, "Image.Image", np.ndarray, torch.Tensor]


@dataclass
class Pictures:
    """People's pictures made into network inputs, and the ones that could not be read."""

    inputs: list[np.ndarray] = field(default_factory=list)  # uint8 (28, 28) each
    names: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def read_pictures(
    sources: Sequence[Picture], names: Sequence[str], raw: bool = False, object_size: int = preprocess.DIGIT_SIZE
) -> Pictures:
    """Each picture made into a 28x28 input; one that cannot be read is recorded and the others still read."""
    pictures = Pictures()
    for source, name in zip(sources, names):
        try:
            pictures.inputs.append(network_input(source, name, raw, object_size))
            pictures.names.append(name)
        except ImageError as exc:
            pictures.failures.append(Failure(name, str(exc), isinstance(exc, ImageTooLarge)))
    return pictures


def network_input(
    source: Picture, name: str, raw: bool = False, object_size: int = preprocess.DIGIT_SIZE
) -> np.ndarray:
    """One picture as the 28x28 uint8 input the network sees: cleaned like an MNIST sample, or with
    `raw` only made grey and 28x28. ImageError names the picture."""
    if isinstance(source, (str, Path, bytes)):
        return preprocess.load_digit(Path(source) if isinstance(source, str) else source, raw, object_size, name)
    image = as_image(source, name)
    try:
        return preprocess.as_mnist_input(image) if raw else preprocess.to_mnist(image, object_size)
    except ImageError as exc:
        raise ImageError(f"{name}: {exc}") from exc


def as_image(source: Any, name: str) -> Image.Image:
    """A PIL image of a picture given in memory: a PIL image, or an array (H x W grey, H x W x 3 or 4;
    uint8, or floats in [0, 1]) as numpy or torch."""
    from PIL import Image

    if isinstance(source, Image.Image):
        image = source
    else:
        array = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else np.asarray(source)
        image = Image.fromarray(_as_uint8(array, name))
    if image.width * image.height > preprocess.MAX_PIXELS:
        raise ImageTooLarge(
            f"{name}: image too large ({image.width}x{image.height} pixels; the limit is "
            f"{preprocess.MAX_PIXELS / 1e6:g} megapixels)"
        )
    return image


def _as_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # channels first, as torch keeps images
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageError(f"{name}: an array of shape {array.shape} is not a picture (H x W, or H x W x 3 or 4)")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ImageError(f"{name}: an array of {array.dtype} is not a picture (uint8, or floats in [0, 1])")
    values = array.astype(np.float64)
    if values.size and (not np.isfinite(values).all() or values.min() < 0 or values.max() > 1):
        raise ImageError(f"{name}: a float array must hold values in [0, 1] (uint8 holds 0-255)")
    return np.ascontiguousarray(np.round(values * 255).astype(np.uint8))


def predict_inputs(
    loaded: LoadedModel, inputs: Sequence[np.ndarray], names: Sequence[str], top_k: int = 3
) -> list[Prediction]:
    """One prediction per input, all through the network in batches."""
    if not len(inputs):
        return []
    ck = loaded.checkpoint
    spec = ck.spec
    images = torch.from_numpy(np.stack(inputs))
    over_views = engine.probabilities_over_views(
        loaded.net, images, mean=spec.mean, std=spec.std, temperature=ck.temperature
    )
    probs = over_views[0]
    top_p, top_i = probs.topk(min(max(top_k, 2), probs.shape[1]), dim=1)
    steady = over_views.mean(0).gather(1, top_i[:, :1])[:, 0]  # the answer's, over the copies too
    return [
        prediction(name, p, i, ck.classes, top_k, x, s)
        for name, p, i, x, s in zip(names, top_p.tolist(), top_i.tolist(), inputs, steady.tolist())
    ]


def prediction(
    name: str,
    probs: list[float],
    digits: list[int],
    classes: Sequence[str],
    top_k: int,
    seen: Optional[np.ndarray] = None,
    steady: Optional[float] = None,
) -> Prediction:
    """The prediction of one picture from its most likely classes (highest first): the answer, whether it
    is unsure (then the runner-up is the other candidate), and the top k. `steady` is the answer's
    probability averaged over the picture's slightly changed copies (default: its own)."""
    ranked = [Ranked(d, classes[d], p) for d, p in zip(digits, probs)]
    return Prediction(
        file=name,
        digit=digits[0],
        label=classes[digits[0]],
        confidence=probs[0],
        unsure=(probs[0] if steady is None else steady) < UNSURE_BELOW,
        runner_up=ranked[1] if len(ranked) > 1 else None,
        top_k=ranked[:top_k],
        input=seen if seen is not None else np.zeros((28, 28), np.uint8),
    )


def pick_samples(
    labels: torch.Tensor,
    *,
    count: int,
    per_class: Optional[int] = None,
    seed: int = 0,
    among: Optional[torch.Tensor] = None,
    num_classes: int = 10,
) -> torch.Tensor:
    """Indices of images to show: `count` at random, or `per_class` of each class (class by class),
    drawn from `among` (indices) when given; the same seed gives the same picks."""
    pool = among if among is not None else torch.arange(len(labels))
    pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))]
    if per_class is None:
        return pool[:count]
    return torch.cat([pool[labels[pool] == c][:per_class] for c in range(num_classes)])

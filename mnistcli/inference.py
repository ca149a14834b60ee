"""Using a trained model: reading people's pictures and predicting them, the dataset a checkpoint
belongs to, and picking images to show. What `predict`, `evaluate`, `show-samples` and `serve`
compute, without printing anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from mnistcli import engine, preprocess
from mnistcli.checkpoint import Checkpoint, LoadedModel
from mnistcli.data import Dataset, load_dataset
from mnistcli.errors import ImageError

# Below this top probability a prediction is flagged as unsure (chosen on the development set
# of real pictures; see the README's results).
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
class Pictures:
    """People's pictures made into network inputs, and the files that could not be read."""

    inputs: list[np.ndarray] = field(default_factory=list)  # uint8 (28, 28) each
    names: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)  # {"file", "error"}


def read_pictures(paths: Sequence[Path], raw: bool = False, object_size: int = preprocess.DIGIT_SIZE) -> Pictures:
    """Each file made into a 28x28 input; one bad file is recorded and the others still read."""
    pictures = Pictures()
    for path in paths:
        try:
            pictures.inputs.append(preprocess.load_digit(path, raw=raw, object_size=object_size))
            pictures.names.append(str(path))
        except ImageError as exc:
            pictures.failures.append({"file": str(path), "error": str(exc)})
    return pictures


def predict_inputs(
    loaded: LoadedModel, inputs: Sequence[np.ndarray], names: Sequence[str], top_k: int = 3
) -> list[dict[str, Any]]:
    """One row per input: the digit, its label and probability, the top k, and whether it is unsure."""
    if not len(inputs):
        return []
    ck = loaded.checkpoint
    spec = ck.spec
    probs = engine.predict_probabilities(loaded.net, torch.from_numpy(np.stack(inputs)), mean=spec.mean, std=spec.std)
    top_p, top_i = probs.topk(min(max(top_k, 2), probs.shape[1]), dim=1)
    return [prediction_row(name, p, i, ck.classes, top_k) for name, p, i in zip(names, top_p.tolist(), top_i.tolist())]


def prediction_row(
    name: str, probs: list[float], digits: list[int], classes: Sequence[str], top_k: int
) -> dict[str, Any]:
    """The row of one picture from its most likely classes (highest first): the answer, whether it
    is unsure (then the runner-up is the other candidate), and the top k."""
    ranked = [{"digit": d, "label": classes[d], "probability": p} for d, p in zip(digits, probs)]
    return {
        "file": name,
        "digit": digits[0],
        "label": classes[digits[0]],
        "confidence": probs[0],
        "unsure": probs[0] < UNSURE_BELOW,
        "runner_up": ranked[1] if len(ranked) > 1 else None,
        "top_k": ranked[:top_k],
    }


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

"""mnistcli from Python: load a model, read digits, evaluate, train. `import mnistcli` gives these.

    import mnistcli

    model = mnistcli.load()                      # the bundled model
    answer = model.predict("digit.jpg")          # a Prediction: answer.digit, answer.confidence, ...
    answers = model.predict([image, array])      # several pictures, through the network in batches
    report = model.evaluate()                    # accuracy, loss, calibration on the MNIST test split
    result = mnistcli.train(epochs=5, out_dir="runs/a")

The numbers are those of the command line (`predict --json`, `evaluate --json`): the same code
path. Expected failures raise the exceptions of `mnistcli.errors` (MnistCliError and its kinds),
never SystemExit. Importing this module imports no torch: that waits for a model or a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union, overload

from mnistcli import files
from mnistcli.settings import Recipe, RunSettings

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from mnistcli.checkpoint import LoadedModel
    from mnistcli.history import HistoryRow
    from mnistcli.inference import Evaluation, Prediction
    from mnistcli.trainer import Hooks

    Picture = Union[str, os.PathLike[str], bytes, Image.Image, np.ndarray, torch.Tensor]


def load(path: Union[str, os.PathLike[str], None] = None, device: str = "auto") -> Model:
    """A model ready to use: a `.pt` checkpoint, an exported `.safetensors`, or a run folder (its
    last.pt). Without a path, the model bundled with mnistcli.

    Unlike the command line, a bare `load()` never looks at ./checkpoints/best.pt: code that read a
    different model depending on the folder it runs in would surprise its users. Pass that path to
    use it. `device` is "auto" (CUDA, then Apple MPS, then the CPU), "cpu", "cuda" or "mps".
    """
    from mnistcli import checkpoint, devices

    chosen = Path(path) if path is not None else checkpoint.PRETRAINED
    loaded = checkpoint.load_model(chosen, devices.select_device(device))
    if path is None:
        loaded.source = "bundled pretrained"
    return Model(loaded)


class Model:
    """A trained network and what it was trained on; made by `mnistcli.load`."""

    def __init__(self, loaded: LoadedModel):
        self._loaded = loaded

    @property
    def path(self) -> Path:
        return self._loaded.path

    @property
    def name(self) -> str:
        """The network's name in the registry ("cnn", "report-cnn", "fc")."""
        return self._loaded.checkpoint.model

    @property
    def classes(self) -> list[str]:
        return list(self._loaded.checkpoint.classes)

    @property
    def dataset(self) -> str:
        return self._loaded.checkpoint.dataset

    @property
    def metrics(self) -> dict[str, Any]:
        """What training recorded for these weights (losses and accuracies)."""
        return dict(self._loaded.checkpoint.metrics)

    def __repr__(self) -> str:
        return f"<mnistcli.Model {self._loaded.checkpoint.describe()} from {self.path}>"

    @overload
    def predict(self, x: Picture, top_k: int = 3, raw: bool = False) -> Prediction: ...
    @overload
    def predict(
        self, x: Union[list[Picture], tuple[Picture, ...]], top_k: int = 3, raw: bool = False
    ) -> list[Prediction]: ...

    def predict(self, x: Any, top_k: int = 3, raw: bool = False) -> Any:
        """The digit in a picture, or in each of a list of pictures (through the network in batches).

        A picture is a path, the bytes of a file, a PIL image, or an array (numpy or torch): H x W grey,
        or H x W x 3 or 4, uint8 or floats in [0, 1]. It is made to look like an MNIST sample first, as
        `mnistcli predict` does; `raw=True` skips that for pictures already 28x28 MNIST-style (light on
        black). ImageError names a picture that cannot be read.
        """
        from mnistcli import inference
        from mnistcli.errors import OptionError

        if top_k < 1:
            raise OptionError(f"top_k must be at least 1, got {top_k}")
        many = isinstance(x, (list, tuple))
        sources = list(x) if many else [x]
        names = [_name(source, i if many else None) for i, source in enumerate(sources)]
        pictures = inference.read_pictures(sources, names, raw, self._loaded.checkpoint.spec.object_size)
        if pictures.failures:
            raise pictures.failures[0].exception()
        predictions = inference.predict_inputs(self._loaded, pictures.inputs, pictures.names, top_k)
        return predictions if many else predictions[0]

    def evaluate(
        self, data_dir: Union[str, os.PathLike[str], None] = None, split: str = "test", download: bool = True
    ) -> Evaluation:
        """Accuracy, loss, calibration, per-class figures and the confusion matrix on a split of the
        model's dataset ("test", "val": the run's held-out images, or "train"); `to_dict()` is what
        `mnistcli evaluate --json` prints. The data is found as the command line finds it."""
        from mnistcli import inference
        from mnistcli.errors import OptionError

        if split not in ("test", "val", "train"):
            raise OptionError(f"split must be 'test', 'val' or 'train', got {split!r}")
        folder = Path(data_dir) if data_dir is not None else None
        return inference.evaluate_model(self._loaded, folder, split, download)


def _name(source: Any, index: Optional[int]) -> str:
    """What a picture is called in its Prediction and in errors: its path, else its kind (and place)."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    kind = "bytes" if isinstance(source, bytes) else "image" if hasattr(source, "getpixel") else "array"
    return kind if index is None else f"{kind}[{index}]"


@dataclass
class TrainResult:
    """What a training run did and left behind."""

    history: list[HistoryRow]  # one row per finished epoch
    best_epoch: Optional[int]
    out_dir: Path
    stopped: bool  # stopped before its last epoch (hooks asked, or a signal)

    @property
    def best(self) -> Path:
        return self.out_dir / files.BEST

    @property
    def last(self) -> Path:
        return self.out_dir / files.LAST

    @property
    def config(self) -> Path:
        return self.out_dir / files.CONFIG

    def load(self, device: str = "auto") -> Model:
        """The best epoch's model."""
        return load(self.best, device)


def train(
    *,
    recipe: Optional[str] = None,
    out_dir: Union[str, os.PathLike[str], None] = None,
    data_dir: Union[str, os.PathLike[str], None] = None,
    resume: Union[str, os.PathLike[str], None] = None,
    hooks: Optional[Hooks] = None,
    **settings: Any,
) -> TrainResult:
    """Train a network, as `mnistcli train` does, and return what it did. Silent unless `hooks` are
    given (an object with the methods of mnistcli.trainer.Hooks: on_start, on_epoch_start, on_batch,
    on_evaluating, on_epoch_end).

    `recipe` is a preset ("default" or "report"); the other keywords are the settings of
    `mnistcli train --help` in Python spelling: what it learns (`epochs=5, lr=0.05, model="fc"`)
    and how it runs (`device="cpu", threads=1, download=False`). OptionError says what is wrong with
    one. `out_dir` defaults to ./checkpoints (or the resumed run's folder).
    """
    from mnistcli import trainer
    from mnistcli.errors import OptionError

    recipe_names = set(Recipe.__dataclass_fields__)
    run_names = set(RunSettings.__dataclass_fields__) - {"command", "out_dir", "data_dir", "resume"}
    unknown = sorted(set(settings) - recipe_names - run_names)
    if unknown:
        raise OptionError(f"not settings of a run: {', '.join(unknown)} (see `mnistcli train --help`)")
    run = RunSettings(
        data_dir=Path(data_dir) if data_dir is not None else None,
        out_dir=Path(out_dir) if out_dir is not None else None,
        resume=Path(resume) if resume is not None else None,
        command="mnistcli.train(...)",
        **{k: v for k, v in settings.items() if k in run_names},
    )
    given = {k: v for k, v in settings.items() if k in recipe_names}
    result = trainer.fit(run, preset=recipe, given=given, hooks=hooks)
    return TrainResult(result.history, result.best_epoch, result.out_dir, result.interrupted)

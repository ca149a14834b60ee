"""The options of a training run: what it learns (`Recipe`), how it runs (`RunOptions`), the
named presets, and `resolve`, the one place where presets, given options and a resumed
run's saved recipe become the final recipe.

Plain data with no torch import, so that `--help` and shell completion stay quick; the
optimiser and schedule a recipe asks for are built in `optim.py`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

from mnistcli.datasets import DEFAULT_DATASET, DEFAULT_VAL_SIZE, dataset_spec
from mnistcli.errors import OptionError
from mnistcli.models import DEFAULT_MODEL, model_spec

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("onecycle", "cosine", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_PRESET = "default"
# Options a resumed run may change; everything else must match the checkpoint.
RESUMABLE_CHANGES = ("epochs",)


@dataclass
class Recipe:
    """Everything that decides what a run learns (not where it writes or how it prints)."""

    model: str = DEFAULT_MODEL
    dataset: str = DEFAULT_DATASET
    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    scheduler: str = "onecycle"
    label_smoothing: float = 0.1
    augment: int = 2  # max random shift in pixels; 0 = none
    # How people write beyond MNIST (benchmarks/augmentations.py measures each): on by default.
    rotate: float = 15.0  # random rotations up to this many degrees either way
    scale: float = 0.15  # random scaling up to this fraction either way
    shear: float = 15.0  # random shear up to this many degrees either way
    elastic: float = 0.0  # elastic distortions of this strength (alpha, px; Simard et al. 2003): off, see README
    stroke: float = 0.5  # share of images whose strokes are made bolder or thinner
    ema: float = 0.999  # decay of an average of the weights used for evaluation; 0 = none
    val_size: int = DEFAULT_VAL_SIZE
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """A recipe saved by any version: unknown keys are ignored; fields added since take the
        value that reproduces what that version did (LEGACY), else today's default."""
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in values.items() if k in names}
        return cls(**{**LEGACY, **known})


# Fields added after format 1 was first written, with the value that means "as before".
LEGACY: dict[str, Any] = {"rotate": 0.0, "scale": 0.0, "shear": 0.0, "elastic": 0.0, "stroke": 0.0}

PRESETS: dict[str, dict[str, Any]] = {
    DEFAULT_PRESET: {},
    # The report's recipe: its CNN, plain SGD lr 0.01 momentum 0.5, batch 128, all 60,000 images.
    "report": {
        "model": "report-cnn",
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.5,
        "nesterov": False,
        "weight_decay": 0.0,
        "scheduler": "none",
        "label_smoothing": 0.0,
        "augment": 0,
        "rotate": 0.0,
        "scale": 0.0,
        "shear": 0.0,
        "elastic": 0.0,
        "stroke": 0.0,
        "ema": 0.0,
        "val_size": 0,
    },
}


# What a dataset changes in any preset: clothes are not handwriting, and bending them like
# handwriting costs Fashion-MNIST about 2 points of accuracy in 5 epochs.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "fashion-mnist": {"rotate": 0.0, "scale": 0.0, "shear": 0.0, "stroke": 0.0},
}


@dataclass
class RunOptions:
    """Where a run reads and writes and how it computes and reports; not part of what it learns."""

    data_dir: Optional[Path] = None
    download: bool = True
    out_dir: Path = Path("checkpoints")
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False  # torch.compile the network for training (opt-in: compiling takes a while)
    log_every: int = 300
    threads: Optional[int] = None  # torch's CPU threads (None: torch's default, which OMP_NUM_THREADS sets)
    keep: Optional[int] = None  # keep only the last N epoch-NNN.pt files (None: all)
    resume: Optional[Path] = None
    command: str = ""  # the command line that started the run, kept in its checkpoints


@dataclass
class Resolved:
    """The final recipe, and on resume what the given options changed: name -> (saved, new)."""

    recipe: Recipe
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def resolve(
    preset: Optional[str] = None, given: Optional[dict[str, Any]] = None, saved: Optional[dict[str, Any]] = None
) -> Resolved:
    """The recipe of a run, checked.

    New run: the preset (default: "default"), then what the dataset changes (DATASET_DEFAULTS),
    then the options the user gave (those not None). Resumed run (`saved` is the checkpoint's
    recipe): the saved recipe, where the given options may change only RESUMABLE_CHANGES; other
    differences are refused, and so is a preset.
    """
    given = {k: v for k, v in (given or {}).items() if v is not None}
    unknown = set(given) - {f.name for f in fields(Recipe)}
    if unknown:
        raise TypeError(f"not recipe options: {', '.join(sorted(unknown))}")
    if saved is None:
        name = preset or DEFAULT_PRESET
        if name not in PRESETS:
            raise OptionError(f"unknown recipe {name!r}; choose from: {', '.join(PRESETS)}")
        dataset = given.get("dataset", PRESETS[name].get("dataset", DEFAULT_DATASET))
        recipe = Recipe(**{**Recipe().to_dict(), **PRESETS[name], **DATASET_DEFAULTS.get(dataset, {}), **given})
        check(recipe)
        return Resolved(recipe)
    if preset is not None:
        raise OptionError("--recipe cannot be combined with --resume: the run keeps its own recipe")
    base = Recipe.from_dict(saved)
    changed = {k: (getattr(base, k), v) for k, v in given.items() if getattr(base, k) != v}
    conflicts = [
        f"--{k.replace('_', '-')} {new} (checkpoint: {old})"
        for k, (old, new) in changed.items()
        if k not in RESUMABLE_CHANGES
    ]
    if conflicts:
        raise OptionError(
            "cannot resume with "
            + ", ".join(conflicts)
            + "; drop these options or start a new run with another --out-dir"
        )
    recipe = replace(base, **{k: new for k, (_, new) in changed.items()})
    check(recipe)
    return Resolved(recipe, changed)


def check(r: Recipe) -> None:
    """Refuse impossible values before any work, saying what is allowed."""
    model_spec(r.model)
    dataset_spec(r.dataset)
    _check_choices(r)
    _check_ranges(r)


def _check_choices(r: Recipe) -> None:
    if r.optimizer not in OPTIMIZERS:
        raise OptionError(f"unknown optimizer {r.optimizer!r}; choose from: {', '.join(OPTIMIZERS)}")
    if r.scheduler not in SCHEDULERS:
        raise OptionError(f"unknown scheduler {r.scheduler!r}; choose from: {', '.join(SCHEDULERS)}")


def _check_ranges(r: Recipe) -> None:
    if r.epochs < 1:
        raise OptionError(f"--epochs must be at least 1, got {r.epochs}")
    if r.batch_size < 1:
        raise OptionError(f"--batch-size must be at least 1, got {r.batch_size}")
    if not (r.lr > 0 and math.isfinite(r.lr)):
        raise OptionError(f"--lr must be a positive number, got {r.lr}")
    if not 0 <= r.momentum < 1:
        raise OptionError(f"--momentum must be in [0, 1), got {r.momentum}")
    if r.weight_decay < 0:
        raise OptionError(f"--weight-decay must be 0 or more, got {r.weight_decay}")
    if not 0 <= r.label_smoothing < 1:
        raise OptionError(f"--label-smoothing must be in [0, 1), got {r.label_smoothing}")
    if not 0 <= r.augment <= 4:
        raise OptionError(f"--augment (max shift in pixels) must be 0 to 4, got {r.augment}")
    for name, top in (("rotate", 45), ("scale", 0.5), ("shear", 45), ("elastic", 100), ("stroke", 1)):
        if not 0 <= getattr(r, name) <= top:
            raise OptionError(f"--{name} must be 0 to {top}, got {getattr(r, name)}")
    if not (r.ema == 0 or 0.5 <= r.ema < 1):
        raise OptionError(f"--ema must be 0 (off) or a decay in [0.5, 1), got {r.ema}")
    if r.val_size < 0:
        raise OptionError(f"--val-size must be 0 or more, got {r.val_size}")

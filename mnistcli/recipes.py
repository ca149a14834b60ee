"""Training recipes: the options of a run, named presets, and the optimiser/scheduler they build."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

import torch
from torch import nn

from mnistcli.data import dataset_spec
from mnistcli.errors import OptionError
from mnistcli.models import DEFAULT_MODEL, model_spec

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("onecycle", "cosine", "none")


@dataclass
class Recipe:
    """Everything that decides what a run learns (not where it writes or how it prints)."""

    model: str = DEFAULT_MODEL
    dataset: str = "mnist"
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
    ema: float = 0.999  # decay of an average of the weights used for evaluation; 0 = none
    val_size: int = 5000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Recipe":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
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
        "ema": 0.0,
        "val_size": 0,
    },
}


def make_recipe(preset: str = "default", **overrides: Any) -> Recipe:
    """A preset with explicit options (those not None) laid over it, checked."""
    if preset not in PRESETS:
        raise OptionError(f"unknown recipe {preset!r}; choose from: {', '.join(PRESETS)}")
    values = {**Recipe().to_dict(), **PRESETS[preset]}
    values.update({k: v for k, v in overrides.items() if v is not None})
    recipe = Recipe(**values)
    check(recipe)
    return recipe


def check(r: Recipe) -> None:
    """Refuse impossible values before any work, saying what is allowed."""
    model_spec(r.model)
    dataset_spec(r.dataset)
    if r.epochs < 1:
        raise OptionError(f"--epochs must be at least 1, got {r.epochs}")
    if r.batch_size < 1:
        raise OptionError(f"--batch-size must be at least 1, got {r.batch_size}")
    if not (r.lr > 0 and math.isfinite(r.lr)):
        raise OptionError(f"--lr must be a positive number, got {r.lr}")
    if r.optimizer not in OPTIMIZERS:
        raise OptionError(f"unknown optimizer {r.optimizer!r}; choose from: {', '.join(OPTIMIZERS)}")
    if r.scheduler not in SCHEDULERS:
        raise OptionError(f"unknown scheduler {r.scheduler!r}; choose from: {', '.join(SCHEDULERS)}")
    if not 0 <= r.momentum < 1:
        raise OptionError(f"--momentum must be in [0, 1), got {r.momentum}")
    if r.weight_decay < 0:
        raise OptionError(f"--weight-decay must be 0 or more, got {r.weight_decay}")
    if not 0 <= r.label_smoothing < 1:
        raise OptionError(f"--label-smoothing must be in [0, 1), got {r.label_smoothing}")
    if not 0 <= r.augment <= 4:
        raise OptionError(f"--augment (max shift in pixels) must be 0 to 4, got {r.augment}")
    if not (r.ema == 0 or 0.5 <= r.ema < 1):
        raise OptionError(f"--ema must be 0 (off) or a decay in [0.5, 1), got {r.ema}")
    if r.val_size < 0:
        raise OptionError(f"--val-size must be 0 or more, got {r.val_size}")


def make_optimizer(r: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    # No weight decay on biases and batch-norm parameters (all 1-D tensors).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": r.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # foreach: one multi-tensor kernel per update instead of a loop over the parameters.
    if r.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov and r.momentum > 0, foreach=True
        )
    if r.optimizer == "adam":
        return torch.optim.Adam(groups, lr=r.lr, foreach=True)
    return torch.optim.AdamW(groups, lr=r.lr, foreach=True)


def make_scheduler(
    r: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> Optional[torch.optim.lr_scheduler.LRScheduler]:
    """A per-step schedule that spans exactly the epochs asked for."""
    total = r.epochs * steps_per_epoch
    if r.scheduler == "onecycle" and total >= 10:
        return torch.optim.lr_scheduler.OneCycleLR(
            # cycle_momentum off: --momentum means what it says for the whole run.
            optimizer, max_lr=r.lr, total_steps=total, pct_start=0.25, cycle_momentum=False,
        )  # fmt: skip
    if r.scheduler in ("cosine", "onecycle"):  # OneCycle needs a few steps to warm up
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return None

"""What a recipe trains with: the optimiser, the learning-rate schedule and the weight average."""

from __future__ import annotations

import inspect
from typing import Any, Optional

import torch
from torch import nn

from mnistcli.settings import Recipe


def _unwrapped(name: str):
    method = getattr(torch.optim.Optimizer, name)
    return getattr(method, "__wrapped__", method)


class SGD(torch.optim.SGD):
    """torch.optim.SGD (the same arguments, state, state_dict and update code) that never imports
    torch._dynamo.

    torch wraps step() and a few other methods in decorators that import torch._dynamo on every
    call (or their first), only to mark them for the compiler: that import costs 1-2 s of start-up
    on a 2-core CPU (`mnistcli train --epochs 1 --model fc` on 500 images: 2.28 s against 3.66 s
    with torch.optim.SGD, medians of 7). These are torch's own methods without those wrappers.
    The risk: a torch release that changes what the wrappers do (beyond marking) would change these
    methods too; tests compare the updates and the state with torch.optim.SGD's, bit for bit, and
    check that a run imports no torch._dynamo.
    """

    add_param_group = _unwrapped("add_param_group")
    zero_grad = _unwrapped("zero_grad")
    state_dict = _unwrapped("state_dict")
    load_state_dict = _unwrapped("load_state_dict")
    step = torch.no_grad()(inspect.unwrap(torch.optim.SGD.step))  # its decorator set no-grad mode, and imported dynamo


def make_optimizer(r: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    # No weight decay on biases and batch-norm parameters (all 1-D tensors).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": r.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # foreach: one multi-tensor kernel per update instead of a loop over the parameters.
    if r.optimizer == "sgd":
        return SGD(groups, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov and r.momentum > 0, foreach=True)
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
            optimizer,
            max_lr=r.lr,
            total_steps=total,
            pct_start=0.25,
            cycle_momentum=False,
        )
    if r.scheduler in ("cosine", "onecycle"):  # OneCycle needs a few steps to warm up
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return None


def restore_optimizer(
    r: Recipe,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    saved_optimizer: dict[str, Any],
    saved_scheduler: Optional[dict[str, Any]],
    epochs_changed: bool,
) -> Optional[torch.optim.lr_scheduler.LRScheduler]:
    """Put a resumed run's optimiser back and return its schedule: as saved, or, when the run now has
    another number of epochs, one over the new total, stepped to where the run was.

    The order matters: a schedule sets the learning rate when it is made, so the saved optimiser
    state (with the rate of the step reached) is loaded after making the saved schedule, and before
    making a new one that steps itself there.
    """
    if not epochs_changed:
        scheduler = make_scheduler(r, optimizer, steps_per_epoch)
        optimizer.load_state_dict(saved_optimizer)
        if scheduler is not None and saved_scheduler is not None:
            scheduler.load_state_dict(saved_scheduler)
        return scheduler
    optimizer.load_state_dict(saved_optimizer)
    scheduler = make_scheduler(r, optimizer, steps_per_epoch)
    if scheduler is not None:
        import warnings

        with warnings.catch_warnings():  # stepping the schedule alone is the point here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(int((saved_scheduler or {}).get("last_epoch", 0))):
                scheduler.step()
    return scheduler


class WeightAverage:
    """An exponential moving average of a model's weights (and batch-norm buffers).

    The decay ramps up as (1 + n) / (10 + n) until it reaches `decay`, so short runs
    average over what they have rather than over their random start.
    """

    def __init__(self, model: nn.Module, decay: float, steps: int = 0):
        import copy

        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.steps = steps
        self._pairs = [
            (mine, theirs) for mine, theirs in zip(self.model.state_dict().values(), model.state_dict().values())
        ]

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        floats = [(a, b) for a, b in self._pairs if a.dtype.is_floating_point]
        torch._foreach_lerp_([a for a, _ in floats], [b for _, b in floats], 1 - d)
        for a, b in self._pairs:
            if not a.dtype.is_floating_point:
                a.copy_(b)  # counters such as num_batches_tracked

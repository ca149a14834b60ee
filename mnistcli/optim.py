"""The optimiser and the learning-rate schedule a recipe asks for."""

from __future__ import annotations

import inspect
from typing import Optional

import torch
from torch import nn

from mnistcli.recipes import Recipe


def _unwrapped(name: str):
    method = getattr(torch.optim.Optimizer, name)
    return getattr(method, "__wrapped__", method)


class SGD(torch.optim.SGD):
    """torch.optim.SGD (the same arguments, state, state_dict and update code) that never imports
    torch._dynamo.

    torch wraps step() and a few other methods in decorators that import torch._dynamo on every
    call (or their first), only to mark them for the compiler: the first import costs 1-2 s of
    start-up on a 2-core CPU. These are torch's own methods without those wrappers.
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


def continue_schedule(
    r: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int, steps_done: int
) -> Optional[torch.optim.lr_scheduler.LRScheduler]:
    """A schedule over `r.epochs` (which a resume may have changed), stepped to where the run was."""
    import warnings

    scheduler = make_scheduler(r, optimizer, steps_per_epoch)
    if scheduler is not None:
        with warnings.catch_warnings():  # stepping the schedule alone is the point here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(steps_done):
                scheduler.step()
    return scheduler

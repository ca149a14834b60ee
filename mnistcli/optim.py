"""The optimiser and the learning-rate schedule a recipe asks for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch
from torch import nn

from mnistcli.recipes import Recipe


def _unwrapped(name: str):
    method = getattr(torch.optim.Optimizer, name)
    return getattr(method, "__wrapped__", method)


class SGD(torch.optim.SGD):
    """torch.optim.SGD (the same arguments, state and state_dict) that never imports torch._dynamo.

    torch's step() imports torch._dynamo on every call, and a few other methods on their first
    call, only to mark themselves for the compiler: the first import costs 1-2 s of start-up on
    a 2-core CPU. This step is torch's multi-tensor update written out (weight decay, momentum,
    dampening, Nesterov), bit for bit the same (the tests compare them); anything it does not
    cover goes to torch's own step.
    """

    add_param_group = _unwrapped("add_param_group")
    zero_grad = _unwrapped("zero_grad")
    state_dict = _unwrapped("state_dict")
    load_state_dict = _unwrapped("load_state_dict")

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:  # type: ignore[override]
        if closure is not None or any(_special(group) for group in self.param_groups):
            return super().step(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)
        return None

    def _update(self, group: dict, params: list[torch.Tensor]) -> None:
        grads: list[torch.Tensor] = [p.grad for p in params if p.grad is not None]
        if group["weight_decay"] != 0:
            grads = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
        momentum = group["momentum"]
        if momentum != 0:
            bufs = self._momentum_buffers(params, grads, momentum, 1 - group["dampening"])
            if group["nesterov"]:
                torch._foreach_add_(grads, bufs, alpha=momentum)
            else:
                grads = bufs
        torch._foreach_add_(params, grads, alpha=-group["lr"])

    def _momentum_buffers(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], momentum: float, keep: float
    ) -> list[torch.Tensor]:
        """buf = momentum * buf + keep * grad, starting from a copy of the first gradient (as torch does)."""
        saved = [self.state[p].get("momentum_buffer") for p in params]
        if all(b is not None for b in saved):
            bufs = [b for b in saved if b is not None]
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads, alpha=keep)
            return bufs
        bufs = []
        for p, old, grad in zip(params, saved, grads):
            if old is None:
                self.state[p]["momentum_buffer"] = new = grad.detach().clone()
            else:
                new = old.mul_(momentum).add_(grad, alpha=keep)
            bufs.append(new)
        return bufs


def _special(group: dict) -> bool:
    """What the written-out step leaves to torch: maximize, sparse or differentiable updates, tensor lr."""
    return (
        group.get("maximize", False)
        or group.get("differentiable", False)
        or bool(group.get("fused"))
        or isinstance(group["lr"], torch.Tensor)
        or any(p.grad is not None and p.grad.is_sparse for p in group["params"])
    )


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

"""Data-parallel training with torch.distributed: process group, sharding, reductions.

`torchrun --nproc-per-node N -m mnistcli train ...` (or `mnistcli train --nproc N`, which
launches that: launch.py) starts N processes; each holds the whole dataset, takes its share of
every batch of the seeded permutation, and DistributedDataParallel averages the gradients.
Only rank 0 prints, evaluates and writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env(device_type: str) -> Optional[Group]:
    """Join the process group torchrun describes in the environment; None when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shard(order: torch.Tensor, group: Group) -> torch.Tensor:
    """This rank's part of the epoch's permutation: every world-th image, the same count on each rank.

    With a per-rank batch of batch_size // world, each optimiser step sees batch_size images in
    all, and an epoch has as many steps as a single process would take.
    """
    per_rank = len(order) // group.world
    return order[group.rank :: group.world][:per_rank]


def sum_across(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

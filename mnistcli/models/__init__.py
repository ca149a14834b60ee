"""The networks by name: a registry that imports a network's code (and torch) only when one is built.

Names and descriptions are plain data, so the command line can list them in `--help` and in
shell completion without importing torch. To add a network: write its class in `networks.py`
and add a `ModelSpec` line below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mnistcli.errors import OptionError

if TYPE_CHECKING:
    from torch import nn

DEFAULT_MODEL = "cnn"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    target: str  # "module:Class" of the network
    description: str

    def builder(self) -> Any:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


_REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "cnn",
            "mnistcli.models.networks:BatchNormCNN",
            "batch-norm CNN (default): 3 x (conv, max-pool, batch norm, ReLU) with 24-48-64 channels, linear 576->10",
        ),
        ModelSpec(
            "report-cnn",
            "mnistcli.models.networks:ReportCNN",
            "the report's CNN as printed: conv 1->10 k5, pool, conv 10->20 k5, pool, 320->50->10",
        ),
        ModelSpec("fc", "mnistcli.models.networks:FullyConnected", "fully connected: 784 -> 256 -> 128 -> 10, ReLU"),
    )
}


def model_names() -> list[str]:
    return list(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise OptionError(f"unknown model {name!r}; choose from: {', '.join(_REGISTRY)}") from None


def create_model(name: str, **args: Any) -> nn.Module:
    """Build a registered model; `args` are its constructor arguments (stored in checkpoints)."""
    builder = model_spec(name).builder()
    try:
        return builder(**args)
    except TypeError as exc:
        raise OptionError(f"bad arguments for model {name!r}: {exc}") from exc


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

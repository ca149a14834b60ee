"""The networks. Build them by name with `mnistcli.models.create_model`; the registry is there."""

from __future__ import annotations

import torch
from torch import nn


class FullyConnected(nn.Module):
    def __init__(self, hidden: tuple[int, ...] | list[int] = (256, 128)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = 28 * 28
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, 10))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, 10)
        return self.net(x)


class ReportCNN(nn.Module):
    """Exactly the report's network; note it has no activation between its two linear layers."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 10, kernel_size=5), nn.ReLU(), nn.MaxPool2d(kernel_size=2))
        self.conv2 = nn.Sequential(nn.Conv2d(10, 20, kernel_size=5), nn.ReLU(), nn.MaxPool2d(kernel_size=2))
        self.fc = nn.Sequential(nn.Linear(320, 50), nn.Linear(50, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Max-pooling before ReLU gives exactly the same values and gradients as the printed
        # conv -> ReLU -> pool (both are monotonic), with ReLU on a quarter of the values.
        for block in (self.conv1, self.conv2):
            conv, relu, pool = block
            x = relu(pool(conv(x)))  # (B, 10, 12, 12), then (B, 20, 4, 4)
        return self.fc(x.flatten(1))


def _conv_bn(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    # Pooling right after the convolution, so batch norm and ReLU work on a quarter of the
    # values: measured 1.5-1.7x faster training on a 2-core CPU, the same accuracy.
    return [
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class BatchNormCNN(nn.Module):
    """Three conv + batch norm + pool stages; sized to train fast on a 2-core CPU.

    The defaults are the first release's network: checkpoints that store no model_args rebuild
    it. The registry gives today's `cnn` its own arguments, and checkpoints store them.
    """

    def __init__(
        self,
        channels: tuple[int, int, int] | list[int] = (24, 48, 64),
        kernels: tuple[int, int, int] | list[int] = (5, 5, 3),
        dropout: float = 0.0,
    ):
        super().__init__()
        (c1, c2, c3), (k1, k2, k3) = channels, kernels
        self.features = nn.Sequential(
            *_conv_bn(1, c1, k1),  # (B, c1, 14, 14)
            *_conv_bn(c1, c2, k2),  # (B, c2, 7, 7)
            *_conv_bn(c2, c3, k3),  # (B, c3, 3, 3)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c3 * 9, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

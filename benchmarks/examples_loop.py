"""pytorch/examples' mnist/main.py as published: the second baseline mnistcli is measured against.

Its network (two 3x3 convolutions of 32 and 64 channels, max-pool, dropout, 9216->128->10), its
recipe (Adadelta lr 1.0, StepLR gamma 0.7 every epoch, batch 64, test batch 1000) and its data
path (torchvision's MNIST with per-item ToTensor + Normalize and a shuffled DataLoader), on the
CPU. Prints one JSON line per epoch, as benchmarks/report_loop.py does, for benchmarks/compare.py.

    python benchmarks/examples_loop.py --epochs 5 --stop-at 0.99 --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_loop import print_epoch, torchvision_root

ROOT = Path(__file__).resolve().parents[1]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stop-at", type=float, default=None, help="stop once test accuracy reaches this (e.g. 0.99)")
    args = ap.parse_args()
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    root = torchvision_root(args.data_dir)
    train_set = datasets.MNIST(str(root), train=True, download=False, transform=transform)
    test_set = datasets.MNIST(str(root), train=False, transform=transform)
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=1000)
    model = Net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        for data, target in train_loader:
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
        t1 = time.perf_counter()
        model.eval()
        correct = 0
        with torch.no_grad():
            for data, target in test_loader:
                correct += model(data).argmax(dim=1).eq(target).sum().item()
        scheduler.step()
        t2 = time.perf_counter()
        acc = correct / len(test_set)
        print_epoch(epoch, acc, len(train_set), start, t0, t1, t2)
        if args.stop_at is not None and acc >= args.stop_at:
            break


if __name__ == "__main__":
    main()

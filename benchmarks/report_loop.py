"""The report's training loop as it prints it: the baseline mnistcli is measured against.

torchvision's MNIST dataset with per-item ToTensor + Normalize, a shuffled DataLoader of
batch 128, the report's CNN, SGD lr 0.01 momentum 0.5, cross-entropy; a loss/accuracy line
every 300 batches and the test accuracy after each epoch. Prints one JSON line per epoch
(seconds of training, seconds of the epoch with its test pass, test accuracy) so that
benchmarks/compare.py can read it.

    python benchmarks/report_loop.py --epochs 20 --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

ROOT = Path(__file__).resolve().parents[1]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Sequential(
            torch.nn.Conv2d(1, 10, kernel_size=5),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(kernel_size=2),
        )
        self.conv2 = torch.nn.Sequential(
            torch.nn.Conv2d(10, 20, kernel_size=5),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(kernel_size=2),
        )
        self.fc = torch.nn.Sequential(
            torch.nn.Linear(320, 50),
            torch.nn.Linear(50, 10),
        )

    def forward(self, x):
        batch_size = x.size(0)
        x = self.conv1(x)
        x = self.conv2(x)
        x = x.view(batch_size, -1)
        x = self.fc(x)
        return x


def torchvision_root(data_dir: Path) -> Path:
    """torchvision wants the uncompressed IDX files in ROOT/MNIST/raw; unpack a gzipped copy to a temp folder."""
    raw = data_dir / "MNIST" / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if all((raw / n).is_file() for n in names):
        return data_dir
    root = Path(tempfile.mkdtemp(prefix="report-loop-"))
    (root / "MNIST" / "raw").mkdir(parents=True)
    for n in names:
        src = raw / (n + ".gz") if (raw / (n + ".gz")).is_file() else data_dir / (n + ".gz")
        with gzip.open(src, "rb") as f, open(root / "MNIST" / "raw" / n, "wb") as out:
            shutil.copyfileobj(f, out)
    return root


def print_epoch(epoch: int, acc: float, images: int, start: float, t0: float, t1: float, t2: float) -> None:
    """The line compare.py reads for each epoch: training from t0 to t1, testing from t1 to t2."""
    record = {
        "epoch": epoch,
        "train_seconds": t1 - t0,
        "epoch_seconds": t2 - t0,
        "test_acc": acc,
        "elapsed": t2 - start,
        "images_per_s": images / (t1 - t0),
    }
    print(json.dumps(record), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stop-at", type=float, default=None, help="stop once test accuracy reaches this (e.g. 0.99)")
    args = ap.parse_args()
    start = time.perf_counter()
    torch.manual_seed(args.seed)

    batch_size, learning_rate, momentum = 128, 0.01, 0.5
    root = torchvision_root(args.data_dir)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_dataset = datasets.MNIST(root=str(root), train=True, transform=transform, download=False)
    test_dataset = datasets.MNIST(root=str(root), train=False, transform=transform)
    train_loader = DataLoader(train_dataset, batch_size=batch_size, shuffle=True)
    test_loader = DataLoader(test_dataset, batch_size=batch_size, shuffle=False)

    model = Net()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)

    def train(epoch):
        running_loss, running_total, running_correct = 0.0, 0, 0
        for batch_idx, data in enumerate(train_loader, 0):
            inputs, target = data
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = criterion(outputs, target)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            _, predicted = torch.max(outputs.data, dim=1)
            running_total += inputs.shape[0]
            running_correct += (predicted == target).sum().item()
            if batch_idx % 300 == 299:
                print(
                    "[%d, %5d]: loss: %.3f , acc: %.2f %%"  # noqa: UP031 (the report's line as printed)
                    % (epoch + 1, batch_idx + 1, running_loss / 300, 100 * running_correct / running_total),
                    file=sys.stderr,
                )
                running_loss, running_total, running_correct = 0.0, 0, 0

    def test():
        correct, total = 0, 0
        with torch.no_grad():
            for images, labels in test_loader:
                outputs = model(images)
                _, predicted = torch.max(outputs.data, dim=1)
                total += labels.size(0)
                correct += (predicted == labels).sum().item()
        return correct / total

    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        train(epoch)
        t1 = time.perf_counter()
        acc = test()
        t2 = time.perf_counter()
        print_epoch(epoch + 1, acc, len(train_dataset), start, t0, t1, t2)
        if args.stop_at is not None and acc >= args.stop_at:
            break


if __name__ == "__main__":
    main()

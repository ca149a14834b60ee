"""Time to 99.0% MNIST test accuracy on a CUDA GPU, with mnistcli's own training loop.

Reference: a tuned small CNN reaches 99.0% in 0.76 s on a laptop GTX 1660 Ti
(tuomaso/train_mnist_fast). This runs `mnistcli train --device cuda --epochs E` for a few
settings (epochs, batch size, peak learning rate; the one-cycle schedule always spans the
epochs asked for) and prints the training seconds (the sum of the epochs' `seconds` in
history.json, as the reference counts) and the whole command's wall time, with the test
accuracy reached.

    python benchmarks/gpu_time_to_99.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [  # (epochs, batch size, peak lr)
    (1, 128, 0.1),
    (1, 256, 0.2),
    (1, 512, 0.4),
    (2, 512, 0.4),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also pass --compile")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: this benchmark needs one")
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    print(f"{'epochs':>6} {'batch':>6} {'lr':>5} {'train s':>8} {'wall s':>7} {'test acc':>9}")
    for epochs, batch, lr in SETTINGS:
        rows = []
        for seed in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                cmd = [
                    sys.executable,
                    "-m",
                    "mnistcli",
                    "train",
                    "--device",
                    "cuda",
                    "--epochs",
                    str(epochs),
                    "--batch-size",
                    str(batch),
                    "--lr",
                    str(lr),
                    "--seed",
                    str(seed),
                    "--val-size",
                    "0",
                    "--data-dir",
                    str(args.data_dir),
                    "--no-download",
                    "--out-dir",
                    out,
                ]
                if args.compile:
                    cmd.append("--compile")
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
                wall = time.perf_counter() - t0
                history = json.loads((Path(out) / "history.json").read_text())
            rows.append((sum(h["seconds"] for h in history), wall, history[-1]["test_acc"]))
        rows.sort()
        train_s, wall, acc = rows[len(rows) // 2]
        print(f"{epochs:6d} {batch:6d} {lr:5.2f} {train_s:8.2f} {wall:7.1f} {100 * acc:8.2f}%", flush=True)


if __name__ == "__main__":
    main()

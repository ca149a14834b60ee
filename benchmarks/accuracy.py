"""Test accuracy of `mnistcli train` with every option at its default, over several seeds.

Runs `mnistcli train --epochs N --seed S` for each seed (whole command timed) and prints
the test accuracy of the last epoch and of best.pt (chosen by validation accuracy), and
their medians.

    python benchmarks/accuracy.py --epochs 20 --seeds 0 1 2 --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_and_read_history(
    epochs: int, seed: int, data_dir: Path, out: Path, options: list[str]
) -> tuple[float, list[dict]]:
    """Run `mnistcli train --epochs E --seed S OPTIONS` into `out`: the whole command's wall
    seconds and the run's history.json."""
    cmd = [sys.executable, "-m", "mnistcli", "train", "--epochs", str(epochs), "--seed", str(seed)]
    cmd += ["--data-dir", str(data_dir), "--no-download", "--out-dir", str(out), *options]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0, json.loads((Path(out) / "history.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--extra", default="", help="more options for mnistcli train, as one string")
    ap.add_argument("--keep", type=Path, default=None, help="keep each run in KEEP/seed-N instead of a temp folder")
    args = ap.parse_args()

    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            out = args.keep / f"seed-{seed}" if args.keep else Path(tmp)
            wall, history = train_and_read_history(args.epochs, seed, args.data_dir, out, args.extra.split())
        best = max(history, key=lambda h: h["val_acc"] if h["val_acc"] is not None else h["test_acc"])
        rows.append((seed, wall, history[-1]["test_acc"], best["epoch"], best["test_acc"]))
        print(
            f"seed {seed}: {wall:6.0f} s, last epoch test {100 * history[-1]['test_acc']:.2f}%, "
            f"best.pt (epoch {best['epoch']}) test {100 * best['test_acc']:.2f}%",
            flush=True,
        )
    print(
        f"median over {len(rows)} seeds: {statistics.median(r[1] for r in rows):.0f} s, "
        f"last epoch {100 * statistics.median(r[2] for r in rows):.2f}%, "
        f"best.pt {100 * statistics.median(r[4] for r in rows):.2f}%"
    )


if __name__ == "__main__":
    main()

"""What each augmentation does to MNIST test accuracy and to reading people's real pictures.

For each setting, runs `mnistcli train --epochs E --seed S OPTIONS` (the default recipe with those
options changed), then scores its best.pt on the MNIST test set (from history.json) and on the
development set of real pictures and the UCI digits (benchmarks/predict_real.py's sets), and prints
one row per setting. Needs the bench extra (scikit-learn) for the UCI digits.

    python benchmarks/augmentations.py --epochs 20 --keep runs/aug
    python benchmarks/augmentations.py --only none rotate --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import train_and_read_history

ROOT = Path(__file__).resolve().parents[1]
OFF = ["--rotate", "0", "--scale", "0", "--shear", "0", "--elastic", "0", "--stroke", "0"]
SETTINGS = {  # name -> options over the default recipe
    "none": OFF,
    "rotate 15": [*OFF, "--rotate", "15"],
    "scale 0.15": [*OFF, "--scale", "0.15"],
    "shear 15": [*OFF, "--shear", "15"],
    "stroke 0.5": [*OFF, "--stroke", "0.5"],
    "elastic 20": [*OFF, "--elastic", "20"],
    "elastic 34": [*OFF, "--elastic", "34"],
    "all 15": [*OFF, "--rotate", "15", "--scale", "0.15", "--shear", "15", "--stroke", "0.5"],
    "all 10": [*OFF, "--rotate", "10", "--scale", "0.1", "--shear", "10", "--stroke", "0.5"],
    "default": [],
}


def real_pictures(checkpoint: Path) -> dict[str, float]:
    """Share of the dev set and of the UCI digits that predict reads right."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "predict_real.py"), "-c", str(checkpoint)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    scores, current = {}, None
    for line in out.splitlines():
        if line.endswith(" pictures") and ":" in line:
            current = line.split(":")[0]
        elif line.startswith("all ") and current:
            scores[current] = float(line.split()[2].rstrip("%"))
    return scores


def run(name: str, options: list[str], args, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep / f"{name.replace(' ', '-')}-seed{seed}" if args.keep else Path(tmp)
        wall, history = train_and_read_history(args.epochs, seed, args.data_dir, out, options)
        best = max(history, key=lambda h: h["val_acc"])
        return {
            "test": 100 * best["test_acc"],
            "last": 100 * history[-1]["test_acc"],
            "s/epoch": statistics.median(h["seconds"] for h in history),
            "wall": wall,
            **({} if args.train_only else real_pictures(out / "best.pt")),
        }


def _medians(rows: list[dict]):
    return lambda key: statistics.median(r.get(key, float("nan")) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", nargs="+", default=None, help="setting names (first word is enough)")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--keep", type=Path, default=None, help="keep each run in KEEP/NAME-seedS")
    ap.add_argument("--train-only", action="store_true", help="skip the real pictures (score KEEP's runs later)")
    args = ap.parse_args()
    chosen = {n: o for n, o in SETTINGS.items() if not args.only or n.split()[0] in args.only or n in args.only}
    print(f"{args.epochs} epochs, seeds {args.seeds}; medians over seeds", flush=True)
    print(
        f"{'setting':14s} {'s/epoch':>8s} {'best.pt test':>13s} {'last test':>10s} {'dev':>7s} {'uci':>7s}", flush=True
    )
    for name, options in chosen.items():
        rows = [run(name, options, args, seed) for seed in args.seeds]
        med = _medians(rows)
        print(
            f"{name:14s} {med('s/epoch'):8.2f} {med('test'):12.2f}% {med('last'):9.2f}% "
            f"{med('dev'):6.1f}% {med('uci'):6.1f}%",
            flush=True,
        )


if __name__ == "__main__":
    main()

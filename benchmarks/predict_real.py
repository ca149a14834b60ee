"""How well `mnistcli predict` reads people's real pictures of digits.

Two sets, each read through `mnistcli predict FOLDER --json`, next to the trap of resizing the
whole picture to 28x28 with no clean-up:
  dev  the development set of real photos and drawings (../shared/data/real-digits-dev: 566
       pictures from 28 public projects, labels.csv gives label and source), per source and overall
  uci  the UCI handwritten digits (scikit-learn's load_digits: 1,797 digits by 43 writers), each
       8x8 image scaled up to a 32x32 PNG

It also says how many mistakes the "unsure" flag marks, and how many right answers it marks too,
for a few thresholds. Needs the bench extra (scikit-learn): pip install -e ".[bench]".

    python benchmarks/predict_real.py                       # the model predict picks by default
    python benchmarks/predict_real.py -c runs/x/best.pt --misses
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "real-digits-dev"
THRESHOLDS = (0.4, 0.5, 0.6, 0.7)


def predict(folder: Path, checkpoint: Path | None) -> dict[str, dict]:
    cmd = [sys.executable, "-m", "mnistcli", "predict", str(folder), "--json", "--top-k", "2"]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    doc = json.loads(out)
    rows = {Path(p["file"]).name: p for p in doc["predictions"]}
    rows.update({Path(e["file"]).name: {"error": e["error"]} for e in doc["errors"]})
    print(f"model: {doc['checkpoint']['path']} ({doc['checkpoint']['summary']})")
    return rows


def naive(folder: Path, names: list[str], checkpoint: Path | None) -> dict[str, int]:
    """The trap: the whole picture squeezed to 28x28, grey, no clean-up."""
    from mnistcli import checkpoint as ck
    from mnistcli import engine, preprocess

    loaded = ck.load_model(checkpoint, torch.device("cpu"))
    images = []
    for name in names:
        grey = preprocess.to_grey(preprocess.open_image(folder / name))
        images.append(np.asarray(Image.fromarray((grey * 255).astype(np.uint8)).resize((28, 28), Image.BILINEAR)))
    probs = engine.predict(loaded.net, torch.from_numpy(np.stack(images)))
    return dict(zip(names, probs.argmax(1).tolist()))


def uci_pictures(folder: Path) -> dict[str, int]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = {}
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        name = f"uci-{i:04d}.png"
        pixels = (image / 16.0 * 255).astype(np.uint8)  # ink is high, as in MNIST: light on dark
        Image.fromarray(pixels).resize((32, 32), Image.BILINEAR).save(folder / name)
        labels[name] = int(label)
    return labels


def score(
    title: str,
    labels: dict[str, int],
    rows: dict[str, dict],
    baseline: dict[str, int],
    groups: dict[str, str],
    show_misses: bool,
) -> None:
    right = {n: rows.get(n, {}).get("digit") == label for n, label in labels.items()}
    base = {n: baseline.get(n) == label for n, label in labels.items()}
    by_group: dict[str, list[str]] = defaultdict(list)
    for name in labels:
        by_group[groups.get(name, title)].append(name)
    print(f"\n{title}: {len(labels)} pictures")
    print(f"{'source':58s} {'n':>4s} {'predict':>8s} {'resize':>7s}")
    for group, names in sorted(by_group.items()):
        ok, ok_base = sum(right[n] for n in names), sum(base[n] for n in names)
        print(f"{group:58s} {len(names):4d} {100 * ok / len(names):7.1f}% {100 * ok_base / len(names):6.1f}%")
    ok, ok_base = sum(right.values()), sum(base.values())
    print(f"{'all':58s} {len(labels):4d} {100 * ok / len(labels):7.1f}% {100 * ok_base / len(labels):6.1f}%")
    print(f"  predict reads {ok} of {len(labels)}; {len(labels) - ok} misses")
    for t in THRESHOLDS:
        flagged_wrong = sum(1 for n in labels if not right[n] and rows.get(n, {}).get("confidence", 0) < t)
        flagged_right = sum(1 for n in labels if right[n] and rows[n]["confidence"] < t)
        print(
            f"  unsure below {t:.0%}: flags {flagged_wrong} of the {len(labels) - ok} misses "
            f"and {flagged_right} of the {ok} right answers"
        )
    if show_misses:
        for n in sorted(n for n in labels if not right[n]):
            row = rows.get(n, {})
            got = row.get("error") or f"{row.get('digit')} ({100 * row.get('confidence', 0):.0f}%)"
            print(f"  miss: {n}: {labels[n]} read as {got}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", "-c", type=Path, default=None, help="default: as mnistcli predict chooses")
    ap.add_argument("--dev", type=Path, default=DEV)
    ap.add_argument("--sets", nargs="+", default=["dev", "uci"], choices=["dev", "uci"])
    ap.add_argument("--misses", action="store_true", help="list every miss")
    args = ap.parse_args()
    if "dev" in args.sets:
        with open(args.dev / "labels.csv") as f:
            table = list(csv.DictReader(f))
        labels = {r["file"]: int(r["label"]) for r in table}
        groups = {r["file"]: r["repo"] for r in table}
        rows = predict(args.dev, args.checkpoint)
        score("dev", labels, rows, naive(args.dev, list(labels), args.checkpoint), groups, args.misses)
    if "uci" in args.sets:
        with tempfile.TemporaryDirectory() as tmp:
            labels = uci_pictures(Path(tmp))
            rows = predict(Path(tmp), args.checkpoint)
            score("uci", labels, rows, naive(Path(tmp), list(labels), args.checkpoint), {}, args.misses)


if __name__ == "__main__":
    main()

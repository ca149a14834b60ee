"""How well `mnistcli predict` reads people's real pictures of digits.

Two sets, each read through `mnistcli predict FOLDER --json`, next to the trap of resizing the
whole picture to 28x28 with no clean-up:
  dev  the development set of real photos and drawings (../shared/data/real-digits-dev: 566
       pictures from 28 public projects, labels.csv gives label and source), split by source into
       a tuning half and a checking half (see `split_by_source`)
  uci  the UCI handwritten digits (scikit-learn's load_digits: 1,797 digits by 43 writers), each
       8x8 image scaled up to a 32x32 PNG, split in its own order into a tuning half (the first
       898) and a checking half (the other 899)

Only the tuning half is shown in detail (per source, the "unsure" flag at a few thresholds, and
with --misses each miss): every choice of the preprocessing is made on it. The checking half,
the whole set and each half of the UCI digits give one overall figure each, so that they measure
how well those choices carry over to pictures nobody looked at (choices for small scaled-up scans
look at the UCI tuning half, never at its checking half). Needs scikit-learn (the test extra).

    python benchmarks/predict_real.py                       # the model predict picks by default
    python benchmarks/predict_real.py -c runs/x/best.pt --misses
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "real-digits-dev"
THRESHOLDS = (0.4, 0.5, 0.6, 0.7)
HALVES = ("tuning", "checking")


def split_by_source(sizes: dict[str, int]) -> dict[str, str]:
    """Each source (repository) -> "tuning" or "checking": a fixed rule, chosen before any accuracy
    was seen, so that no picture's result can move a source from one half to the other.

    Whole sources go to one half, so the checking half holds writers and devices the tuning never
    saw. Sources are dealt largest first (equal sizes in the order of the SHA-256 of their names),
    each to the half with fewer pictures so far, which keeps the halves of similar size; when the
    halves hold the same number, the lowest bit of the source's hash picks.
    """
    digest = {repo: hashlib.sha256(repo.encode()).digest() for repo in sizes}
    counts = dict.fromkeys(HALVES, 0)
    half_of = {}
    for repo in sorted(sizes, key=lambda r: (-sizes[r], digest[r])):
        tuning, checking = counts.values()
        half = HALVES[digest[repo][-1] & 1] if tuning == checking else min(counts, key=counts.__getitem__)
        half_of[repo] = half
        counts[half] += sizes[repo]
    return half_of


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


def naive(folder: Path, names: list[str], checkpoint: Path | None) -> dict[str, int | None]:
    """The trap: the whole picture squeezed to 28x28, grey, no clean-up."""
    from mnistcli import checkpoint as ck
    from mnistcli import engine, preprocess

    loaded = ck.load_model(checkpoint, torch.device("cpu"))
    images = []
    for name in names:
        grey = preprocess.to_grey(preprocess.open_image(folder / name))
        images.append(np.asarray(Image.fromarray((grey * 255).astype(np.uint8)).resize((28, 28), Image.BILINEAR)))
    probs = engine.predict_probabilities(loaded.net, torch.from_numpy(np.stack(images)))
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


def uci_halves(names: list[str]) -> tuple[list[str], list[str]]:
    """The UCI digits in their own order: the first half to tune on, the rest to check."""
    return names[: len(names) // 2], names[len(names) // 2 :]


def correct(labels: dict[str, int], answers: dict[str, int | None]) -> dict[str, bool]:
    return {n: answers.get(n) == label for n, label in labels.items()}


def calibration_error(confidence: list[float], right: list[bool], bins: int = 15) -> float:
    """ECE as `mnistcli evaluate` reports it (equal-width bins of the top probability, Guo et al. 2017)."""
    c, r = np.asarray(confidence, float), np.asarray(right, float)
    which = np.minimum((c * bins).astype(int), bins - 1)
    return float(sum(abs(c[which == b].mean() - r[which == b].mean()) * (which == b).mean() for b in set(which)))


def overall(title: str, right: dict[str, bool], base: dict[str, bool], rows: dict[str, dict]) -> None:
    """One line: how many `predict` reads, next to the resize trap; then how well its confidence
    says so: the calibration error, and what the unsure flag marks."""
    n, ok, ok_base = len(right), sum(right.values()), sum(base.values())
    print(f"{title:28s} {n:5d} pictures: predict {100 * ok / n:5.1f}% ({ok}), resize {100 * ok_base / n:5.1f}%")
    confidence = [rows.get(name, {}).get("confidence", 0.0) for name in right]
    unsure = [bool(rows.get(name, {}).get("unsure", True)) for name in right]
    wrong_flagged = sum(u and not r for u, r in zip(unsure, right.values()))
    right_flagged = sum(u and r for u, r in zip(unsure, right.values()))
    print(
        f"{'':28s} ECE {100 * calibration_error(confidence, list(right.values())):.2f}%, "
        f"mean confidence {100 * np.mean(confidence):.1f}%; unsure flags {wrong_flagged} of {n - ok} misses, "
        f"{right_flagged} of {ok} right"
    )


def detail(labels: dict[str, int], rows: dict[str, dict], base: dict[str, bool], groups: dict[str, str]) -> None:
    """The tuning half in full: per source, and what a flag on the picture's own probability alone
    would mark at a few thresholds (`predict`'s unsure flag also looks at changed copies of it)."""
    right = correct(labels, {n: rows.get(n, {}).get("digit") for n in labels})
    by_group: dict[str, list[str]] = defaultdict(list)
    for name in labels:
        by_group[groups[name]].append(name)
    print(f"{'tuning half, by source':58s} {'n':>4s} {'predict':>8s} {'resize':>7s}")
    for group, names in sorted(by_group.items()):
        ok, ok_base = sum(right[n] for n in names), sum(base[n] for n in names)
        print(f"{group:58s} {len(names):4d} {100 * ok / len(names):7.1f}% {100 * ok_base / len(names):6.1f}%")
    ok = sum(right.values())
    for t in THRESHOLDS:
        flagged_wrong = sum(1 for n in labels if not right[n] and rows.get(n, {}).get("confidence", 0) < t)
        flagged_right = sum(1 for n in labels if right[n] and rows[n]["confidence"] < t)
        print(
            f"  own probability below {t:.0%}: flags {flagged_wrong} of the {len(labels) - ok} misses "
            f"and {flagged_right} of the {ok} right answers"
        )


def misses(labels: dict[str, int], rows: dict[str, dict]) -> None:
    for n in sorted(n for n in labels if rows.get(n, {}).get("digit") != labels[n]):
        row = rows.get(n, {})
        got = row.get("error") or f"{row.get('digit')} ({100 * row.get('confidence', 0):.0f}%)"
        print(f"  miss: {n}: {labels[n]} read as {got}")


def dev_set(folder: Path, checkpoint: Path | None, show_misses: bool) -> None:
    with open(folder / "labels.csv") as f:
        table = list(csv.DictReader(f))
    labels = {r["file"]: int(r["label"]) for r in table}
    groups = {r["file"]: r["repo"] for r in table}
    half_of = split_by_source(Counter(groups.values()))
    halves = {h: {n: lbl for n, lbl in labels.items() if half_of[groups[n]] == h} for h in HALVES}
    for h in HALVES:
        sources = sorted(r for r in half_of if half_of[r] == h)
        print(f"{h} half: {len(halves[h])} pictures from {len(sources)} sources: {', '.join(sources)}")
    rows = predict(folder, checkpoint)
    answers = {n: rows.get(n, {}).get("digit") for n in labels}
    base = correct(labels, naive(folder, list(labels), checkpoint))
    print()
    detail(halves["tuning"], rows, base, groups)
    if show_misses:
        misses(halves["tuning"], rows)
    for title, part in (("dev, tuning half", halves["tuning"]), ("dev, checking half", halves["checking"])):
        overall(title, correct(part, answers), {n: base[n] for n in part}, rows)
    overall("dev, whole", correct(labels, answers), base, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", "-c", type=Path, default=None, help="default: as mnistcli predict chooses")
    ap.add_argument("--dev", type=Path, default=DEV)
    ap.add_argument("--sets", nargs="+", default=["dev", "uci"], choices=["dev", "uci"])
    ap.add_argument("--misses", action="store_true", help="list the tuning half's misses (only those)")
    args = ap.parse_args()
    if "dev" in args.sets:
        dev_set(args.dev, args.checkpoint, args.misses)
    if "uci" in args.sets:
        with tempfile.TemporaryDirectory() as tmp:
            labels = uci_pictures(Path(tmp))
            rows = predict(Path(tmp), args.checkpoint)
            answers = {n: rows.get(n, {}).get("digit") for n in labels}
            base = correct(labels, naive(Path(tmp), list(labels), args.checkpoint))
            right = correct(labels, answers)
            for title, part in zip(("uci, tuning half", "uci, checking half"), uci_halves(list(labels))):
                overall(title, {n: right[n] for n in part}, {n: base[n] for n in part}, rows)
            overall("uci, whole", right, base, rows)


if __name__ == "__main__":
    main()

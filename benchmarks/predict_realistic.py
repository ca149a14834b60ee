"""How well `mnistcli predict` reads realistic pictures of digits, per style.

Makes pictures from real MNIST test digits in each style of tests/imagegen.py (paper
photo JPEG, transparent PNG, thick strokes either polarity, tight crop, EXIF-rotated
photo, pen on paper, and the kinds held-out real pictures showed going wrong: small
anti-aliased scans, a long straight stroke on grey paper, continental 1s and crossed 7s),
runs `mnistcli predict FOLDER --json` on them, and prints the accuracy per style next to
the trap: resizing the whole picture to 28x28. The styles drawn from pen strokes draw
only their own digits (imagegen.LABELS_OF): there the labels of test digits are used.

    python benchmarks/predict_realistic.py --checkpoint checkpoints/best.pt --per-style 300
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from mnistcli import checkpoint, data, engine, preprocess  # noqa: E402

import imagegen  # noqa: E402


def naive(path: Path) -> np.ndarray:
    """The trap: the whole picture squeezed to 28x28, grey, no clean-up."""
    grey = preprocess.to_grey(preprocess.open_image(path))
    return np.asarray(Image.fromarray((grey * 255).astype(np.uint8)).resize((28, 28), Image.BILINEAR))


ALL_STYLES = imagegen.STYLES + imagegen.PAPER_STYLES + imagegen.STROKE_STYLES


def write_pictures(
    folder: Path, test: data.Split, order: torch.Tensor, per_style: int, seed: int, styles: list[str]
) -> list[tuple[Path, int, str]]:
    """The older styles in one pass, as they always were made (the same pictures for the same seed);
    each newer style after them with its own seed, from test digits of the labels it draws."""
    older = [s for s in styles if s not in imagegen.STROKE_STYLES]
    idx = order[:per_style]
    files = imagegen.write_set(folder, test.images[idx].numpy(), test.labels[idx].numpy(), seed, tuple(older))
    for k, style in enumerate(s for s in imagegen.STROKE_STYLES if s in styles):
        wanted = torch.tensor(imagegen.LABELS_OF.get(style, range(10)))
        pick = order[torch.isin(test.labels[order], wanted)][:per_style]
        digits, labels = test.images[pick].numpy(), test.labels[pick].numpy()
        files += imagegen.write_set(folder, digits, labels, seed + 1 + k, (style,))
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: as mnistcli predict chooses")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--per-style", type=int, default=300, help="test digits drawn in each style")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="write the pictures here instead of a temp folder")
    ap.add_argument(
        "--styles",
        nargs="+",
        default=list(ALL_STYLES),
        choices=ALL_STYLES,
        help="default: all",
    )
    args = ap.parse_args()

    test = data.load_dataset("mnist", args.data_dir, download_ok=False, val_size=0, splits=("test",)).test
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))
    idx = order[: args.per_style]
    folder = args.keep or Path(tempfile.mkdtemp(prefix="mnistcli-pictures-"))
    files = write_pictures(folder, test, order, args.per_style, args.seed, args.styles)

    cmd = [sys.executable, "-m", "mnistcli", "predict", str(folder), "--json", "--top-k", "1"]
    if args.checkpoint:
        cmd += ["--checkpoint", str(args.checkpoint)]
    doc = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=False).stdout)
    got = {p["file"]: p["digit"] for p in doc["predictions"]}

    model = checkpoint.load_model(args.checkpoint, torch.device("cpu")).net
    pictures = torch.from_numpy(np.stack([naive(p) for p, _, _ in files]))
    naive_pred = engine.predict_probabilities(model, pictures).argmax(1).tolist()
    original = engine.predict_probabilities(model, test.images[idx]).argmax(1)
    print(f"checkpoint: {doc['checkpoint']['path']} ({doc['checkpoint']['summary']})")
    print(
        f"{len(idx)} test digits per style; the same digits as 28x28 originals: "
        f"{100 * float((original == test.labels[idx]).float().mean()):.1f}%"
    )
    print(f"{'style':18s} {'mnistcli predict':>17s} {'resize whole picture':>21s}")
    errors = {e["file"] for e in doc["errors"]}
    total = total_naive = 0
    for style in args.styles:
        rows = [(str(p), lbl, n) for (p, lbl, s), n in zip(files, naive_pred) if s == style]
        ok = sum(got.get(p) == lbl for p, lbl, _ in rows)
        ok_naive = sum(n == lbl for _, lbl, n in rows)
        total, total_naive = total + ok, total_naive + ok_naive
        print(f"{style:18s} {100 * ok / len(rows):16.1f}% {100 * ok_naive / len(rows):20.1f}%")
    print(f"{'all':18s} {100 * total / len(files):16.1f}% {100 * total_naive / len(files):20.1f}%")
    if errors:
        print(f"{len(errors)} pictures could not be read, e.g. {doc['errors'][:3]}")


if __name__ == "__main__":
    main()

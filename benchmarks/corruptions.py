"""MNIST-C: a model's accuracy on MNIST digits under fifteen corruptions, beside a baseline CNN.

Applies the fifteen corruptions of MNIST-C (Mu and Gilmer 2019, "MNIST-C: A Robustness Benchmark
for Computer Vision", arXiv:1906.02337) to the MNIST test images (or to the tool's validation
split) and prints, for each model, the accuracy on the clean images, on each corruption, their mean
over the fifteen and the worst of them. The baseline is the report's CNN trained by the tool itself
(`mnistcli train --recipe report`, 3 epochs by default) in the same run.

The corruptions are written here from the paper's descriptions, at the one severity the released
MNIST-C uses for each; the parameters are those of the authors' code (google-research/mnist-c,
corruptions.py, each function's default severity), which follows ImageNet-C (Hendrycks and
Dietterich 2019) for the noises, blurs, fog and spatter. Pixel values are in [0, 1] below.

  shot noise     Poisson(3 x) / 3 (severity 5 of 60, 25, 12, 5, 3 photons)
  impulse noise  17% of the pixels set to 0 or 1, half each (severity 4)
  glass blur     vertical Gaussian blur sigma 0.7 (the authors' code blurs along that axis only), two
                 sweeps from the bottom-right that swap each pixel, with probability 1/2, with itself or
                 its upper, left or upper-left neighbour, then the same blur again (severity 1)
  motion blur    ImageMagick's motion blur, radius 10 sigma 3: a one-sided line of 21 taps with weights
                 exp(-i^2 / 18), at an angle uniform in [-45, 45] degrees (severity 1)
  shear          output pixel (x, y) reads the input at (x - sin(0.4) y, cos(0.4) y), about the centre and
                 of either sign: a horizontal shear, slightly stretched vertically (severity 2)
  scale          the digit shrunk to 0.7 of its size about the centre (severity 3)
  rotate         rotation by 0.4 rad (22.9 degrees) either way about the centre (severity 2)
  brightness     +0.5 on the HSV value, i.e. every pixel raised by 0.5 and clipped: grey background (severity 5)
  translate      shifted 3 pixels along each axis, random signs (severity 3)
  stripe         the 7 columns at each side inverted (white bands)
  fog            + 3 x a plasma fractal (diamond-square, 256 x 256, roughness decay 1.4, top-left 28 x 28),
                 then scaled back by max / (max + 3): a haze over the whole image (severity 5)
  spatter        mud blots: N(0.65, 0.3) noise blurred (sigma 1), thresholded at 0.65, the mask blurred
                 (sigma 1.5) and kept where >= 0.8, blended in as grey 63/255 (severity 4)
  dotted line    a line from the left edge to the right edge between random rows, drawn dashed
                 (two columns off, two on), strength 1 + log(1 - d / 2.3) at vertical distance d
  zigzag         a zigzag with a vertex every 4 pixels, 2 pixels either side of its axis, from column 2
                 to about 25, at a random row and a slope of up to 5 rows, drawn with the same strokes
  canny edges    the digit replaced by its Canny edge map (Gaussian sigma 1, Sobel, non-maximum
                 suppression, hysteresis between 0.1 and 0.2: scikit-image's defaults), edges white

Each corruption draws from its own fixed seed, in blocks of 500 images, so that every run makes the
same images and `--limit N` makes the same first N images as a whole run; results are rounded to
uint8. Everything is numpy and scipy, vectorised over the images: about 15 s for all fifteen on the
10,000 test images on 2 cores. The affine warps and the Canny edge maps give the same images as
scikit-image's warp and canny (which the authors used); neither it nor OpenCV is needed.

    python benchmarks/corruptions.py --split test
    python benchmarks/corruptions.py --split val --checkpoint runs/a/best.pt --checkpoint runs/b/best.pt
    python benchmarks/corruptions.py --limit 1000 --no-baseline --examples corruptions.png --json mnistc.json

--split test scores the 10,000 MNIST test images (for reporting); --split val the 5,000 training
images the tool holds out for validation, to choose recipes without tuning on the test set (the
report recipe trains on all 60,000 images, so on val the baseline has seen them). Without
--checkpoint, the model `mnistcli predict` would use. The models run on the CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"
SEED = 1906_02337  # the paper's arXiv number
BLOCK = 500  # images per random draw: image i's corruption depends only on it, i and the seed
SIZE = 28
CENTRE = (SIZE - 1) / 2  # 13.5: the affine corruptions keep the image centre fixed
ROWS = np.arange(SIZE, dtype=np.float32)[:, None]
COLS = np.arange(SIZE, dtype=np.float32)[None, :]

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]  # (N, 28, 28) float [0, 1] -> same


# ---------------------------------------------------------------------------------------------
# Helpers


def _blur(x: np.ndarray, sigma: float | tuple[float, float], mode: str = "nearest") -> np.ndarray:
    """Gaussian blur of each image (N, 28, 28), truncated at 4 sigma; sigma (rows, cols) or both."""
    rows, cols = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    return ndimage.gaussian_filter(x, sigma=(0, rows, cols), mode=mode, truncate=4.0)


def _signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=n)


def _warp(x: np.ndarray, matrix: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Bilinear resampling: output pixel p = (row, col) of image n reads the input at matrix[n] @ p + shift[n];
    zero outside the image. matrix (N, 2, 2), shift (N, 2)."""
    n = len(x)
    grid = np.stack(np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")).reshape(2, -1).astype(np.float64)
    src = matrix @ grid + shift[:, :, None]  # (N, 2, 784)
    base = np.floor(src)
    frac = (src - base).astype(np.float32)
    base = base.astype(np.int64)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1))).reshape(n, -1)  # a zero ring: indices -1 and 28 read 0
    out = np.zeros((n, SIZE * SIZE), np.float32)
    for dr in (0, 1):
        for dc in (0, 1):
            r = np.clip(base[:, 0] + dr, -1, SIZE) + 1
            c = np.clip(base[:, 1] + dc, -1, SIZE) + 1
            weight = (frac[:, 0] if dr else 1 - frac[:, 0]) * (frac[:, 1] if dc else 1 - frac[:, 1])
            out += weight * np.take_along_axis(padded, r * (SIZE + 2) + c, axis=1)
    return out.reshape(x.shape)


def _about_centre(matrix: np.ndarray) -> np.ndarray:
    """The shift that keeps the image centre fixed under matrix (N, 2, 2)."""
    centre = np.full(2, CENTRE)
    return centre - matrix @ centre


def _strokes(c0: np.ndarray, r0: np.ndarray, c1: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """(N, 28, 28) strength of straight strokes from (col c0, row r0) to (c1, r1), one per image.

    As in MNIST-C, the strength is 1 + log(1 - d / 2.3) at vertical distance d from the line (1 on it,
    0 from d = 1.45 on), over the columns floor(c0) <= col < ceil(c1); nothing for a vertical stroke.
    """
    run = c1 - c0
    slope = np.divide(r1 - r0, run, out=np.zeros_like(run), where=run != 0)
    centre = r0[:, None, None] + slope[:, None, None] * (COLS - c0[:, None, None])  # (N, 1, 28)
    d = np.abs(ROWS - centre)
    strength = 1 + np.log(np.maximum(1 - d / 2.3, 1e-12))
    inside = (COLS >= np.floor(c0)[:, None, None]) & (COLS < np.ceil(c1)[:, None, None]) & (run != 0)[:, None, None]
    return np.clip(strength, 0, 1) * inside


def _plasma(rng: np.random.Generator, n: int, size: int = 256, decay: float = 1.4) -> np.ndarray:
    """n plasma fractals (n, size, size) in [0, 1]: the diamond-square algorithm on a torus, as in ImageNet-C.

    Each new point is the mean of its four neighbours plus noise uniform in +-w^2, with w = 100 at the
    coarsest step and divided by `decay` at each finer one; each map is then scaled to [0, 1].
    """
    m = np.zeros((n, size, size), np.float32)
    step, w = size, 100.0

    def noise(shape: tuple[int, ...]) -> np.ndarray:
        return (w * w) * (2 * rng.random(shape, dtype=np.float32) - 1)

    while step >= 2:
        half = step // 2
        corners = m[:, ::step, ::step]
        square = corners + np.roll(corners, -1, axis=1)
        square += np.roll(square, -1, axis=2)  # the four corners of each square
        m[:, half::step, half::step] = square / 4 + noise(square.shape)
        centres = m[:, half::step, half::step]
        # Diamond points on the corner rows: corners left and right, centres above and below.
        around = corners + np.roll(corners, -1, axis=2) + centres + np.roll(centres, 1, axis=1)
        m[:, ::step, half::step] = around / 4 + noise(around.shape)
        # Diamond points on the centre rows: corners above and below, centres left and right.
        around = corners + np.roll(corners, -1, axis=1) + centres + np.roll(centres, 1, axis=2)
        m[:, half::step, ::step] = around / 4 + noise(around.shape)
        step //= 2
        w /= decay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


def _sobel(x: np.ndarray, axis: int) -> np.ndarray:
    """The Sobel derivative of each image (N, 28, 28) along axis 1 (rows) or 2 (columns).

    Not ndimage.sobel on the stack: it would also smooth across the images (axis 0).
    """
    derivative = ndimage.correlate1d(x, [-1.0, 0.0, 1.0], axis=axis, mode="reflect")
    return ndimage.correlate1d(derivative, [1.0, 2.0, 1.0], axis=3 - axis, mode="reflect")


def _non_maximum(magnitude: np.ndarray, gr: np.ndarray, gc: np.ndarray) -> np.ndarray:
    """Where the gradient magnitude is at least that of both neighbours along the gradient.

    The neighbours' magnitudes are interpolated: one pixel along the gradient's major axis, a fraction
    |minor| / |major| of a pixel along its minor axis (between the straight and the diagonal neighbour).
    """
    n = len(magnitude)
    padded = np.pad(magnitude, ((0, 0), (1, 1), (1, 1))).reshape(n, -1)
    rows_major = np.abs(gr) >= np.abs(gc)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(rows_major, np.abs(gc) / np.abs(gr), np.abs(gr) / np.abs(gc))
    frac = np.nan_to_num(frac)
    turn = np.where(gr * gc < 0, -1, 1)  # which diagonal the gradient leans to
    r = np.arange(SIZE)[:, None] + 1
    c = np.arange(SIZE)[None, :] + 1
    keep = np.ones(magnitude.shape, bool)
    for side in (1, -1):
        straight_r, straight_c = np.where(rows_major, r + side, r), np.where(rows_major, c, c + side)
        diagonal_r = np.where(rows_major, r + side, r + side * turn)
        diagonal_c = np.where(rows_major, c + side * turn, c + side)
        straight = np.take_along_axis(padded, (straight_r * (SIZE + 2) + straight_c).reshape(n, -1), axis=1)
        diagonal = np.take_along_axis(padded, (diagonal_r * (SIZE + 2) + diagonal_c).reshape(n, -1), axis=1)
        between = (1 - frac) * straight.reshape(magnitude.shape) + frac * diagonal.reshape(magnitude.shape)
        keep &= magnitude >= between
    return keep


def canny(x: np.ndarray, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> np.ndarray:
    """Canny edge maps (N, 28, 28) bool of images in [0, 1]: Gaussian smoothing (normalised at the borders),
    Sobel gradients, non-maximum suppression, then hysteresis: the edge pixels above `low` that are
    8-connected to one above `high`. The outermost ring of pixels is never an edge."""
    smoothed = _blur(x, sigma, mode="constant") / _blur(np.ones_like(x[:1]), sigma, mode="constant")
    gr, gc = _sobel(smoothed, axis=1), _sobel(smoothed, axis=2)  # d/d row, d/d col
    magnitude = np.hypot(gr, gc)
    inner = np.zeros(magnitude.shape, bool)
    inner[:, 1:-1, 1:-1] = True
    edge = inner & (magnitude > 0) & _non_maximum(magnitude, gr, gc)
    weak = edge & (magnitude >= low)
    strong = edge & (magnitude >= high)
    within_image = np.zeros((3, 3, 3), bool)
    within_image[1] = True  # 8-connected in each image, never across images
    labels, count = ndimage.label(weak, structure=within_image)
    anchored = np.zeros(count + 1, bool)
    anchored[labels[strong]] = True
    anchored[0] = False
    return anchored[labels]


# ---------------------------------------------------------------------------------------------
# The fifteen corruptions: (N, 28, 28) float32 in [0, 1] and a generator -> the same, in [0, 1]


def shot_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    photons = 3
    return rng.poisson(x * photons).astype(np.float32) / photons


def impulse_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hit = rng.random(x.shape) < 0.17
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(np.float32), x)


def glass_blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # The authors' Gaussian takes a grey image's last axis for colour channels: it blurs along the rows
    # axis only (vertically), and that is what the released MNIST-C has.
    sigma, sweeps = (0.7, 0.0), 2
    y = np.floor(_blur(x, sigma) * 255)  # and it stores the first blur as uint8
    n = len(y)
    positions = range(SIZE - 1, 1, -1)  # 27 down to 2, in rows and in columns
    moves = len(positions) ** 2 * sweeps
    swap = rng.random((moves, n)) < 0.5
    dr = np.where(swap, rng.integers(-1, 1, (moves, n)), 0)  # -1 or 0: up or stay
    dc = np.where(swap, rng.integers(-1, 1, (moves, n)), 0)
    images = np.arange(n)
    k = 0
    for _ in range(sweeps):  # sequential on purpose: a value swapped upwards can be carried on
        for r in positions:
            for c in positions:
                rr, cc = r + dr[k], c + dc[k]
                here = y[:, r, c].copy()
                y[:, r, c] = y[images, rr, cc]
                y[images, rr, cc] = here
                k += 1
    return _blur(y / 255, sigma)


def motion_blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = 10, 3.0
    taps = np.arange(2 * radius + 1)
    weights = np.exp(-(taps**2) / (2 * sigma**2))
    weights /= weights.sum()
    angle = np.deg2rad(rng.uniform(-45, 45, len(x)))
    # ImageMagick rounds each tap's offset to whole pixels and repeats the edge pixels outside.
    off_c = np.ceil(taps[None, :] * np.cos(angle)[:, None] - 0.5).astype(np.int64)  # (N, taps)
    off_r = np.ceil(taps[None, :] * np.sin(angle)[:, None] - 0.5).astype(np.int64)
    flat = x.reshape(len(x), -1)
    r = np.arange(SIZE)[:, None]
    c = np.arange(SIZE)[None, :]
    out = np.zeros_like(x)
    for i, weight in enumerate(weights):
        rr = np.clip(r + off_r[:, i, None, None], 0, SIZE - 1)
        cc = np.clip(c + off_c[:, i, None, None], 0, SIZE - 1)
        out += weight * np.take_along_axis(flat, (rr * SIZE + cc).reshape(len(x), -1), axis=1).reshape(x.shape)
    return out


def shear(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = 0.4 * _signs(rng, len(x))
    # Input (x, y) = (x - sin(s) y, cos(s) y) for output (x, y); in (row, col) order:
    matrix = np.zeros((len(x), 2, 2))
    matrix[:, 0, 0] = np.cos(s)
    matrix[:, 1, 0] = -np.sin(s)
    matrix[:, 1, 1] = 1
    return _warp(x, matrix, _about_centre(matrix))


def scale(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    matrix = np.broadcast_to(np.eye(2) / 0.7, (len(x), 2, 2))  # reads 1/0.7 farther out: the digit at 0.7
    return _warp(x, matrix, _about_centre(matrix))


def rotate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = 0.4 * _signs(rng, len(x))
    cos, sin = np.cos(a), np.sin(a)
    matrix = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1)
    return _warp(x, matrix, _about_centre(matrix))


def brightness(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + 0.5, 0, 1)  # +0.5 on the HSV value of a grey image


def translate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shift = 3 * np.stack([_signs(rng, len(x)), _signs(rng, len(x))], 1)  # (dx, dy) in the authors' order
    return _warp(x, np.broadcast_to(np.eye(2), (len(x), 2, 2)), shift[:, ::-1])


def stripe(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y = x.copy()
    y[:, :, :7] = 1 - y[:, :, :7]
    y[:, :, 21:] = 1 - y[:, :, 21:]
    return y


def fog(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    strength = 3.0
    piece = 50  # maps of 256 x 256 for 50 images at a time stay in the caches: 3x faster than 500
    haze = np.concatenate(
        [_plasma(rng, len(x[i : i + piece]), decay=1.4)[:, :SIZE, :SIZE] for i in range(0, len(x), piece)]
    )
    peak = x.max(axis=(1, 2), keepdims=True)
    return (x + strength * haze) * peak / (peak + strength)


def spatter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    liquid = _blur(rng.normal(0.65, 0.3, x.shape).astype(np.float32), 1.0)
    mask = _blur((liquid > 0.65).astype(np.float32), 1.5)
    mask[mask < 0.8] = 0
    return x * (1 - mask) + 63 / 255 * mask  # mud


def dotted_line(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    r0, r1 = rng.integers(0, 27, (2, n)).astype(np.float32)
    line = _strokes(np.zeros(n, np.float32), r0, np.full(n, 27, np.float32), r1)
    line *= (np.arange(SIZE) // 2) % 2 == 1  # dashes: columns 0-1 off, 2-3 on, ...
    return x + line


def zigzag(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, tooth, height, start, end = len(x), 2.0, 2.0, 2.0, 25.0
    r0 = rng.integers(0, 27, n).astype(np.float64)
    rise = rng.integers(-5, 5, n)
    theta = np.arctan(rise / (end - start))
    length = (end - start) / np.cos(theta)
    # Along the zigzag's own axis: (0, 0), then a vertex every 2 tooth lengths, alternately height above
    # and below, then the authors' last vertex at the full length; with |rise| <= 5 there are always 6 teeth.
    teeth = int((length.min() - tooth) // (2 * tooth)) + 1
    if teeth != int((length.max() - tooth) // (2 * tooth)) + 1:
        raise AssertionError("the zigzags would differ in their number of teeth")
    along = np.array([0.0] + [(2 * i + 1) * tooth for i in range(teeth)])
    across = np.array([0.0] + [(-1) ** i * height for i in range(teeth)])
    along, across = np.broadcast_to(along, (n, teeth + 1)), np.broadcast_to(across, (n, teeth + 1))
    whole = 2 * tooth * (length // (2 * tooth))
    along = np.concatenate([along, length[:, None]], 1)
    across = np.concatenate([across, (across[:, -1] / (2 * (length - whole)))[:, None]], 1)
    cols = start + along * np.cos(theta)[:, None] - across * np.sin(theta)[:, None]
    rows = r0[:, None] + along * np.sin(theta)[:, None] + across * np.cos(theta)[:, None]
    out = x.copy()
    for i in range(cols.shape[1] - 1):
        out += _strokes(*(a.astype(np.float32) for a in (cols[:, i], rows[:, i], cols[:, i + 1], rows[:, i + 1])))
    return out


def canny_edges(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return canny(x).astype(np.float32)


CORRUPTIONS: dict[str, Corruption] = {
    "shot noise": shot_noise,
    "impulse noise": impulse_noise,
    "glass blur": glass_blur,
    "motion blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "brightness": brightness,
    "translate": translate,
    "stripe": stripe,
    "fog": fog,
    "spatter": spatter,
    "dotted line": dotted_line,
    "zigzag": zigzag,
    "canny edges": canny_edges,
}


def corrupt(name: str, images: np.ndarray, seed: int = SEED) -> np.ndarray:
    """One corruption of uint8 images (N, 28, 28), light digit on black, as uint8 (N, 28, 28).

    Block b of BLOCK images draws from the generator seeded (seed, corruption's number, b), always for a
    whole block (a short last block is padded), so an image's corruption depends only on its position.
    """
    fn = CORRUPTIONS[name]
    index = list(CORRUPTIONS).index(name)
    out = np.empty_like(images)
    for start in range(0, len(images), BLOCK):
        block = images[start : start + BLOCK].astype(np.float32) / 255
        n = len(block)
        if n < BLOCK:
            block = np.concatenate([block, np.zeros((BLOCK - n, SIZE, SIZE), np.float32)])
        rng = np.random.default_rng([seed, index, start // BLOCK])
        y = fn(block, rng)[:n]
        out[start : start + n] = np.clip(np.rint(y * 255), 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------------
# Models and data: the only place that uses mnistcli's own code


Classifier = Callable[[np.ndarray], np.ndarray]  # uint8 images (N, 28, 28) -> predicted classes (N,)


def mnistcli_api(data_dir: Optional[Path], split: str) -> tuple[np.ndarray, np.ndarray, Callable]:
    """The split's images (N, 28, 28) uint8 and labels, and a loader: checkpoint path (None: the model
    `mnistcli predict` would use) -> (classifier, path, description)."""
    import torch

    from mnistcli import checkpoint, data, engine

    dataset = data.load_dataset("mnist", data_dir, download_ok=False, val_size=5000, splits=("train", "test"))
    chosen = dataset.test if split == "test" else dataset.val
    if chosen is None:
        sys.exit(f"the dataset has no {split} split")

    def load(path: Optional[Path]) -> tuple[Classifier, Path, str]:
        loaded = checkpoint.load_model(path, torch.device("cpu"))
        spec = loaded.checkpoint.spec

        def classify(images: np.ndarray) -> np.ndarray:
            probs = engine.predict_probabilities(loaded.net, torch.from_numpy(images), mean=spec.mean, std=spec.std)
            return probs.argmax(1).numpy()

        return classify, Path(loaded.path), f"{loaded.source}: {loaded.checkpoint.describe()}"

    return chosen.images.numpy(), chosen.labels.numpy(), load


# ---------------------------------------------------------------------------------------------
# The run


def train_baseline(epochs: int, data_dir: Optional[Path], out_dir: Path) -> Path:
    """The report's CNN, trained by the tool for `epochs` epochs into out_dir; its last.pt."""
    cmd = [sys.executable, "-m", "mnistcli", "train", "--recipe", "report", "--epochs", str(epochs)]
    cmd += [*(["--data-dir", str(data_dir.resolve())] if data_dir else []), "--no-download", "--out-dir", str(out_dir)]
    print(f"training the baseline: mnistcli {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"baseline training failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return out_dir / "last.pt"


def unique_names(paths: list[Path]) -> list[str]:
    """Short column names: the file name, with as many parent folders as it takes to tell them apart."""
    depth = 1
    while depth < 8:
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
        depth += 1
    return [str(p) for p in paths]


def examples_figure(path: Path, clean: np.ndarray, corrupted: dict[str, np.ndarray], labels: np.ndarray) -> None:
    """A grid: one row per corruption (clean first), one column per digit."""
    from matplotlib.figure import Figure

    rows = {"clean": clean, **corrupted}
    cols = min(8, len(clean))
    fig = Figure(figsize=(1.0 * cols + 1.4, 1.0 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for i, (name, images) in enumerate(rows.items()):
        for j in range(cols):
            ax = axes[i][j]
            ax.imshow(images[j], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"label {labels[j]}", fontsize=9)
            if j == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("MNIST-C corruptions (benchmarks/corruptions.py)", fontsize=10)
    fig.subplots_adjust(left=0.17, right=0.99, bottom=0.01, top=0.95, wspace=0.05, hspace=0.08)
    fig.savefig(path, dpi=90)


def summary(accuracy: dict[str, float]) -> tuple[float, str]:
    """The mean accuracy over the fifteen corruptions, and the corruption with the lowest."""
    return float(np.mean([accuracy[c] for c in CORRUPTIONS])), min(CORRUPTIONS, key=accuracy.__getitem__)


def table(names: list[str], accuracy: dict[str, dict[str, float]]) -> str:
    """One row per corruption (clean first, then the mean over the fifteen and the worst), one column per model."""
    rows = [(c, [f"{accuracy[m][c]:.2f}" for m in names]) for c in ("clean", *CORRUPTIONS)]
    sums = [summary(accuracy[m]) for m in names]
    rows.append(("mean over 15", [f"{mean:.2f}" for mean, _ in sums]))
    rows.append(("worst", [f"{accuracy[m][w]:.2f} ({w})" for m, (_, w) in zip(names, sums)]))
    width = [max(len(n), *(len(cells[k]) for _, cells in rows)) for k, n in enumerate(names)]
    header = "accuracy %".ljust(14) + "  ".join(n.rjust(w) for n, w in zip(names, width))
    lines = [header, "-" * len(header)]
    for label, cells in rows:
        if label == "mean over 15":
            lines.append("-" * len(header))
        lines.append(label.ljust(14) + "  ".join(v.rjust(w) for v, w in zip(cells, width)))
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, action="append", default=None, help="a model to score (repeatable)")
    ap.add_argument("--split", choices=("test", "val"), default="test", help="test: report; val: choose recipes")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA if DEFAULT_DATA.is_dir() else None,
        help="MNIST's folder (default: ../shared/data/mnist from the repository if there, else the tool's own search)",
    )
    ap.add_argument("--baseline-epochs", type=int, default=3, help="epochs of the baseline report CNN")
    ap.add_argument("--baseline", type=Path, default=None, help="a report CNN already trained, instead of training")
    ap.add_argument("--no-baseline", action="store_true", help="score only the --checkpoint models")
    ap.add_argument("--seed", type=int, default=SEED, help="the corruptions' seed")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    ap.add_argument("--examples", type=Path, default=None, help="write a PNG of a few corrupted digits here")
    return ap.parse_args()


def load_models(args: argparse.Namespace, load: Callable) -> list[tuple[str, str, Classifier]]:
    """(column name, description, classifier) for the baseline (unless --no-baseline) and each model."""
    wanted: list[tuple[str, Optional[Path]]] = []  # (role, path to load)
    with tempfile.TemporaryDirectory(prefix="mnistc-baseline-") as tmp:
        if not args.no_baseline:
            if args.baseline:
                wanted.append(("baseline", args.baseline))
            else:
                trained = train_baseline(args.baseline_epochs, args.data_dir, Path(tmp))
                wanted.append((f"baseline, trained for {args.baseline_epochs} epochs in a temporary folder", trained))
        wanted += [("model", p) for p in (args.checkpoint or [None])]
        loaded = [(role, *load(path)) for role, path in wanted]  # read whole before the folder goes
    baseline = "report CNN" if args.baseline else f"report CNN {args.baseline_epochs} ep"
    names = [
        baseline if role.startswith("baseline") else "bundled" if about.startswith("bundled") else name
        for name, (role, _, _, about) in zip(unique_names([path for _, _, path, _ in loaded]), loaded)
    ]
    return [(name, f"{role}: {path} ({about})", classify) for name, (role, classify, path, about) in zip(names, loaded)]


def main() -> None:
    args = parse_args()
    t_start = time.perf_counter()
    images, labels, load = mnistcli_api(args.data_dir, args.split)
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]

    seconds: dict[str, float] = {}
    corrupted: dict[str, np.ndarray] = {}
    for name in CORRUPTIONS:
        t0 = time.perf_counter()
        corrupted[name] = corrupt(name, images, args.seed)
        seconds[name] = time.perf_counter() - t0
    t_corrupt = sum(seconds.values())
    print(f"corrupted {len(images)} {args.split} images 15 ways in {t_corrupt:.1f} s", file=sys.stderr, flush=True)
    if args.examples:
        examples_figure(args.examples, images, corrupted, labels)

    models = load_models(args, load)
    accuracy = {
        name: {c: 100 * float(np.mean(classify(x) == labels)) for c, x in {"clean": images, **corrupted}.items()}
        for name, _, classify in models
    }
    wall = time.perf_counter() - t_start

    print(f"MNIST-C on {len(images)} {args.split} images (seed {args.seed})")
    print(table([name for name, _, _ in models], accuracy))
    for name, about, _ in models:
        print(f"  {name}: {about}")
    print(f"{wall:.0f} s in all, {t_corrupt:.1f} s of it corrupting")
    if args.json:
        report = {
            "split": args.split,
            "images": len(images),
            "seed": args.seed,
            "models": {name: about for name, about, _ in models},
            "accuracy": accuracy,
            "mean": {name: summary(acc)[0] for name, acc in accuracy.items()},
            "worst": {
                name: {"corruption": summary(acc)[1], "accuracy": acc[summary(acc)[1]]}
                for name, acc in accuracy.items()
            },
            "corruption_seconds": seconds,
            "seconds": wall,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

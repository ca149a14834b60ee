"""Realistic pictures of handwritten digits, made from 28x28 MNIST-style digits.

Used by the tests and by benchmarks/predict_realistic.py: each style mimics what people
feed a digit reader (a phone photo of paper, a drawing app's export, a tight crop, ...).
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

STYLES = ("paper-photo", "transparent-png", "white-on-black", "black-on-white", "tight-crop", "exif-rotated")
# Harder photos of pen on paper, as a third of people's pictures are: a thin faint ballpoint on grey
# paper, ruled and squared paper, a small digit in a large frame.
PAPER_STYLES = ("ballpoint-photo", "lined-paper", "squared-paper", "small-in-frame")
# Kinds that real pictures held out from the development set showed going wrong: a small scan with
# thin anti-aliased strokes, a digit's own long straight stroke on grey paper (a 1, 4 or 7 as tall as
# the picture), a 1 with a long flag (sometimes a foot) as written across continental Europe, and a
# crossed 7. The last three are drawn from straight pen strokes, so they draw only those digits.
STROKE_STYLES = ("small-scan", "long-stroke", "continental-1", "crossed-7")
LABELS_OF = {"long-stroke": (1, 4, 7), "continental-1": (1,), "crossed-7": (7,)}
SUFFIX = dict.fromkeys(("paper-photo", "exif-rotated", *PAPER_STYLES, *STROKE_STYLES), ".jpg")


def _upscale(digit: np.ndarray, size: int) -> np.ndarray:
    """A 28x28 uint8 digit -> float ink in [0, 1] at size x size, smooth as a pen stroke."""
    img = Image.fromarray(digit).resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(img, dtype=np.float32) / 255.0, 0, 1)


def _thick(digit: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Bold, nearly binary strokes, as a drawing app's fat brush makes."""
    ink = Image.fromarray(digit).resize((size, size), Image.BICUBIC)
    # Thicken by about 1 to 2 MNIST pixels: bold but still legible.
    width = round(size / 28 * rng.uniform(1.0, 2.0)) | 1
    ink = ink.filter(ImageFilter.MaxFilter(max(3, width)))
    a = np.asarray(ink, dtype=np.float32) / 255.0
    return np.clip((a - 0.3) * 4, 0, 1)


def _place(ink: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Put a square ink patch at a random, off-centre spot of a canvas (H, W)."""
    canvas = np.zeros(shape, dtype=np.float32)
    s = ink.shape[0]
    top = int(rng.integers(0, shape[0] - s + 1))
    left = int(rng.integers(0, shape[1] - s + 1))
    canvas[top : top + s, left : left + s] = ink
    return canvas


def paper_photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Dark ink on off-white paper, uneven light, sensor noise; larger than 28 px and off-centre (RGB)."""
    h, w = int(rng.integers(280, 480)), int(rng.integers(280, 480))
    size = int(rng.uniform(0.35, 0.7) * min(h, w))
    ink = _place(_upscale(digit, size), (h, w), rng)[..., None]
    paper = np.array([0.94, 0.92, 0.86], dtype=np.float32) * rng.uniform(0.9, 1.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx / w + np.sin(angle) * yy / h
    light = rng.uniform(0.7, 0.85) + rng.uniform(0.15, 0.3) * (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    pen = np.array(rng.choice([[0.1, 0.1, 0.12], [0.1, 0.12, 0.35], [0.2, 0.2, 0.2]]), dtype=np.float32)
    rgb = (paper * (1 - ink) + pen * ink) * light[..., None]
    rgb += rng.normal(0, 0.03, rgb.shape).astype(np.float32)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")


def transparent_png(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Coloured strokes on a fully transparent background (RGBA), off-centre."""
    side = int(rng.integers(160, 320))
    alpha = _place(_upscale(digit, int(side * rng.uniform(0.5, 0.8))), (side, side), rng)
    colour = np.array(rng.choice([[0, 0, 0], [20, 40, 160], [180, 20, 20], [30, 30, 30]]), dtype=np.float32)
    rgba = np.zeros((side, side, 4), dtype=np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = (alpha * 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def white_on_black(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(120, 300))
    ink = _place(_thick(digit, int(side * rng.uniform(0.5, 0.85)), rng), (side, side), rng)
    return Image.fromarray((np.clip(0.05 + 0.95 * ink, 0, 1) * 255).astype(np.uint8), "L")


def black_on_white(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(120, 300))
    ink = _place(_thick(digit, int(side * rng.uniform(0.5, 0.85)), rng), (side, side), rng)
    grey = (1.0 - ink) * 255
    return Image.fromarray(np.stack([grey] * 3, -1).astype(np.uint8), "RGB")


def tight_crop(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Cropped right to the ink, no margin at all, dark on white."""
    scale = int(rng.integers(3, 8))
    ink = _upscale(digit, 28 * scale)
    rows, cols = np.flatnonzero(ink.max(1) > 0.2), np.flatnonzero(ink.max(0) > 0.2)
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return Image.fromarray(((1.0 - ink) * 255).astype(np.uint8), "L")


def skeleton(mask: np.ndarray) -> np.ndarray:
    """The centre lines of a boolean mask, one pixel wide (Zhang and Suen's thinning, 1984)."""
    img = mask.astype(np.uint8)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p = np.pad(img, 1)
            n = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:], p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]
            count = sum(n)
            turns = sum((n[i] == 0) & (n[(i + 1) % 8] == 1) for i in range(8))
            p2, _, p4, _, p6, _, p8, _ = n
            side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0) if step == 0 else (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (img == 1) & (count >= 2) & (count <= 6) & (turns == 1) & side
            if remove.any():
                img[remove] = 0
                changed = True
    return img.astype(bool)


def pen(digit: np.ndarray, size: int, width: float) -> np.ndarray:
    """The digit's centre line drawn `width` px wide at size x size: float ink in [0, 1], anti-aliased."""
    line = skeleton(_upscale(digit, size) > 0.45)
    img = Image.fromarray(line.astype(np.uint8) * 255)
    k = round(width)
    if k >= 2:
        img = img.filter(ImageFilter.MaxFilter(k | 1))
    img = img.filter(ImageFilter.GaussianBlur(max(0.5, width / 4)))
    a = np.asarray(img, dtype=np.float32) / 255.0
    return np.clip(a / max(1e-6, float(a.max())), 0, 1)


def _paper(shape: tuple[int, int], base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB paper (H, W, 3): a tint, uneven light, a little texture."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx / w + np.sin(angle) * yy / h
    light = rng.uniform(0.75, 0.9) + rng.uniform(0.1, 0.25) * (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    texture = np.asarray(
        Image.fromarray((rng.normal(128, 40, (h, w))).clip(0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(1.5)
        ),
        dtype=np.float32,
    )
    grain = (texture - 128) / 128 * rng.uniform(0.01, 0.03)
    return (base[None, None, :] * light[..., None] + grain[..., None]).astype(np.float32)


def _ink_on(paper: np.ndarray, ink: np.ndarray, colour, strength: float) -> np.ndarray:
    colour = np.asarray(colour, dtype=np.float32)
    a = (ink * strength)[..., None]
    return paper * (1 - a) + colour * a


def _photo(rgb: np.ndarray, rng: np.random.Generator) -> Image.Image:
    rgb = rgb + rng.normal(0, 0.015, rgb.shape).astype(np.float32)
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))  # the camera's softness


BALLPOINTS = ([0.15, 0.2, 0.55], [0.1, 0.1, 0.15], [0.2, 0.3, 0.65])


def ballpoint_photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A thin ballpoint line (1.5-3.5 px), faint, on grey paper, in a phone-sized photo."""
    h, w = int(rng.integers(800, 1300)), int(rng.integers(800, 1300))
    size = int(rng.uniform(0.3, 0.55) * min(h, w))
    ink = _place(pen(digit, size, rng.uniform(1.5, 3.5)), (h, w), rng)
    paper = _paper((h, w), np.array([0.8, 0.8, 0.78]) * rng.uniform(0.65, 0.95), rng)
    return _photo(_ink_on(paper, ink, BALLPOINTS[int(rng.integers(len(BALLPOINTS)))], rng.uniform(0.45, 0.8)), rng)


def _ruled(shape: tuple[int, int], spacing: int, rng: np.random.Generator, across: bool) -> np.ndarray:
    """Printed lines every `spacing` px (horizontal; vertical too when `across`), as float ink."""
    h, w = shape
    lines = np.zeros((h, w), np.float32)
    thick = int(rng.integers(1, 4))
    for y in range(int(rng.integers(0, spacing)), h, spacing):
        lines[y : y + thick] = 1
    if across:
        for x in range(int(rng.integers(0, spacing)), w, spacing):
            lines[:, x : x + thick] = 1
    return lines


def _pen_on_ruled_paper(
    digit: np.ndarray,
    rng: np.random.Generator,
    spacing: tuple[int, int],
    squares_tall: tuple[float, float],
    paper_colour: list[float],
    across: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """A pen digit (its ink mask) `squares_tall` line spacings tall, and the printed paper under it:
    ruled (blue lines) or, `across`, squared (grey-blue grid)."""
    h, w = int(rng.integers(600, 1000)), int(rng.integers(600, 1000))
    step = int(rng.integers(*spacing))
    size = int(rng.uniform(*squares_tall) * step)
    ink = _place(pen(digit, size, rng.uniform(2.5, 6)), (h, w), rng)
    paper = _paper((h, w), np.array(paper_colour), rng)
    lines, strength = ([0.5, 0.6, 0.75], (0.25, 0.5)) if across else ([0.45, 0.65, 0.95], (0.35, 0.6))
    return ink, _ink_on(paper, _ruled((h, w), step, rng, across=across), lines, rng.uniform(*strength))


def lined_paper(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A pen digit on ruled paper: light blue lines through it, sometimes a red margin."""
    ink, paper = _pen_on_ruled_paper(digit, rng, (40, 75), (1.3, 2.4), [0.97, 0.96, 0.93], across=False)
    if rng.random() < 0.5:
        h, w = ink.shape
        margin = np.zeros((h, w), np.float32)
        x = int(rng.uniform(0.05, 0.15) * w)
        margin[:, x : x + 2] = 1
        paper = _ink_on(paper, margin, [0.9, 0.3, 0.3], 0.5)
    return _photo(_ink_on(paper, ink, BALLPOINTS[int(rng.integers(len(BALLPOINTS)))], rng.uniform(0.7, 0.95)), rng)


def squared_paper(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A pen digit on squared (grid) paper, two to four squares tall."""
    ink, paper = _pen_on_ruled_paper(digit, rng, (28, 55), (2.0, 4.0), [0.97, 0.97, 0.95], across=True)
    return _photo(_ink_on(paper, ink, BALLPOINTS[int(rng.integers(len(BALLPOINTS)))], rng.uniform(0.7, 0.95)), rng)


def small_in_frame(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A photo of a whole page where the digit is small: 60-140 px tall in a 1500-2400 px frame."""
    h, w = int(rng.integers(1500, 2400)), int(rng.integers(1500, 2400))
    size = int(rng.integers(60, 140))
    ink = _place(pen(digit, size, rng.uniform(2.0, 5.0)), (h, w), rng)
    paper = _paper((h, w), np.array([0.93, 0.92, 0.88]), rng)
    return _photo(_ink_on(paper, ink, BALLPOINTS[int(rng.integers(len(BALLPOINTS)))], rng.uniform(0.7, 0.95)), rng)


def small_scan(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A pen digit scanned small: 40-70 px, a stroke 0.8-1.6 px wide, anti-aliased by the scanner (drawn
    at 6x and averaged down), and over part of the digit 55-75% fainter where the pen pressed less (a
    second stroke, a pen running dry), on light paper."""
    side, k = int(rng.integers(40, 71)), 6
    size = int(side * rng.uniform(0.7, 0.9)) * k
    ink = pen(digit, size, rng.uniform(0.8, 1.6) * k) * _pressure(size, rng)
    fine = _place(ink, (side * k, side * k), rng)
    ink = np.asarray(Image.fromarray(fine, mode="F").resize((side, side), Image.BOX), dtype=np.float32)
    paper = np.full((side, side, 3), rng.uniform(0.86, 0.97), np.float32)
    rgb = _ink_on(paper, ink, BALLPOINTS[int(rng.integers(len(BALLPOINTS)))], rng.uniform(0.6, 0.9))
    rgb += rng.normal(0, 0.01, rgb.shape).astype(np.float32)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")


def _pressure(size: int, rng: np.random.Generator) -> np.ndarray:
    """Pen pressure over a size x size patch: full on one side of a line through it at a random angle,
    55-75% less on the other, changing over a tenth of the patch."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)
    side = 1 / (1 + np.exp(-ramp * 30))
    return 1.0 - rng.uniform(0.55, 0.75) * side


Strokes = list[list[tuple[float, float]]]


def stroke_digit(label: int, style: str, rng: np.random.Generator) -> Strokes:
    """A digit as pen strokes: polylines of (x, y) in units of the digit's height, y down."""

    def j(s: float = 0.03) -> float:  # a hand's small variation
        return float(rng.uniform(-s, s))

    if style == "continental-1":
        top, bottom = (0.55 + j(), 0.0), (0.45 + j(), 1.0)
        angle, length = np.radians(rng.uniform(20, 45)), rng.uniform(0.35, 0.6)
        flag = (top[0] - length * np.cos(angle), top[1] + length * np.sin(angle))
        foot = 0.2 + j(0.06)
        return [[flag, top, bottom]] + (
            [[(bottom[0] - foot, 1.0), (bottom[0] + foot, 1.0)]] if rng.random() < 0.4 else []
        )
    if style == "crossed-7":
        right, foot = (0.6 + j(), 0.02 + j(0.02)), (0.25 + j(0.08), 1.0)
        y = 0.52 + j(0.06)
        x = right[0] + (foot[0] - right[0]) * (y - right[1]) / (foot[1] - right[1])
        half = 0.17 + j(0.04)
        return [[(0.02, 0.04 + j(0.02)), right, foot], [(x - half, y), (x + half, y + j(0.02))]]
    # "long-stroke": a ruler-straight stroke the whole height of the digit
    lean = j(0.01)
    if label == 4:
        bar = 0.62 + j(0.04)
        return [[(0.5 + lean, 0.0), (0.5 - lean, 1.0)], [(0.45, 0.03), (0.0, bar), (0.72 + j(), bar + j(0.02))]]
    if label == 7:
        return [[(0.0, 0.03 + j(0.02)), (0.55, 0.0), (0.52 + lean, 1.0)]]
    return [[(0.2 + lean, 0.0), (0.2 - lean, 1.0)]] + ([[(0.2, 0.0), (0.06, 0.14)]] if rng.random() < 0.5 else [])


def draw_strokes(strokes: Strokes, height: int, width_px: float, wobble: float, rng: np.random.Generator) -> np.ndarray:
    """Strokes drawn `height` px tall and `width_px` wide with round ends: float ink in [0, 1], anti-aliased
    (drawn at 4x, averaged down). `wobble` (of the height) bends each segment a little, as a hand does."""
    k, pad = 4, width_px
    xs = [x for line in strokes for x, _ in line]
    left, right = min(xs), max(xs)
    w, h = int(np.ceil((right - left) * height + 2 * pad)) + 1, int(np.ceil(height + 2 * pad)) + 1
    img = Image.new("L", (w * k, h * k), 0)
    draw = ImageDraw.Draw(img)
    r = width_px * k / 2
    for line in strokes:
        pts = [((x - left) * height + pad, y * height + pad) for x, y in line]
        pts = _wobbled(pts, wobble * height, rng) if wobble else pts
        pts = [(x * k, y * k) for x, y in pts]
        draw.line(pts, fill=255, width=max(1, round(2 * r)), joint="curve")
        for x, y in (pts[0], pts[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    small = img.resize((w, h), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _wobbled(pts: list[tuple[float, float]], amount: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Each segment split in four, the inner points moved up to `amount` px."""
    out = [pts[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        for t in (0.25, 0.5, 0.75):
            out.append(
                (x0 + t * (x1 - x0) + rng.uniform(-amount, amount), y0 + t * (y1 - y0) + rng.uniform(-amount, amount))
            )
        out.append((x1, y1))
    return out


def long_stroke(strokes: Strokes, rng: np.random.Generator) -> Image.Image:
    """A digit's strokes (a 1, 4 or 7 of `stroke_digit`) in pen on grey paper, the digit 90-97% of the
    picture's height, so its straight stroke spans nearly the whole picture (150-220 x 220-360 px)."""
    h = int(rng.integers(220, 361))
    tall = int(h * rng.uniform(0.9, 0.97))
    ink = draw_strokes(strokes, tall, rng.uniform(2.0, 4.0), 0.004, rng)
    w = max(ink.shape[1] + 8, int(rng.integers(150, 221)))
    ink = _at(ink, (max(h, ink.shape[0]), w), rng)
    paper = _paper(ink.shape, np.array([0.8, 0.79, 0.76]) * rng.uniform(0.65, 0.9), rng)
    return _photo(_ink_on(paper, ink, BALLPOINTS[int(rng.integers(len(BALLPOINTS)))], rng.uniform(0.6, 0.9)), rng)


def _at(ink: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A (h, w) ink patch at a random spot of a canvas `shape`, as `_place` for any patch."""
    canvas = np.zeros(shape, dtype=np.float32)
    top = int(rng.integers(0, shape[0] - ink.shape[0] + 1))
    left = int(rng.integers(0, shape[1] - ink.shape[1] + 1))
    canvas[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return canvas


def pen_strokes_photo(strokes: Strokes, rng: np.random.Generator) -> Image.Image:
    """A digit's strokes (a continental 1 or a crossed 7) in pen on off-white paper, photographed
    (250-450 px)."""
    h, w = int(rng.integers(250, 451)), int(rng.integers(250, 451))
    tall = int(min(h, w) * rng.uniform(0.4, 0.7))
    ink = draw_strokes(strokes, tall, tall * rng.uniform(0.04, 0.08), 0.008, rng)
    ink = _at(ink, (h, w), rng)
    paper = _paper((h, w), np.array([0.94, 0.92, 0.87]), rng)
    return _photo(_ink_on(paper, ink, BALLPOINTS[int(rng.integers(len(BALLPOINTS)))], rng.uniform(0.7, 0.95)), rng)


_EXIF_ROTATIONS = {3: Image.ROTATE_180, 6: Image.ROTATE_90, 8: Image.ROTATE_270}


def exif_rotated(digit: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, bytes]:
    """A paper photo stored sideways, with the EXIF Orientation tag that turns it upright."""
    upright = paper_photo(digit, rng)
    orientation = int(rng.choice(list(_EXIF_ROTATIONS)))
    stored = upright.transpose(_EXIF_ROTATIONS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return stored, exif.tobytes()


def make(style: str, digit: np.ndarray, rng: np.random.Generator, label: int | None = None) -> bytes:
    """The encoded file (PNG or JPEG bytes) of one digit in one style. The styles drawn from pen strokes
    (LABELS_OF) draw `label`, one of theirs, instead of the 28x28 `digit`."""
    buf = io.BytesIO()
    if style in STROKE_STYLES:
        if style == "small-scan":
            image = small_scan(digit, rng)
        elif style == "long-stroke":
            image = long_stroke(stroke_digit(label if label is not None else 4, style, rng), rng)
        else:
            image = pen_strokes_photo(stroke_digit(LABELS_OF[style][0], style, rng), rng)
        image.save(buf, "JPEG", quality=int(rng.integers(85, 96)))
    elif style == "exif-rotated":
        image, exif = exif_rotated(digit, rng)
        image.save(buf, "JPEG", quality=88, exif=exif)
    elif style == "paper-photo":
        paper_photo(digit, rng).save(buf, "JPEG", quality=88)
    elif style in PAPER_STYLES:
        maker = {
            "ballpoint-photo": ballpoint_photo,
            "lined-paper": lined_paper,
            "squared-paper": squared_paper,
            "small-in-frame": small_in_frame,
        }[style]
        maker(digit, rng).save(buf, "JPEG", quality=int(rng.integers(80, 93)))
    else:
        maker = {
            "transparent-png": transparent_png,
            "white-on-black": white_on_black,
            "black-on-white": black_on_white,
            "tight-crop": tight_crop,
        }[style]
        maker(digit, rng).save(buf, "PNG")
    return buf.getvalue()


def write_set(
    folder: Path, digits: np.ndarray, labels: np.ndarray, seed: int = 0, styles: tuple[str, ...] = STYLES
) -> list[tuple[Path, int, str]]:
    """Every digit in every style as files in `folder`; returns (path, label, style) for each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i, (digit, label) in enumerate(zip(digits, labels)):
        for style in styles:
            path = folder / f"{i:04d}-{style}-label{int(label)}{SUFFIX.get(style, '.png')}"
            path.write_bytes(make(style, digit, rng, int(label)))
            out.append((path, int(label), style))
    return out

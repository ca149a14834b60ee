"""Realistic pictures of handwritten digits, made from 28x28 MNIST-style digits.

Used by the tests and by benchmarks/predict_realistic.py: each style mimics what people
feed a digit reader (a phone photo of paper, a drawing app's export, a tight crop, ...).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

STYLES = ("paper-photo", "transparent-png", "white-on-black", "black-on-white", "tight-crop", "exif-rotated")
SUFFIX = {"paper-photo": ".jpg", "exif-rotated": ".jpg"}


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


_EXIF_ROTATIONS = {3: Image.ROTATE_180, 6: Image.ROTATE_90, 8: Image.ROTATE_270}


def exif_rotated(digit: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, bytes]:
    """A paper photo stored sideways, with the EXIF Orientation tag that turns it upright."""
    upright = paper_photo(digit, rng)
    orientation = int(rng.choice(list(_EXIF_ROTATIONS)))
    stored = upright.transpose(_EXIF_ROTATIONS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return stored, exif.tobytes()


def make(style: str, digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """The encoded file (PNG or JPEG bytes) of one digit in one style."""
    buf = io.BytesIO()
    if style == "exif-rotated":
        image, exif = exif_rotated(digit, rng)
        image.save(buf, "JPEG", quality=88, exif=exif)
    elif style == "paper-photo":
        paper_photo(digit, rng).save(buf, "JPEG", quality=88)
    else:
        maker = {
            "transparent-png": transparent_png,
            "white-on-black": white_on_black,
            "black-on-white": black_on_white,
            "tight-crop": tight_crop,
        }[style]
        maker(digit, rng).save(buf, "PNG")
    return buf.getvalue()


def write_set(folder: Path, digits: np.ndarray, labels: np.ndarray, seed: int = 0) -> list[tuple[Path, int, str]]:
    """Every digit in every style as files in `folder`; returns (path, label, style) for each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i, (digit, label) in enumerate(zip(digits, labels)):
        for style in STYLES:
            path = folder / f"{i:04d}-{style}-label{int(label)}{SUFFIX.get(style, '.png')}"
            path.write_bytes(make(style, digit, rng))
            out.append((path, int(label), style))
    return out

"""A person's picture of a digit -> a 28x28 uint8 image that looks like an MNIST sample.

MNIST digits are light ink on black, the digit's longer side scaled to 20 px (aspect
kept, anti-aliased) and placed in a 28x28 field with its centre of mass at the centre.
This module does the same to a photo, scan or drawing: EXIF orientation, transparency,
grey scale, polarity, uneven light and noise, crop, scale, centre.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from mnistcli.errors import ImageError, ImageTooLarge

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_PIXELS = 40_000_000  # refuse larger images before decoding them (decompression bombs)
WORK_SIZE = 256  # longer side of the working copy: plenty for a 20 px result, and fast
DIGIT_SIZE = 20
FIELD = 28
MAX_STROKE = 3.4  # bolder strokes (in px of the 20 px digit) are thinned to TARGET_STROKE
TARGET_STROKE = 2.6
MIN_CONTRAST = 0.12  # ink must differ from the paper by this much (on a 0-1 scale)


def open_image(source: Path | bytes, name: str | None = None) -> Image.Image:
    """Open an image (a file, or the bytes of one) safely: size checked before decoding, EXIF
    orientation applied, first frame. Errors name `name` (default: the path)."""
    path = name if name is not None else str(source) if not isinstance(source, bytes) else "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
            if image.width * image.height > MAX_PIXELS:
                raise ImageTooLarge(f"{path}: image too large ({image.width}x{image.height} pixels)")
            image.seek(0)  # first frame of an animation
            image.load()
    except ImageError:
        raise
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{path}: is a folder") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not an image (or a format Pillow cannot read)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"{path}: image too large (decompression bomb protection)") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"{path}: truncated or corrupt image ({exc})") from exc
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not lose the picture
        return image


def to_grey(image: Image.Image) -> np.ndarray:
    """Any mode -> float32 grey (H, W) in [0, 1]; transparency composited onto a contrasting backdrop."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(image, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3]
        grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if alpha.min() < 0.99:
            # Strokes drawn on a transparent sheet: put them on a backdrop they stand out from.
            opaque = alpha > 0.5
            ink_level = float(grey[opaque].mean()) if opaque.any() else 0.0
            backdrop = 1.0 if ink_level < 0.5 else 0.0
            grey = grey * alpha + backdrop * (1 - alpha)
        return grey
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased resize of a float image to (width, height)."""
    img = Image.fromarray(a.astype(np.float32), mode="F")
    method = Image.Resampling.LANCZOS if size[0] < img.width else Image.Resampling.BILINEAR
    return np.asarray(img.resize(size, method), dtype=np.float32)


def _components(mask: np.ndarray, max_side: int = 64) -> np.ndarray:
    """8-connected component labels (0 = background) of a boolean mask.

    Labels spread by max-pooling on a copy no larger than `max_side`, so it takes a few
    dozen tiny steps; ink closer than the pooling factor joins one component.
    """
    h, w = mask.shape
    k = max(1, -(-max(h, w) // max_side))
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    if k > 1:
        m = F.max_pool2d(m, k, stride=k, ceil_mode=True)
    labels = torch.arange(1, m.numel() + 1, dtype=torch.float32).view(m.shape) * m
    for step in range(4 * sum(m.shape[2:])):
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * m
        if step % 4 == 3 and torch.equal(grown, labels):
            break
        labels = grown
    if k > 1:
        labels = labels.repeat_interleave(k, 2).repeat_interleave(k, 3)[..., :h, :w]
    return labels[0, 0].numpy().astype(np.int64) * mask


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=64, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    w = np.cumsum(p)
    mu = np.cumsum(p * (edges[:-1] + edges[1:]) / 2)
    between = (mu[-1] * w - mu) ** 2 / np.maximum(w * (1 - w), 1e-12)
    return float(edges[int(np.argmax(between)) + 1])


def _background(ink: np.ndarray) -> np.ndarray:
    """Slowly varying background light (uneven paper, shadows), estimated without the strokes."""
    h, w = ink.shape
    small = np.array(Image.fromarray(ink, mode="F").resize((32, 32), Image.Resampling.BOX), dtype=np.float32)
    t = torch.from_numpy(small)[None, None]
    opened = -F.max_pool2d(-t, 7, stride=1, padding=3)  # min filter: the paper between strokes
    smooth = F.avg_pool2d(F.pad(opened, (3, 3, 3, 3), mode="replicate"), 7, stride=1)
    bg = F.interpolate(smooth, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
    # Never take away more than the typical paper level: a tightly cropped digit keeps its ink.
    return np.minimum(bg, np.median(ink))


def to_mnist(image: Image.Image, object_size: int = DIGIT_SIZE) -> np.ndarray:
    """The whole pipeline on an opened image -> uint8 (28, 28), light digit on black.

    `object_size` is the longer side the object gets in the 28x28 field: 20 for handwriting
    (whose strokes are also thinned when much bolder than MNIST's), 28 for Fashion-MNIST.
    """
    grey = to_grey(image)
    h, w = grey.shape
    if min(h, w) < 3:
        raise ImageError(f"image of {w}x{h} pixels is too small to hold a digit")
    if max(h, w) > WORK_SIZE:
        scale = WORK_SIZE / max(h, w)
        grey = _resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))))
        h, w = grey.shape

    # Polarity: the border is mostly paper. Make ink light on dark, as in MNIST.
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    ink = 1.0 - grey if np.median(border) > 0.5 else grey.copy()

    ink = np.clip(ink - _background(ink), 0.0, None)
    top = float(np.percentile(ink, 99.5))
    if top < MIN_CONTRAST:
        raise ImageError("no digit found (the image is blank or has too little contrast)")
    ink = np.clip(ink / top, 0.0, 1.0)

    # Ink mask: Otsu's threshold, never below a floor that rejects paper grain and noise.
    mask = ink > max(_otsu(ink), 0.25)
    labels = _components(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    if sizes.max() < 2:
        raise ImageError("no digit found (only specks of ink)")
    # Keep the strokes: components of a fair size relative to the largest; drop specks.
    keep = np.isin(labels, np.flatnonzero(sizes >= max(2, 0.08 * sizes.max())))
    # Soft edges next to kept strokes stay (anti-aliasing); everything else is cleared.
    near = F.max_pool2d(torch.from_numpy(keep.astype(np.float32))[None, None], 3, stride=1, padding=1)[0, 0].numpy()
    ink = ink * (near > 0)

    rows, cols = np.flatnonzero(keep.any(1)), np.flatnonzero(keep.any(0))
    extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    if object_size == DIGIT_SIZE:
        ink = _thin_bold_strokes(ink, keep, extent)
    rows, cols = np.flatnonzero(ink.max(1) > 0.25), np.flatnonzero(ink.max(0) > 0.25)
    if not len(rows):
        raise ImageError("no digit found")
    crop = ink[max(0, rows[0] - 1) : rows[-1] + 2, max(0, cols[0] - 1) : cols[-1] + 2]
    return _place(crop, object_size)


def _thin_bold_strokes(ink: np.ndarray, mask: np.ndarray, extent: int) -> np.ndarray:
    """Erode strokes much bolder than MNIST's (a marker, a fat brush) back to its usual width.

    Stroke width is estimated as 2 * area / perimeter of the ink mask, in pixels of the
    final 20 px digit; MNIST strokes measure about 2-3 px that way.
    """
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    inner = -F.max_pool2d(-m, 3, stride=1, padding=1)
    perimeter = float((m - inner).sum())
    if perimeter <= 0:
        return ink
    px_per_final = extent / DIGIT_SIZE
    width = 2 * float(m.sum()) / perimeter / px_per_final
    if width <= MAX_STROKE:
        return ink
    k = 1 + 2 * round((width - TARGET_STROKE) * px_per_final / 2)
    if k < 3:
        return ink
    t = torch.from_numpy(np.ascontiguousarray(ink))[None, None]
    return (-F.max_pool2d(-t, k, stride=1, padding=k // 2))[0, 0].numpy()


def _place(crop: np.ndarray, object_size: int = DIGIT_SIZE) -> np.ndarray:
    """Scale the longer side to `object_size` px (aspect kept), then centre the mass in a 28x28 field."""
    ch, cw = crop.shape
    scale = object_size / max(ch, cw)
    nw, nh = max(1, round(cw * scale)), max(1, round(ch * scale))
    digit = np.clip(_resize(crop, (nw, nh)), 0.0, None)
    if digit.max() > 0:
        digit = np.clip(digit / np.percentile(digit[digit > 0], 98), 0.0, 1.0)
    total = digit.sum()
    if total <= 0:
        raise ImageError("no digit found")
    cy = float((digit.sum(1) * np.arange(nh)).sum() / total)
    cx = float((digit.sum(0) * np.arange(nw)).sum() / total)
    top = int(np.clip(round(FIELD / 2 - 0.5 - cy), 0, FIELD - nh))
    left = int(np.clip(round(FIELD / 2 - 0.5 - cx), 0, FIELD - nw))
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top : top + nh, left : left + nw] = digit
    return np.round(field * 255).astype(np.uint8)


def raw_input(image: Image.Image) -> np.ndarray:
    """For images already in MNIST style: grey scale and 28x28, nothing else."""
    grey = to_grey(image)
    if grey.shape != (FIELD, FIELD):
        grey = _resize(grey, (FIELD, FIELD))
    return np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8)


def load_digit(
    source: Path | bytes, raw: bool = False, object_size: int = DIGIT_SIZE, name: str | None = None
) -> np.ndarray:
    """Read an image file (or its bytes) and make the 28x28 uint8 input the network sees; ImageError
    names the file (or `name`)."""
    path = name if name is not None else str(source) if not isinstance(source, bytes) else "image"
    image = open_image(source, path)
    try:
        return raw_input(image) if raw else to_mnist(image, object_size)
    except ImageError as exc:
        if str(exc).startswith(path):
            raise
        raise ImageError(f"{path}: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read the picture ({exc})") from exc


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files as given, and the image files inside given folders (sorted)."""
    out: list[Path] = []
    for p in paths:
        if Path(p).is_dir():
            out += sorted(f for f in Path(p).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(Path(p))
    return out


# Partially downloaded images would otherwise decode silently with grey blocks.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def save_input(image: np.ndarray, path: Path) -> None:
    """Write a 28x28 uint8 network input as a PNG, so a person can see what the network saw."""
    Image.fromarray(image, mode="L").save(path)

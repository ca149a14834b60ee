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
POLARITY_MARGIN = 0.04  # how much further one side must stray from the paper to be the ink
MIN_STROKE = 1.6  # thinner strokes (a ballpoint in a large photo) are thickened to TARGET_STROKE
LINE_THICKNESS = 4  # printed lines of ruled or squared paper, in px of the working copy...
LINE_LEVEL = 0.1  # ...at least this much stronger (of the digit's ink) than the paper's grain...
LINE_SPAN = 0.85  # ...along this share of the picture, nearly edge to edge, as a pen stroke is not...
LINE_TILT = 5  # ...allowing them to drift this many px (odd) across it
LINE_MIN_SIDE = 100  # ...in pictures at least this big


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


def _background(ink: np.ndarray, tight: bool = True) -> np.ndarray:
    """Slowly varying background light (uneven paper, shadows), estimated without the strokes.

    For a picture that may be a tight crop (`tight`), never more than the typical paper level,
    so that a digit filling the frame keeps its ink; a photo's own region has paper around the
    digit and may follow its light all the way.
    """
    h, w = ink.shape
    small = np.array(Image.fromarray(ink, mode="F").resize((32, 32), Image.Resampling.BOX), dtype=np.float32)
    t = torch.from_numpy(small)[None, None]
    opened = -F.max_pool2d(-t, 7, stride=1, padding=3)  # min filter: the paper between strokes
    smooth = F.avg_pool2d(F.pad(opened, (3, 3, 3, 3), mode="replicate"), 7, stride=1)
    bg = F.interpolate(smooth, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
    return np.minimum(bg, np.median(ink)) if tight else bg


def to_mnist(image: Image.Image, object_size: int = DIGIT_SIZE) -> np.ndarray:
    """The whole pipeline on an opened image -> uint8 (28, 28), light digit on black.

    Two passes: the digit is found on a small copy of the whole picture that keeps thin strokes
    visible, then its own region is cut from the full picture and cleaned at up to WORK_SIZE px,
    so a small digit in a large photo, or a thin ballpoint line, keeps its detail.

    `object_size` is the longer side the object gets in the 28x28 field: 20 for handwriting
    (whose strokes are also brought to MNIST's width), 28 for Fashion-MNIST.
    """
    grey = to_grey(image)
    h, w = grey.shape
    if min(h, w) < 3:
        raise ImageError(f"image of {w}x{h} pixels is too small to hold a digit")
    ink = _as_ink(grey)
    if max(h, w) <= WORK_SIZE:
        region = ink
    else:
        coarse = _shrink_keeping_strokes(ink)
        _, keep = _clean(coarse, tight=False, robust=True)
        region = _region(ink, keep)
        region = _resize(region, _fit(region.shape, WORK_SIZE)) if max(region.shape) > WORK_SIZE else region
    region, keep = _clean(region, tight=max(h, w) <= WORK_SIZE)
    rows, cols = np.flatnonzero(keep.any(1)), np.flatnonzero(keep.any(0))
    extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    if object_size == DIGIT_SIZE:
        # Only photos larger than the working copy have their thin strokes thickened: there a
        # ballpoint line fades to a hairline, while a thin line drawn small was meant that way.
        region = _normalise_stroke_width(region, keep, extent, thicken=max(h, w) > WORK_SIZE)
    rows, cols = np.flatnonzero(region.max(1) > 0.25), np.flatnonzero(region.max(0) > 0.25)
    if not len(rows):
        raise ImageError("no digit found")
    crop = region[max(0, rows[0] - 1) : rows[-1] + 2, max(0, cols[0] - 1) : cols[-1] + 2]
    return _place(crop, object_size)


def _as_ink(grey: np.ndarray) -> np.ndarray:
    """Ink light on dark, as in MNIST. The border of a picture is mostly paper; the ink is whatever
    strays further from it, darker or lighter (grey paper can be darker than mid-grey and still
    carry darker ink). When neither side clearly wins, paper is the lighter one."""
    paper = float(np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])))
    t = torch.from_numpy(np.ascontiguousarray(grey))[None, None]
    smooth = F.avg_pool2d(t, 2, stride=1) if min(grey.shape) >= 2 else t  # no single noisy pixel decides
    darker, lighter = paper - float(smooth.min()), float(smooth.max()) - paper
    dark_ink = darker > lighter if abs(darker - lighter) > POLARITY_MARGIN else paper > 0.5
    return 1.0 - grey if dark_ink else grey.copy()


def _fit(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """(width, height) with the longer side `size`, aspect kept."""
    h, w = shape
    scale = size / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _shrink_keeping_strokes(ink: np.ndarray) -> np.ndarray:
    """A copy no larger than WORK_SIZE where every stroke stays visible: each pixel is the strongest
    ink of the block it stands for (an average would fade a 2-px line in a large photo to nothing)."""
    k = -(-max(ink.shape) // WORK_SIZE)
    t = torch.from_numpy(np.ascontiguousarray(ink))[None, None]
    return F.max_pool2d(t, k, stride=k, ceil_mode=True)[0, 0].numpy()


def _robust_top(ink: np.ndarray) -> float:
    """The ink level of the strongest strokes, even when they cover a tiny part of the picture:
    the highest 2x2 average (a single noisy pixel cannot set it)."""
    t = torch.from_numpy(np.ascontiguousarray(ink))[None, None]
    return float(F.avg_pool2d(t, 2, stride=1).max())


def _region(ink: np.ndarray, keep_small: np.ndarray) -> np.ndarray:
    """The part of the full picture around the strokes found on its small copy, with a margin."""
    fy, fx = ink.shape[0] / keep_small.shape[0], ink.shape[1] / keep_small.shape[1]
    rows, cols = np.flatnonzero(keep_small.any(1)), np.flatnonzero(keep_small.any(0))
    top, bottom = rows[0] * fy, (rows[-1] + 1) * fy
    left, right = cols[0] * fx, (cols[-1] + 1) * fx
    margin = 0.25 * max(bottom - top, right - left) + 2
    y0, y1 = max(0, int(top - margin)), min(ink.shape[0], int(np.ceil(bottom + margin)))
    x0, x1 = max(0, int(left - margin)), min(ink.shape[1], int(np.ceil(right + margin)))
    return ink[y0:y1, x0:x1]


def _clean(ink: np.ndarray, tight: bool = True, robust: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Background light, printed lines and specks removed: (ink scaled to 0-1, mask of the strokes kept).

    The ink is scaled by its strongest strokes: the top 0.5% of pixels, or with `robust` (a whole
    photo, where the digit may be a tiny part) the strongest 2x2 spot.
    """
    ink = np.clip(ink - _background(ink, tight), 0.0, None)
    top = _robust_top(ink) if robust else float(np.percentile(ink, 99.5))
    if top < MIN_CONTRAST:  # perhaps thin strokes, too few pixels for the percentile
        top = _robust_top(ink)
    if top < MIN_CONTRAST:
        raise ImageError("no digit found (the image is blank or has too little contrast)")
    ink = np.clip(ink / top, 0.0, 1.0)
    cleaned = _without_printed_lines(ink, fewest=1)
    # A single long thin line may be the digit itself (a tightly cropped 1): then only sets of lines go.
    ink = cleaned if _robust_top(cleaned) >= 0.5 else _without_printed_lines(ink, fewest=2)
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
    return ink * (near > 0), keep


def _without_printed_lines(ink: np.ndarray, fewest: int = 2) -> np.ndarray:
    """Ruled or squared paper: take out thin straight lines that run across the picture.

    The thin parts of the ink (what a LINE_THICKNESS px opening across a direction removes) form
    a printed line along a row (or column) when, allowing LINE_TILT px of tilt, they run along
    LINE_SPAN of it, nearly edge to edge; the digit's own strokes may cross it and stay. Only
    directions with at least `fewest` such lines lose them. Pictures smaller than LINE_MIN_SIDE
    (drawings, 28x28 crops) have none.
    """
    if min(ink.shape) < LINE_MIN_SIDE:
        return ink
    t = torch.from_numpy(np.ascontiguousarray(ink))[None, None]
    for across, axis in (((LINE_THICKNESS + 1, 1), 1), ((1, LINE_THICKNESS + 1), 0)):  # horizontal, vertical
        thin = t - _opening(t, across)  # (1, 1, H, W): what is thinner than a printed line
        # Allow for tilt across the line, and bridge the short gaps where other lines cross it.
        band = (LINE_TILT, LINE_THICKNESS + 1) if axis == 1 else (LINE_THICKNESS + 1, LINE_TILT)
        tilted = F.max_pool2d(thin, band, stride=1, padding=(band[0] // 2, band[1] // 2))[0, 0]
        reach = torch.quantile(tilted, 1 - LINE_SPAN, dim=axis)  # how strong the row is along LINE_SPAN of it
        on_line = reach >= tilted.median() + LINE_LEVEL  # rows (columns) holding a line, above the grain
        hit = on_line.numpy()
        if np.count_nonzero(hit[1:] & ~hit[:-1]) + int(hit[0]) < fewest:
            continue
        # Take away the line's own strength, with its tilt: a stroke that crosses or lies on it keeps
        # whatever ink it has beyond the line.
        level = (reach * on_line)[None, None, :, None] if axis == 1 else (reach * on_line)[None, None, None, :]
        tilt = (LINE_TILT, 1) if axis == 1 else (1, LINE_TILT)
        level = F.max_pool2d(level, tilt, stride=1, padding=(tilt[0] // 2, tilt[1] // 2))
        t = t - torch.minimum(thin, level)
    return t[0, 0].numpy()


def _opening(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Morphological opening with a flat rectangle: what of `m` the rectangle fits inside."""
    pad = (size[1] // 2, size[1] - 1 - size[1] // 2, size[0] // 2, size[0] - 1 - size[0] // 2)
    eroded = -F.max_pool2d(F.pad(-m, pad, value=-1.0), size, stride=1)
    back = (size[1] - 1 - size[1] // 2, size[1] // 2, size[0] - 1 - size[0] // 2, size[0] // 2)
    return F.max_pool2d(F.pad(eroded, back, value=0.0), size, stride=1)


def _normalise_stroke_width(ink: np.ndarray, mask: np.ndarray, extent: int, thicken: bool = True) -> np.ndarray:
    """Bring strokes much bolder (a marker, a fat brush) or much thinner (a ballpoint) than MNIST's
    to its usual width, by erosion or dilation.

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
    if width <= MAX_STROKE and (width >= MIN_STROKE or not thicken):
        return ink
    k = 1 + 2 * round(abs(width - TARGET_STROKE) * px_per_final / 2)
    if k < 3:
        return ink
    t = torch.from_numpy(np.ascontiguousarray(ink))[None, None]
    if width > MAX_STROKE:
        return (-F.max_pool2d(-t, k, stride=1, padding=k // 2))[0, 0].numpy()  # erosion
    return F.max_pool2d(t, k, stride=1, padding=k // 2)[0, 0].numpy()  # dilation


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

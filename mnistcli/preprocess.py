"""A person's picture of a digit -> a 28x28 uint8 image that looks like an MNIST sample.

MNIST digits are light ink on black, the digit's longer side scaled to 20 px (aspect
kept, anti-aliased) and placed in a 28x28 field with its centre of mass at the centre.
This module does the same to a photo, scan or drawing: EXIF orientation, transparency,
grey scale, polarity, uneven light and noise, crop, scale, centre.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from mnistcli.errors import ImageError, ImageTooLarge

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_PIXELS = 40_000_000  # refuse larger images before decoding them (decompression bombs)
# Larger pictures are decoded reduced (JPEG: at 1/2, 1/4 or 1/8 scale inside the decoder) and shrunk
# so that the longer side worked on is at most DECODE_SIDE: a digit an eighth of the picture still
# has WORK_SIZE px, and a float copy is at most 16 MB however large the file.
DECODE_SIDE = 2048
WORK_SIZE = 256  # longer side of the working copy: plenty for a 20 px result, and fast
DIGIT_SIZE = 20
FIELD = 28
MNIST_CENTRE = 14.0  # MNIST's centre of mass (pixel index): its 60,000 training digits average (14.0, 14.0)
# Stroke width as `_normalize_stroke_width` measures it (2 * area / perimeter, in px of the 20 px digit):
# on MNIST's training digits (drawn 8x larger) its 5th percentile is 1.5, median 2.1, 97.5th 3.5.
# Strokes outside that range (rounded in) are brought to TARGET_STROKE, between MNIST's median and
# its bolder strokes (the median itself, 2.1, was tried: no better on the tuning half, and 2 of 100
# white-on-black drawings fewer).
MIN_STROKE = 1.6
MAX_STROKE = 3.4
TARGET_STROKE = 2.6
MIN_CONTRAST = 0.12  # ink must differ from the paper by this much (on a 0-1 scale), or there is no digit
POLARITY_MARGIN = 0.04  # how much further one side must stray from the paper to be the ink
SPECK = 0.08  # ink less than this share of the largest stroke's is specks (dust, noise), not part of a digit
INK_FLOOR = 0.25  # of the strongest ink: the least Otsu's threshold may be (paper grain and JPEG noise stay below)
# Hysteresis (Canny 1986): ink fainter than the threshold but above 1/HYSTERESIS of it is a stroke's
# faint part when it is connected to a stroke; Canny's ratio is 2 to 3, and the faint side of a thin
# anti-aliased stroke can be a third of its strong side. Never within NOISE_SIGMAS of the paper's own
# spread, though: a Gaussian's 4 sigma is passed by 3 paper pixels in 100,000, too few to link up
# into a path from the digit through the paper.
HYSTERESIS = 3
NOISE_SIGMAS = 4
# Printed lines of ruled or squared paper (morphological line detection: what an opening across the
# line removes, running along it, NOISE_SIGMAS above the paper's grain):
LINE_THICKNESS = 4  # at most this thick, in px of the working copy (pen strokes there are bolder)...
LINE_SPAN = 0.85  # ...along this share of the picture, nearly edge to edge, as a pen stroke is not...
LINE_TILT = 5  # ...allowing them to drift this many px (odd) across it...
LINE_MIN_SIDE = 100  # ...in pictures at least this big: smaller ones are drawings, whose strokes are as thin
RULED = 3  # lines it takes to show a ruled sheet: two gaps to compare
# Bold strokes are thinned only in digits at least this many px tall or wide, twice the final 20 px:
# in a smaller one (an 8x8 scan scaled up, a 28 px drawing) a pixel of erosion takes more than half a
# final pixel off each side, and the soft edges of a scaled-up scan make its ink look bolder than the
# stroke is. Measured on the tuning half (unchanged) and the first half of the UCI digits.
MIN_EXTENT_TO_THIN = 2 * DIGIT_SIZE


def open_image(source: Path | bytes, name: str | None = None, max_side: int | None = DECODE_SIDE) -> Image.Image:
    """Open an image (a file, or the bytes of one) safely: size checked before decoding, EXIF
    orientation applied, first frame. Errors name `name` (default: the path).

    A picture whose longer side is over `max_side` comes back with that side `max_side` (None: full
    size), shrunk by box averaging before any float copy is made. A JPEG is decoded reduced already
    (grey, at 1/2, 1/4 or 1/8 of each side, inside the decoder); other formats are decoded whole in
    their own mode, at most MAX_PIXELS pixels of 1 to 4 bytes. So the memory reading a picture takes
    is bounded by its decoded pixels (a JPEG's: at most 4 max_side^2 bytes) plus a few float copies of
    max_side^2 pixels (16 MB each): measured on a 6000x6000 drawing, 0.1 GB and 0.3 s from a grey
    PNG, 0.1 GB and 0.2 s from a JPEG, 0.35 GB and 0.8 s from an RGBA PNG, the whole pipeline.
    """
    path = name if name is not None else str(source) if not isinstance(source, bytes) else "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _decoded(source, path, max_side)
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


def _decoded(source: Path | bytes, path: str, max_side: int | None) -> Image.Image:
    """The first frame, size checked before decoding, reduced as `open_image` says."""
    if _is_empty(source):
        raise ImageError(f"{path}: empty file")
    image: Image.Image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
    if image.width * image.height > MAX_PIXELS:
        raise ImageTooLarge(
            f"{path}: image too large ({image.width}x{image.height} pixels); the limit is "
            f"{MAX_PIXELS / 1e6:g} megapixels"
        )
    image.seek(0)  # first frame of an animation
    factor = -(-max(image.size) // max_side) if max_side else 1
    if factor > 1:  # JPEG only (a no-op for other formats): decode grey at 1/2, 1/4 or 1/8 scale
        image.draft("L", (max(1, image.width // factor), max(1, image.height // factor)))
    image.load()
    if max_side and max(image.size) > max_side:
        # Box averaging of grey levels (or of colours weighted by their opacity): Pillow would pick one
        # pixel of each block of a palette or bilevel picture, and a thin stroke may fall between.
        mode = _reducible_mode(image)
        image = image if image.mode == mode else image.convert(mode)
        image = image.resize(_fit((image.height, image.width), max_side), Image.Resampling.BOX)
    return image


def _reducible_mode(image: Image.Image) -> str:
    """The mode to average an image in that keeps what `to_grey` reads of it: grey, its range (I, F),
    its transparency (LA and RGBA, which Pillow averages weighted by opacity)."""
    if image.mode in ("I", "F", "LA", "RGBA"):
        return image.mode
    if image.mode.startswith("I;16"):
        return "I"
    return "RGBA" if image.mode in ("PA", "RGBa", "La") or "transparency" in image.info else "L"


def _is_empty(source: Path | bytes) -> bool:
    """Zero bytes (a file that does not exist or cannot be read is left for opening to say so)."""
    if isinstance(source, bytes):
        return not source
    try:
        return Path(source).is_file() and Path(source).stat().st_size == 0
    except OSError:
        return False


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
    """Slowly varying background light (uneven paper, shadows), estimated without the strokes: the
    least ink in a window of 7/32 of the picture, smoothed.

    For a picture that may be a tight crop (`tight`) by a bold digit, whose strokes are not under half
    the window wide (a window may then hold only ink), never more than the typical paper level, so
    that a digit filling the frame keeps its ink; otherwise (thinner strokes always leave paper in the
    window; a photo's own region has paper around the digit) it follows the light all the way.
    """
    h, w = ink.shape
    small = np.array(Image.fromarray(ink, mode="F").resize((32, 32), Image.Resampling.BOX), dtype=np.float32)
    t = torch.from_numpy(small)[None, None]
    opened = -F.max_pool2d(-t, 7, stride=1, padding=3)  # min filter: the paper between strokes
    smooth = F.avg_pool2d(F.pad(opened, (3, 3, 3, 3), mode="replicate"), 7, stride=1)
    bg = F.interpolate(smooth, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
    bold = tight and 2 * _stroke_width(ink > _otsu(ink)) >= 7 / 32 * min(h, w)
    return np.minimum(bg, np.median(ink)) if bold else bg


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
    region, lines = _digit_region(_as_ink(grey))
    cleaned = _clean(region, tight=max(h, w) <= WORK_SIZE, known=lines)
    region, keep = cleaned.ink, cleaned.sure
    strokes = keep | cleaned.faint_strokes  # the digit's extent counts its faint parts too
    rows, cols = np.flatnonzero(strokes.any(1)), np.flatnonzero(strokes.any(0))
    extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    if object_size == DIGIT_SIZE:
        # Only photos larger than the working copy have their thin strokes thickened: there a
        # ballpoint line fades to a hairline, while a thin line drawn small was meant that way.
        region = _normalize_stroke_width(region, keep, extent, thicken=max(h, w) > WORK_SIZE)
    return _place(_cropped(region, cleaned.faint_strokes & (region > 0)), object_size)


def _cropped(ink: np.ndarray, faint: np.ndarray) -> np.ndarray:
    """The digit's box, as MNIST's was of its bilevel scan: the ink above INK_FLOOR and the faint strokes
    (a faint half is part of the digit), 1 px more each side; grey levels and all, so that the soft
    edges go down to the 20 px scale and are thresholded there, if at all."""
    box = (ink > INK_FLOOR) | faint
    rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
    if not len(rows):
        raise ImageError("no digit found")
    return ink[max(0, rows[0] - 1) : rows[-1] + 2, max(0, cols[0] - 1) : cols[-1] + 2]


@dataclass(frozen=True)
class Lines:
    """Printed lines found on a picture: the centres of the horizontal ones (rows) and of the vertical
    ones (columns), in its pixels, and how far from one of them a line found again may lie."""

    rows: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cols: np.ndarray = field(default_factory=lambda: np.zeros(0))
    slack: float = 0.0

    def along(self, axis: int) -> np.ndarray:
        return self.rows if axis == 1 else self.cols


def _digit_region(ink: np.ndarray) -> tuple[np.ndarray, Lines]:
    """A small picture as it is; a larger one's digit region at up to WORK_SIZE px, found on a small
    copy of the whole picture that keeps every stroke visible, with the printed lines found there (in
    the region's pixels): the whole sheet is the evidence that a line through the digit is printed."""
    if max(ink.shape) <= WORK_SIZE:
        return ink, Lines()
    coarse, k = _shrink_keeping_strokes(ink)
    found = _clean(coarse, tight=False, robust=True)
    region, (top, left) = _region(ink, found.sure)
    full = region.shape
    if max(full) > WORK_SIZE:
        region = _resize(region, _fit(full, WORK_SIZE))
    sy, sx = region.shape[0] / full[0], region.shape[1] / full[1]
    # A line at coarse pixel c lies within full pixels [c k, (c + 1) k): found again within k/2 of its
    # middle, and the tilt's allowance either side.
    slack = (k / 2 + LINE_TILT // 2) * max(sy, sx)
    rows, cols = ((found.lines.rows + 0.5) * k - top) * sy, ((found.lines.cols + 0.5) * k - left) * sx
    return region, Lines(rows, cols, slack)


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


def _shrink_keeping_strokes(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """A copy no larger than WORK_SIZE where every stroke stays visible, and its factor: each pixel is the
    strongest ink of the k x k block it stands for (an average would fade a 2-px line in a large photo
    to nothing)."""
    k = -(-max(ink.shape) // WORK_SIZE)
    t = torch.from_numpy(np.ascontiguousarray(ink))[None, None]
    return F.max_pool2d(t, k, stride=k, ceil_mode=True)[0, 0].numpy(), k


def _robust_top(ink: np.ndarray) -> float:
    """The ink level of the strongest strokes, even when they cover a tiny part of the picture:
    the highest 2x2 average (a single noisy pixel cannot set it; a strip 1 px wide takes 1x2)."""
    t = torch.from_numpy(np.ascontiguousarray(ink))[None, None]
    return float(F.avg_pool2d(t, (min(2, ink.shape[0]), min(2, ink.shape[1])), stride=1).max())


def _region(ink: np.ndarray, keep_small: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of the full picture around the strokes found on its small copy, with a margin, and
    where it starts (top, left)."""
    fy, fx = ink.shape[0] / keep_small.shape[0], ink.shape[1] / keep_small.shape[1]
    rows, cols = np.flatnonzero(keep_small.any(1)), np.flatnonzero(keep_small.any(0))
    top, bottom = rows[0] * fy, (rows[-1] + 1) * fy
    left, right = cols[0] * fx, (cols[-1] + 1) * fx
    margin = 0.25 * max(bottom - top, right - left) + 2
    y0, y1 = max(0, int(top - margin)), min(ink.shape[0], int(np.ceil(bottom + margin)))
    x0, x1 = max(0, int(left - margin)), min(ink.shape[1], int(np.ceil(right + margin)))
    return ink[y0:y1, x0:x1], (y0, x0)


@dataclass
class _Cleaned:
    """A picture cleaned: its ink (0-1), the masks of the strokes' sure ink and of their faint parts
    (fainter ink connected to them, more than the soft edge beside them), and the printed lines found."""

    ink: np.ndarray
    sure: np.ndarray
    faint_strokes: np.ndarray
    lines: Lines


def _clean(ink: np.ndarray, tight: bool = True, robust: bool = False, known: Lines | None = None) -> _Cleaned:
    """Background light, printed lines and specks removed. Nothing connected to the strokes is cleared,
    and the soft edge beside them stays with its grey levels (anti-aliasing); everything else is."""
    ink, grey_level = _flattened(ink, tight, robust)
    ink, lines = _printed_lines(ink, known, grey_level)
    sure, whole = _strokes(ink)
    # The soft edge: 2 px beside the sure ink, as far as a stroke's anti-aliasing and blur reach.
    faint = whole & ~(_dilate(sure, 5) > 0)
    return _Cleaned(ink * (_dilate(whole, 3) > 0), sure, faint, lines)


def _flattened(ink: np.ndarray, tight: bool, robust: bool) -> tuple[np.ndarray, float]:
    """Ink above the background light, scaled by its strongest strokes: the top 0.5% of pixels, or with
    `robust` (a whole photo, where the digit may be a tiny part) the strongest 2x2 spot; and what one
    grey level of an 8-bit picture becomes on that scale (the finest difference it can show)."""
    ink = np.clip(ink - _background(ink, tight), 0.0, None)
    top = _robust_top(ink) if robust else float(np.percentile(ink, 99.5))
    if top < MIN_CONTRAST:  # perhaps thin strokes, too few pixels for the percentile
        top = _robust_top(ink)
    if top < MIN_CONTRAST:
        raise ImageError("no digit found (the image is blank or has too little contrast)")
    return np.clip(ink / top, 0.0, 1.0), 1 / 255 / top


def _ink_level(ink: np.ndarray) -> float:
    """What is surely ink: above Otsu's threshold, and never below INK_FLOOR."""
    return max(_otsu(ink), INK_FLOOR)


def _strokes(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The masks of the digit's sure ink and of its whole strokes: hysteresis (the fainter ink that is
    connected to sure ink belongs to it), keeping the connected pieces with sure ink whose ink is a
    fair share of the piece with most (specks dropped). Hysteresis runs along strokes, not over areas:
    faint ink broader than twice the strokes' width (shading, light the background estimate left) is
    no stroke's faint part."""
    level = _ink_level(ink)
    sure = ink > level
    faint = (ink > max(level / HYSTERESIS, _noise_ceiling(ink[~sure]))) & ~sure
    if (faint & ~(_dilate(sure, 3) > 0)).any():  # more than the soft edge beside the sure ink
        k = 1 + 2 * max(1, round(_stroke_width(sure)))
        faint &= ~(_opening(torch.from_numpy(faint.astype(np.float32))[None, None], (k, k))[0, 0].numpy() > 0)
    labels = _components(sure | faint)
    count = int(labels.max()) + 1
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count)
    mass[np.bincount(labels[sure], minlength=count) < 2] = 0  # no sure ink (and the background, label 0)
    if mass.max() <= 0:
        raise ImageError("no digit found (only specks of ink)")
    whole = np.isin(labels, np.flatnonzero(mass >= SPECK * mass.max()))
    return sure & whole, whole


def _noise_ceiling(paper: np.ndarray, floor: float = 0.0) -> float:
    """The paper's level plus NOISE_SIGMAS of its spread (the median absolute deviation, scaled to a
    Gaussian's sigma: robust to the faint ink among the paper's pixels), the spread at least `floor`."""
    if not paper.size:
        return 0.0
    return float(np.median(paper)) + NOISE_SIGMAS * _spread(paper, floor)


def _dilate(mask: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return _max_filter(t, (size, size), pad_value=0.0, centre=True)[0, 0].numpy()


def _without_printed_lines(ink: np.ndarray, known: Lines | None = None) -> np.ndarray:
    """`ink` with the printed lines of ruled or squared paper taken out (see `_printed_lines`)."""
    return _printed_lines(ink, known)[0]


def _printed_lines(
    ink: np.ndarray, known: Lines | None = None, grey_level: float = 1 / 255
) -> tuple[np.ndarray, Lines]:
    """Ruled or squared paper: take out the thin straight lines that run across the picture when the
    evidence says they are printed, and say where they were.

    A line is thin ink (what a LINE_THICKNESS px opening across it removes) running along LINE_SPAN of
    a row (or column), allowing LINE_TILT px of tilt. It is printed when it is one of the lines `known`
    from the whole sheet; or one of RULED or more such lines at a regular spacing of which one at least
    runs clear of the digit (the sheet extends beyond it); or, alone, when other ink remains (it is not
    a tightly cropped 1) and the line is clear of it (a margin line), or on a sheet ruled the other way
    reaches past it at both ends by as much again (a margin line through the digit). A line that the
    rest of the digit touches (a 4's long stem, on plain paper) is the digit's own stroke. Printed
    lines lose their own strength only: a stroke that crosses one keeps whatever ink it has beyond the
    line's. Pictures smaller than LINE_MIN_SIDE have none, unless `known`.
    """
    known = known or Lines()
    if min(ink.shape) < LINE_MIN_SIDE and not (len(known.rows) or len(known.cols)):
        return ink, Lines()
    t = torch.from_numpy(np.ascontiguousarray(ink))[None, None]
    found = {axis: _line_candidates(t, axis, grey_level) for axis in (1, 0)}
    sure = ink > _ink_level(ink)
    ruled: dict[int, list[tuple[int, int]]] = {}
    for axis in (1, 0):
        # Each direction found again once the other's lines are out, or their crossings would stay.
        if axis == 0 and ruled[1]:
            found[0] = _line_candidates(t, 0, grey_level)
        ruled[axis] = _ruled(found[axis], found[1 - axis].runs, axis, known, sure)
        t = _take_out(t, found[axis], ruled[axis], axis)
    sure = t[0, 0].numpy() > _ink_level(ink)
    # A lone line on a ruled sheet (a margin line across the ruling) may cross the digit and still be
    # printed; on plain paper only one clear of the digit is.
    alone = {
        axis: [r for r in found[axis].runs if r not in ruled[axis] and _apart(sure, r, axis, bool(ruled[1 - axis]))]
        for axis in (1, 0)
    }
    for axis, lines in alone.items():
        t = _take_out(t, found[axis], lines, axis)
    taken = {axis: [r for r in found[axis].runs if r in ruled[axis] or r in alone[axis]] for axis in (1, 0)}
    return t[0, 0].numpy(), Lines(_middles(taken[1]), _middles(taken[0]))


@dataclass
class _Candidates:
    """Lines along one direction: the thin ink, the same widened by the tilt, its strength along LINE_SPAN
    of each row (column), the runs of rows (start, stop) where that stands out of the paper's grain,
    and one grey level on the ink's scale."""

    thin: torch.Tensor
    tilted: torch.Tensor
    reach: torch.Tensor
    runs: list[tuple[int, int]]
    grey_level: float

    def strength(self, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A line's own strength along each row (column), and the most its own ink reaches: the median
        of its thin ink where the line is (above half its reach, not the gaps where strokes cross it),
        and that plus NOISE_SIGMAS of its spread (at least a grey level)."""
        on = self.tilted > self.reach.unsqueeze(axis) / 2
        along = torch.where(on, self.tilted, torch.nan)
        middle = torch.nanmedian(along, dim=axis).values.nan_to_num(0.0)
        spread = 1.4826 * torch.nanmedian((along - middle.unsqueeze(axis)).abs(), dim=axis).values.nan_to_num(0.0)
        return middle, middle + NOISE_SIGMAS * torch.clamp(spread, min=self.grey_level)


def _line_candidates(t: torch.Tensor, axis: int, grey_level: float) -> _Candidates:
    across = (LINE_THICKNESS + 1, 1) if axis == 1 else (1, LINE_THICKNESS + 1)
    # (1, 1, H, W): what is thinner than a printed line; at the edge a line is as thin as it looks.
    thin = t - _opening(t, across, outside=0.0)
    # Allow for tilt across the line, and bridge the short gaps where other lines cross it.
    band = (LINE_TILT, LINE_THICKNESS + 1) if axis == 1 else (LINE_THICKNESS + 1, LINE_TILT)
    tilted = _max_filter(thin, band, pad_value=-torch.inf, centre=True)[0, 0]
    reach = torch.quantile(tilted, 1 - LINE_SPAN, dim=axis)  # how strong the row is along LINE_SPAN of it
    hit = _standing_out(reach.numpy(), grey_level)  # rows (columns) holding a line
    edges = np.flatnonzero(np.diff(np.concatenate([[0], hit.astype(np.int8), [0]])))
    return _Candidates(thin, tilted, reach, list(zip(edges[::2].tolist(), edges[1::2].tolist())), grey_level)


def _standing_out(values: np.ndarray, grey_level: float) -> np.ndarray:
    """Which values stand out of the rest: Otsu's split of them into two groups, kept when the upper
    group's middle lies NOISE_SIGMAS of the lower one's spread (at least a grey level) above the lower
    one's noise ceiling, so that the paper's grain, split in two, is not."""
    order = np.sort(values)
    n = len(order)
    if n < 2:
        return np.zeros(n, dtype=bool)
    k = np.arange(1, n)
    low_sum = np.cumsum(order)[:-1]
    high_mean = (order.sum() - low_sum) / (n - k)
    between = k * (n - k) * (low_sum / k - high_mean) ** 2  # n^2 times the between-class variance
    split = int(np.argmax(between)) + 1
    low, high = order[:split], order[split:]
    ceiling = _noise_ceiling(low, floor=grey_level)
    if np.median(high) < ceiling + NOISE_SIGMAS * _spread(low, grey_level):
        return np.zeros(n, dtype=bool)
    return values > max(float(low[-1]), ceiling)


def _spread(values: np.ndarray, floor: float) -> float:
    """A Gaussian's sigma from the median absolute deviation, at least `floor`."""
    return max(floor, 1.4826 * float(np.median(np.abs(values - np.median(values)))))


def _ruled(
    found: _Candidates, across: list[tuple[int, int]], axis: int, known: Lines, sure: np.ndarray
) -> list[tuple[int, int]]:
    """The lines along `axis` that belong to a ruled sheet (see `_printed_lines`); `across`, the lines
    found the other way."""
    runs = found.runs
    middles = _middles(runs)
    again = known.along(axis)
    on_known = [r for r, m in zip(runs, middles) if len(again) and np.abs(again - m).min() <= known.slack]
    if len(runs) < RULED or not _regular(middles) or min(sure.shape) < LINE_MIN_SIDE:
        return on_known
    # Whether a line runs clear of the digit is judged without the lines across it (a margin line
    # crosses every ruled line).
    others = sure.copy()
    for run in across:
        _band(others, run, 1 - axis)[...] = False
    return runs if any(_clear(others, r, axis) for r in runs) else on_known


def _regular(middles: np.ndarray) -> bool:
    """Lines at a regular spacing: each gap a whole number of the typical one (a line hidden where the
    digit covers it leaves a double gap), to within a quarter of it (a sheet photographed at an angle
    has its lines drift apart slowly; a digit's strokes lie anyhow)."""
    gaps = np.diff(middles)
    spacing = float(np.median(gaps))
    steps = np.maximum(1, np.round(gaps / spacing))
    return bool(np.all(np.abs(gaps - steps * spacing) <= spacing / 4))


def _band(a: np.ndarray, run: tuple[int, int], axis: int, pad: int = LINE_TILT // 2) -> np.ndarray:
    """The rows (axis 1) or columns (axis 0) of a line, `pad` more on each side: a view of `a`."""
    lo, hi = max(0, run[0] - pad), run[1] + pad
    return a[lo:hi] if axis == 1 else a[:, lo:hi]


def _clear(sure: np.ndarray, run: tuple[int, int], axis: int) -> bool:
    """Whether no stroke touches a line: no sure ink in the two rows (columns) beside its band on either
    side, past its tilt. A stroke 2 px wide crossing them leaves 4 px; fewer is a speck."""
    lo, hi = run[0] - LINE_TILT // 2, run[1] + LINE_TILT // 2
    beside = [i for i in (lo - 2, lo - 1, hi, hi + 1) if 0 <= i < sure.shape[0 if axis == 1 else 1]]
    ink = sure[beside].sum() if axis == 1 else sure[:, beside].sum()
    return int(ink) < 4


def _apart(sure: np.ndarray, run: tuple[int, int], axis: int, ruled_across: bool) -> bool:
    """Whether a lone line is apart from a digit: there is other ink, more than specks of it (it is not
    a tightly cropped 1), and the line is clear of it, or, `ruled_across` the other way, reaches past
    it at both ends by at least its size (a margin line through a digit, where a 7's bar spans its
    stem's length and a 4's stem its bar's)."""
    others = sure.copy()
    _band(others, run, axis)[...] = False
    if others.sum() < SPECK * (sure.sum() - others.sum()):
        return False
    if _clear(sure, run, axis):
        return True
    if not ruled_across:
        return False
    ys, xs = np.nonzero(others)
    (y_lo, y_hi), (x_lo, x_hi) = np.percentile(ys, [1, 99]), np.percentile(xs, [1, 99])  # a far speck aside
    size = max(y_hi - y_lo, x_hi - x_lo) + 1
    lo, hi, length = (x_lo, x_hi, sure.shape[1]) if axis == 1 else (y_lo, y_hi, sure.shape[0])
    return bool(lo >= size and length - 1 - hi >= size)


def _take_out(t: torch.Tensor, found: _Candidates, lines: list[tuple[int, int]], axis: int) -> torch.Tensor:
    """`t` less the lines' own strength, with their tilt, where the ink is no more than the line's own
    reaches: a stroke stronger than that, crossing a line, lying on it or beside it within its tilt,
    stays whole; a fainter one keeps whatever ink it has beyond the line's."""
    if not lines:
        return t
    on = torch.zeros_like(found.reach, dtype=torch.bool)
    for a, b in lines:
        on[a:b] = True
    tilt = (LINE_TILT, 1) if axis == 1 else (1, LINE_TILT)
    level, most = (
        F.max_pool2d(
            (v * on)[None, None, :, None] if axis == 1 else (v * on)[None, None, None, :],
            tilt,
            stride=1,
            padding=(tilt[0] // 2, tilt[1] // 2),
        )
        for v in found.strength(axis)
    )
    own = torch.where(found.thin <= most, torch.minimum(found.thin, level), 0.0)
    return torch.clamp(t - own, min=0.0)


def _middles(runs: list[tuple[int, int]]) -> np.ndarray:
    return np.array([(a + b - 1) / 2 for a, b in runs], dtype=np.float64)


def _opening(m: torch.Tensor, size: tuple[int, int], outside: float = 1.0) -> torch.Tensor:
    """Morphological opening with a flat rectangle: what of `m` the rectangle fits inside, taking the
    picture to go on beyond its edges at `outside` (1: as much ink as any; 0: none). A rectangle's
    minimum and maximum filters are each a row's then a column's, which is what keeps a large one fast."""
    eroded = -_max_filter(-m, size, pad_value=-outside, centre=True)
    return _max_filter(eroded, size, pad_value=0.0, centre=False)


def _max_filter(m: torch.Tensor, size: tuple[int, int], pad_value: float, centre: bool) -> torch.Tensor:
    """The maximum over a rectangle, one axis at a time: anchored at its centre, or (`centre` False) at
    the mirror point, so that a dilation undoes an erosion's offset for even sizes."""
    for axis, k in ((3, size[1]), (2, size[0])):
        if k > 1:
            before = k // 2 if centre else k - 1 - k // 2
            pad = (before, k - 1 - before, 0, 0) if axis == 3 else (0, 0, before, k - 1 - before)
            kernel = (1, k) if axis == 3 else (k, 1)
            m = F.max_pool2d(F.pad(m, pad, value=pad_value), kernel, stride=1)
    return m


def _stroke_width(mask: np.ndarray) -> float:
    """The strokes' width in px: 2 * area / perimeter of their mask (0 for none)."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    inner = -F.max_pool2d(-m, 3, stride=1, padding=1)
    perimeter = float((m - inner).sum())
    return 2 * float(m.sum()) / perimeter if perimeter > 0 else 0.0


def _normalize_stroke_width(ink: np.ndarray, mask: np.ndarray, extent: int, thicken: bool = True) -> np.ndarray:
    """Bring strokes much bolder (a marker, a fat brush) or much thinner (a ballpoint) than MNIST's
    to its usual width, by erosion or dilation.

    Stroke width is estimated as 2 * area / perimeter of the ink mask, in pixels of the
    final 20 px digit; MNIST strokes measure about 2-3 px that way.
    """
    px_per_final = extent / DIGIT_SIZE
    width = _stroke_width(mask) / px_per_final
    if not width:
        return ink
    if width <= MAX_STROKE and (width >= MIN_STROKE or not thicken):
        return ink
    if width > MAX_STROKE and extent < MIN_EXTENT_TO_THIN:
        return ink
    k = 1 + 2 * round(abs(width - TARGET_STROKE) * px_per_final / 2)
    if k < 3:
        return ink
    t = torch.from_numpy(np.ascontiguousarray(ink))[None, None]
    if width > MAX_STROKE:
        return -_max_filter(-t, (k, k), pad_value=-torch.inf, centre=True)[0, 0].numpy()  # erosion
    return _max_filter(t, (k, k), pad_value=-torch.inf, centre=True)[0, 0].numpy()  # dilation


def _place(crop: np.ndarray, object_size: int = DIGIT_SIZE) -> np.ndarray:
    """Scale the longer side to `object_size` px (aspect kept), then put its centre of mass on MNIST's
    in a 28x28 field, to the nearest pixel as MNIST did (moved in only where it would leave the field)."""
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
    top = int(np.clip(round(MNIST_CENTRE - cy), 0, FIELD - nh))
    left = int(np.clip(round(MNIST_CENTRE - cx), 0, FIELD - nw))
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top : top + nh, left : left + nw] = digit
    return np.round(field * 255).astype(np.uint8)


def as_mnist_input(image: Image.Image) -> np.ndarray:
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
        return as_mnist_input(image) if raw else to_mnist(image, object_size)
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

"""Augmentation done on whole batches of tensors on the training device (never per image in PIL).

Images arrive normalised, (B, 1, H, W); `background` is the value of a blank pixel there
(-mean / std), so whatever moves into view is blank paper, not grey.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

ELASTIC_SIGMA = 4.0  # smoothness of elastic distortions, in pixels (Simard et al. 2003)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator, background: float) -> torch.Tensor:
    """Shift each image of a batch (B, 1, H, W) by its own random -max..max whole pixels in x and y."""
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s), value=background)  # (B, 1, H+2s, W+2s)
    shifts = torch.randint(0, 2 * s + 1, (2, b), generator=generator).to(x.device)
    rows = shifts[0, :, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = shifts[1, :, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@dataclass(frozen=True)
class Distortion:
    """How far each image may be distorted: the ways people write differently from MNIST's writers."""

    rotate: float = 0.0  # degrees either way
    scale: float = 0.0  # fraction either way
    shear: float = 0.0  # degrees either way
    elastic: float = 0.0  # strength of a smooth random displacement field (alpha, in pixels)
    stroke: float = 0.0  # share of images whose strokes get bolder or thinner

    @property
    def geometric(self) -> bool:
        return bool(self.rotate or self.scale or self.shear or self.elastic)


def distort(x: torch.Tensor, d: Distortion, generator: torch.Generator, background: float) -> torch.Tensor:
    """Stroke width, then one resampling for rotation, scale, shear and elastic distortion together."""
    if d.stroke:
        x = random_stroke_width(x, d.stroke, generator)
    if d.geometric:
        grid = affine_grid(x.shape[0], x.shape[-2:], d, generator, x.device)  # (B, H, W, 2)
        if d.elastic:
            grid = grid + elastic_field(x.shape[0], x.shape[-2:], d.elastic, generator, x.device)
        moved = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = (moved + background).contiguous(memory_format=torch.channels_last)
    return x


def _uniform(n: int, limit: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * 2 - 1) * limit


def affine_grid(
    b: int, size: torch.Size, d: Distortion, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Sampling grids (B, H, W, 2) of a random rotation, scale and shear per image, about the centre."""
    angle = _uniform(b, math.radians(d.rotate), generator)
    shear = _uniform(b, math.radians(d.shear), generator)
    zoom = 1 + _uniform(b, d.scale, generator)
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    theta = torch.zeros(b, 2, 3)
    # rotation @ shear, divided by the zoom: the grid says where each output pixel reads from.
    theta[:, 0, 0], theta[:, 0, 1] = cos / zoom, (cos * tan - sin) / zoom
    theta[:, 1, 0], theta[:, 1, 1] = sin / zoom, (sin * tan + cos) / zoom
    return F.affine_grid(theta.to(device), [b, 1, *size], align_corners=False)


def elastic_field(
    b: int, size: torch.Size, alpha: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Simard's elastic distortion: uniform noise in -1..1, smoothed by a Gaussian of ELASTIC_SIGMA px,
    times alpha px; returned in grid units (B, H, W, 2)."""
    h, w = size
    noise = (torch.rand(b, 2, h, w, generator=generator) * 2 - 1).to(device)
    radius = int(2 * ELASTIC_SIGMA)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / ELASTIC_SIGMA) ** 2)
    taps = (taps / taps.sum()).to(device)
    across, down = taps.view(1, 1, 1, -1).expand(2, 1, 1, -1), taps.view(1, 1, -1, 1).expand(2, 1, -1, 1)
    smooth = F.conv2d(F.pad(noise, (radius, radius, 0, 0), mode="reflect"), across, groups=2)  # dx, dy apart
    smooth = F.conv2d(F.pad(smooth, (0, 0, radius, radius), mode="reflect"), down, groups=2)
    pixels_to_grid = torch.tensor([2.0 / w, 2.0 / h], device=device)  # align_corners=False: 2 units span the image
    return smooth.permute(0, 2, 3, 1) * alpha * pixels_to_grid


def random_stroke_width(x: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """Make the strokes of a random `share` of the images bolder (half of them) or thinner (the other
    half) by a random amount: a blend towards a 3x3 dilation (up to a pixel on each side) or half way
    towards an erosion."""
    b = x.shape[0]
    pick = torch.rand(b, generator=generator)
    amount = torch.rand(b, generator=generator).to(x.device).view(b, 1, 1, 1)
    bolder = (pick < share / 2).to(x.device).view(b, 1, 1, 1)
    thinner = ((pick >= share / 2) & (pick < share)).to(x.device).view(b, 1, 1, 1)
    dilated, thinned = bolder_and_thinner(x)
    target = torch.where(bolder, dilated, torch.where(thinner, thinned, x))
    return (x + amount * (target - x)).contiguous(memory_format=torch.channels_last)


def bolder_and_thinner(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The boldest and thinnest strokes the stroke changes go to (B, C, H, W): a 3x3 dilation, and half
    way towards an erosion (a full erosion wipes out MNIST's thinnest strokes)."""
    return dilate3(x), x + 0.5 * (-dilate3(-x) - x)


def dilate3(x: torch.Tensor) -> torch.Tensor:
    """3x3 grey dilation (B, C, H, W), as max_pool2d(x, 3, stride=1, padding=1) gives it, but as
    shifted maxima: about 13x faster on a CPU for MNIST-sized batches."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    rows = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


# Slightly changed copies of a picture, to ask whether an answer holds ------------------------------
VIEW_TURN = 10.0  # degrees either way


def views(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, H, W) and eight slightly changed copies of each, as another crop, camera or pen
    might have given them: moved a pixel up, down, left and right; turned VIEW_TURN degrees either way;
    strokes bolder (a 3x3 dilation) and thinner (half way to an erosion). (9, N, H, W) uint8, the
    pictures themselves first."""
    p = images.unsqueeze(1).float()  # (N, 1, H, W), blank is 0
    n, _, h, w = p.shape
    padded = F.pad(p, (1, 1, 1, 1))
    moved = [padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    turned = []
    for degrees in (-VIEW_TURN, VIEW_TURN):
        a = math.radians(degrees)
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
        grid = F.affine_grid(theta.expand(n, 2, 3).to(p.device), [n, 1, h, w], align_corners=False)
        turned.append(F.grid_sample(p, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    out = torch.stack([p, *moved, *turned, *bolder_and_thinner(p)])[:, :, 0]
    return out.round().clamp(0, 255).to(torch.uint8)


# What pictures do to digits beyond the pen: paper, light, the camera, stray marks ------------------
@dataclass(frozen=True)
class Surroundings:
    """The share of images that get each change of their surroundings (0 = none). These are the ways
    a digit's picture differs from MNIST's clean black field; each is drawn fresh for every image."""

    paper: float = 0.0  # grey paper, low contrast, uneven light (a smooth haze over the picture)
    noise: float = 0.0  # sensor grain: Gaussian noise, or specks of salt and pepper
    blur: float = 0.0  # out of focus or shaken: a blur of random size, shape and direction
    marks: float = 0.0  # stray pen strokes, solid or dashed, and bands of the other polarity
    outline: float = 0.0  # the strokes drawn as outlines (hollow letters, an edge map)
    lowres: float = 0.0  # seen at a low resolution: a small scan or a distant camera, scaled up again

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def scaled(self, factor: float) -> Surroundings:
        """The same changes, `factor` times as often."""
        return Surroundings(*(factor * getattr(self, f.name) for f in fields(self)))


def surround(images: torch.Tensor, s: Surroundings, generator: torch.Generator, chunk: int = 4096) -> torch.Tensor:
    """Apply `s` to uint8 images (N, H, W), each change to its own random share of them; uint8 back.

    A training run does this once per epoch to the epoch's images, in chunks of thousands: on a CPU
    the same changes made batch by batch cost several times more (each small operation has its
    overhead). Each image's draws follow the generator, so an epoch is made again exactly on resume.
    """
    if not s.any or not len(images):
        return images
    out = torch.empty_like(images)
    for lo in range(0, len(images), chunk):
        p = images[lo : lo + chunk].unsqueeze(1).float() / 255  # pixel values, 0 (blank) to 1 (ink)
        out[lo : lo + chunk] = (surround_pixels(p, s, generator) * 255).round().to(torch.uint8)[:, 0]
    return out


def surround_pixels(p: torch.Tensor, s: Surroundings, generator: torch.Generator) -> torch.Tensor:
    """`s` on pixel values (B, 1, H, W) in [0, 1], in the order a picture is made: how the digit is
    drawn, marks beside it, the camera, the paper, the sensor."""
    for share, change in (
        (s.outline, _outline),
        (s.marks, _marks),
        (s.lowres, _lowres),
        (s.blur, _blur),
        (s.paper, _paper),
        (s.noise, _noise),
    ):
        if share:
            chosen = torch.nonzero(torch.rand(p.shape[0], generator=generator) < share).flatten().to(p.device)
            if len(chosen):  # only the chosen images are changed
                p = p.index_copy(0, chosen, change(p.index_select(0, chosen), generator).clamp(0, 1))
    return p


def _rand(generator: torch.Generator, b: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    """(B, 1, 1, 1) uniform draws in [low, high)."""
    return (low + (high - low) * torch.rand(b, generator=generator)).to(device).view(b, 1, 1, 1)


def _outline(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Strokes as their outline, as an edge detector draws them: the rim (3x3 dilation less erosion) of the
    strokes made one or two pixels bolder first, so that the outline is hollow; as bright as the ink."""
    bold = dilate3(p)
    bold = torch.where(_rand(generator, p.shape[0], 0, 1, p.device) < 0.5, dilate3(bold), bold)
    return (2 * (bold + dilate3(-bold))).clamp(0, 1)


def _marks(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A stray stroke (a straight line, a dashed one, or a zigzag) across the picture, or a band along
    one side where dark and light are swapped (a fold, a strip of other paper)."""
    b, _, h, w = p.shape
    band = _rand(generator, b, 0, 1, p.device) < 0.3
    return torch.where(band, _swapped_band(p, generator), torch.maximum(p, _stray_line(b, h, w, generator, p.device)))


def _stray_line(b: int, h: int, w: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B, 1, H, W) ink of one line each from edge to edge at a random height and slope, 1-2 px wide,
    solid, dashed or zigzagging, at a random strength."""
    cols = torch.arange(w, dtype=torch.float32, device=device).view(1, 1, 1, w)
    rows = torch.arange(h, dtype=torch.float32, device=device).view(1, 1, h, 1)
    start, slope = _rand(generator, b, 0, h, device), _rand(generator, b, -0.4, 0.4, device)
    zig = (_rand(generator, b, 0, 1, device) < 0.3) * _rand(generator, b, 1, 3, device)
    period = _rand(generator, b, 3, 6, device)
    centre = start + slope * (cols - w / 2) + zig * (2 * torch.abs((cols / period) % 2 - 1) - 1)
    width = _rand(generator, b, 0.5, 1.2, device)
    ink = (1 - (torch.abs(rows - centre) - width).clamp(min=0)).clamp(0, 1)
    dashed = _rand(generator, b, 0, 1, device) < 0.4
    gaps = ((cols + _rand(generator, b, 0, 4, device)) % 4) < 2
    ink = torch.where(dashed & gaps, torch.zeros_like(ink), ink)
    return ink * _rand(generator, b, 0.5, 1, device)


def _swapped_band(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Dark and light swapped in a band of 3-9 px along one of the four sides, or both opposite sides."""
    b, _, h, w = p.shape
    cols = torch.arange(w, device=p.device).view(1, 1, 1, w).float()
    rows = torch.arange(h, device=p.device).view(1, 1, h, 1).float()
    across = _rand(generator, b, 0, 1, p.device) < 0.5
    at = torch.where(across, cols, rows)  # (B, 1, H, W): position along the band's axis
    size = torch.where(across, torch.full_like(at, w), torch.full_like(at, h))
    width = _rand(generator, b, 3, 9, p.device)
    side = _rand(generator, b, 0, 3, p.device).floor()  # 0: start, 1: end, 2: both
    near = (at < width) & (side != 1)
    far = (at >= size - width) & (side != 0)
    return torch.where(near | far, 1 - p, p)


# The sides a digit's 28x28 picture is reduced to by _lowres: MNIST's digits fill 20 of the 28 pixels,
# so these put 6 to 10 samples across the digit, as an 8x8 scan of a whole digit (the UCI digits) or a
# digit a few dozen pixels tall in a photo has.
LOWRES_SIDES = (8, 9, 10, 11, 12, 14)


def _lowres(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image reduced to one of LOWRES_SIDES by area averaging (what a sensor's pixels do), scaled
    back up with bilinear interpolation (what a viewer or a resize does), and its ink brought back to
    the strength it had (averaging dims thin strokes; `predict` stretches a picture's contrast so)."""
    b, _, h, w = p.shape
    pick = torch.randint(0, len(LOWRES_SIDES), (b,), generator=generator).to(p.device)
    out = p
    for i, side in enumerate(LOWRES_SIDES):
        chosen = pick == i
        if chosen.any():
            small = F.interpolate(p[chosen], size=(side, side), mode="area")
            out = out.index_put((chosen,), F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False))
    peak = lambda t: t.amax(dim=(2, 3), keepdim=True)  # noqa: E731
    return out * (peak(p) / peak(out).clamp(min=1e-6))


def _blur(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A blur of its own for each image: a Gaussian of random size, stretched along a random direction
    (out of focus, or shaken), after jitter that moves single pixels (frosted glass) in some."""
    b = p.shape[0]
    jitter = _rand(generator, b, 0, 1, p.device) < 0.3
    p = torch.where(jitter, _jittered(p, generator), p)
    k = 9
    r = torch.arange(k, dtype=torch.float32, device=p.device) - k // 2
    yy, xx = r.view(1, k, 1), r.view(1, 1, k)
    angle = _rand(generator, b, 0, math.pi, p.device).view(b, 1, 1)
    along = _rand(generator, b, 0.4, 2.5, p.device).view(b, 1, 1)
    across = _rand(generator, b, 0.3, 1.0, p.device).view(b, 1, 1)
    u = xx * torch.cos(angle) + yy * torch.sin(angle)
    v = -xx * torch.sin(angle) + yy * torch.cos(angle)
    kernel = torch.exp(-0.5 * ((u / along) ** 2 + (v / across) ** 2))
    kernel = (kernel / kernel.sum(dim=(1, 2), keepdim=True)).unsqueeze(1)  # (B, 1, k, k)
    padded = F.pad(p.reshape(1, b, *p.shape[-2:]), (k // 2,) * 4, mode="replicate")  # each image a channel
    return F.conv2d(padded, kernel, groups=b).reshape(p.shape)


def _jittered(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each pixel taken from a random neighbour up to a pixel away."""
    b, _, h, w = p.shape
    offsets = torch.randint(-1, 2, (2, b, h, w), generator=generator).to(p.device)
    rows = (torch.arange(h, device=p.device).view(1, h, 1) + offsets[0]).clamp(0, h - 1)
    cols = (torch.arange(w, device=p.device).view(1, 1, w) + offsets[1]).clamp(0, w - 1)
    batch = torch.arange(b, device=p.device).view(b, 1, 1)
    return p[batch, 0, rows, cols].unsqueeze(1)


def _paper(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Grey or unevenly lit paper: the ink at a random contrast over a random background level, mixed
    with a smooth haze (random light at three scales)."""
    b, _, h, w = p.shape
    level, contrast = _rand(generator, b, 0, 0.6, p.device), _rand(generator, b, 0.3, 1, p.device)
    lit = level + contrast * p
    haze = torch.zeros_like(p)
    for cells, weight in ((2, 1.0), (4, 0.5), (8, 0.25)):
        noise = torch.rand(b, 1, cells, cells, generator=generator).to(p.device)
        haze = haze + weight * F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)
    lo = haze.amin(dim=(2, 3), keepdim=True)
    haze = (haze - lo) / (haze.amax(dim=(2, 3), keepdim=True) - lo + 1e-6)
    amount = (_rand(generator, b, 0, 1, p.device) < 0.5) * _rand(generator, b, 0, 3, p.device)
    return (lit + amount * haze) / (1 + amount)


def _noise(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Grain: Gaussian noise of a random strength, or salt and pepper on a random share of the pixels."""
    b = p.shape[0]
    gauss = p + _rand(generator, b, 0.05, 0.35, p.device) * torch.randn(p.shape, generator=generator).to(p.device)
    specks = torch.rand(p.shape, generator=generator).to(p.device)
    rate = _rand(generator, b, 0.02, 0.2, p.device)
    salted = torch.where(
        specks < rate / 2, torch.zeros_like(p), torch.where(specks > 1 - rate / 2, torch.ones_like(p), p)
    )
    return torch.where(_rand(generator, b, 0, 1, p.device) < 0.5, gauss, salted)


def flagged_ones(
    images: torch.Tensor, labels: torch.Tensor, share: float, generator: torch.Generator, one: int = 1
) -> torch.Tensor:
    """A share of the 1s in uint8 images (N, H, W) given the long flag they are written with across
    continental Europe, which MNIST's (mostly American) 1s lack: a straight stroke from the top of the
    stem down to the left, 30-55% of the digit's height long, 20-50 degrees below the horizontal, as
    thick as the stem (its ink per row), anti-aliased. Only upright or right-leaning stems get one (a
    flag on a stem leaning left is a 7); the others come back as they were."""
    ones = (labels == one).nonzero().flatten().cpu()
    chosen = ones[torch.rand(len(ones), generator=generator) < share] if share > 0 else ones[:0]
    if not len(chosen):
        return images
    p = images[chosen.to(images.device)].float() / 255  # (B, H, W)
    b, h, w = p.shape
    ink = p > 0.5
    rows = torch.arange(h, device=p.device).view(1, h, 1).float()
    cols = torch.arange(w, device=p.device).view(1, 1, w).float()
    top = torch.where(ink, rows, float(h)).amin(dim=(1, 2))
    bottom = torch.where(ink, rows, -1.0).amax(dim=(1, 2))
    crown = ink & (rows <= top.view(-1, 1, 1) + 1)  # the stem's top two rows of ink
    foot = ink & (rows >= bottom.view(-1, 1, 1) - 1)
    x0 = (cols * crown).sum((1, 2)) / crown.sum((1, 2)).clamp(min=1)
    upright = x0 >= (cols * foot).sum((1, 2)) / foot.sum((1, 2)).clamp(min=1) - 1  # a "\" with a flag is a 7
    height = (bottom - top + 1).clamp(min=1)
    width = (p.sum((1, 2)) / height).clamp(1.5, 4.0)
    length = height * (0.30 + 0.25 * torch.rand(b, generator=generator)).to(p.device)
    angle = torch.deg2rad(20 + 30 * torch.rand(b, generator=generator)).to(p.device)
    x1, y1 = x0 - length * torch.cos(angle), top + length * torch.sin(angle)
    flag = _segment_ink(x0, top, x1, y1, width, rows, cols)
    flag = flag * upright.view(-1, 1, 1)
    out = images.clone()
    out[chosen.to(images.device)] = (torch.maximum(p, flag) * 255).round().to(torch.uint8)
    return out


def _segment_ink(
    x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor, width: torch.Tensor,
    rows: torch.Tensor, cols: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """(B, H, W) ink of a straight stroke from (x0, y0) to (x1, y1) of the given widths: full within
    half the width of the segment, fading over one pixel beyond."""
    v = lambda t: t.view(-1, 1, 1)  # noqa: E731
    dx, dy = v(x1 - x0), v(y1 - y0)
    t = (((cols - v(x0)) * dx + (rows - v(y0)) * dy) / (dx * dx + dy * dy).clamp(min=1e-6)).clamp(0, 1)
    distance = torch.hypot(cols - v(x0) - t * dx, rows - v(y0) - t * dy)
    return (v(width) / 2 + 0.5 - distance).clamp(0, 1)

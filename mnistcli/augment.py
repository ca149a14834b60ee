"""Augmentation done on whole batches of tensors on the training device (never per image in PIL).

Images arrive normalised, (B, 1, H, W); `background` is the value of a blank pixel there
(-mean / std), so whatever moves into view is blank paper, not grey.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    dilated, eroded = dilate3(x), -dilate3(-x)
    # Thinning goes at most half way: a full erosion wipes out MNIST's thinnest strokes.
    target = torch.where(bolder, dilated, torch.where(thinner, x + 0.5 * (eroded - x), x))
    return (x + amount * (target - x)).contiguous(memory_format=torch.channels_last)


def dilate3(x: torch.Tensor) -> torch.Tensor:
    """3x3 grey dilation (B, C, H, W), as max_pool2d(x, 3, stride=1, padding=1) gives it, but as
    shifted maxima: about 13x faster on a CPU for MNIST-sized batches."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    rows = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])

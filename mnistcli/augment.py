"""Augmentation done on whole batches of tensors (never per image in PIL)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator, background: float) -> torch.Tensor:
    """Shift each image of a batch (B, 1, H, W) by its own random -max..max pixels in x and y;
    `background` is the value of a blank pixel after normalisation (-mean / std)."""
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

"""Augmentation on whole batches: every image moves as a whole, within its limits, over the background."""

import torch

from mnistcli.augment import random_shift


def _shift_of(original: torch.Tensor, shifted: torch.Tensor, n: int, fill: float):
    """The (dy, dx) with |dy|, |dx| <= n that turns `original` (H, W) into `shifted`, or None."""
    h, w = original.shape
    padded = torch.full((h + 2 * n, w + 2 * n), fill)
    padded[n : n + h, n : n + w] = original
    for dy in range(-n, n + 1):
        for dx in range(-n, n + 1):
            window = padded[n - dy : n - dy + h, n - dx : n - dx + w]
            if torch.equal(window, shifted):
                return dy, dx
    return None


def test_each_image_is_shifted_whole_by_at_most_n_pixels_over_the_background():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    out = random_shift(x, 2, gen, background=-0.5)
    assert out.shape == x.shape
    shifts = [_shift_of(x[i, 0], out[i, 0], 2, -0.5) for i in range(64)]
    assert None not in shifts  # every image is its own original, moved, with the background filled in
    assert len(set(shifts)) >= 15  # and they move in many different ways
    assert {dy for dy, _ in shifts} == {-2, -1, 0, 1, 2} and {dx for _, dx in shifts} == {-2, -1, 0, 1, 2}


def test_shifts_follow_the_generator_and_zero_means_none():
    x = torch.rand(8, 1, 28, 28)
    a = random_shift(x, 3, torch.Generator().manual_seed(5), 0.0)
    b = random_shift(x, 3, torch.Generator().manual_seed(5), 0.0)
    assert torch.equal(a, b)
    assert random_shift(x, 0, torch.Generator(), 0.0) is x


def test_a_one_pixel_shift_moves_images_by_one_pixel_at_most():
    x = torch.rand(32, 1, 28, 28)
    out = random_shift(x, 1, torch.Generator().manual_seed(1), background=0.0)
    shifts = [_shift_of(x[i, 0], out[i, 0], 1, 0.0) for i in range(32)]
    assert None not in shifts and len(set(shifts)) > 4  # they do move

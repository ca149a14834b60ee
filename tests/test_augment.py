"""Augmentation on whole batches: every image moves as a whole, within its limits, over the background."""

import math

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


def test_dilate3_is_a_3x3_max_pool():
    import torch.nn.functional as F

    from mnistcli.augment import dilate3

    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(dilate3(x), F.max_pool2d(x, 3, stride=1, padding=1))


def _blank_and_digit():
    x = torch.full((6, 1, 28, 28), -0.5)
    x[:, :, 8:20, 12:16] = 2.0  # a bar, bright on the background
    return x.contiguous(memory_format=torch.channels_last)


def test_distortions_bring_in_background_and_keep_the_ink():
    from mnistcli.augment import Distortion, distort

    x = _blank_and_digit()
    out = distort(x, Distortion(rotate=15, scale=0.15, shear=15, elastic=20), torch.Generator().manual_seed(0), -0.5)
    assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out[:, :, :3, :], torch.tensor(-0.5), atol=1e-5)  # the top rows: blank paper, not grey
    assert not torch.equal(out[0], out[1])  # each image its own distortion
    mass = (out + 0.5).flatten(1).sum(1) / (x + 0.5).flatten(1).sum(1)
    assert ((mass > 0.5) & (mass < 1.6)).all(), mass  # the bar is moved, scaled and bent, not lost
    blank = torch.full_like(x, -0.5)
    assert torch.allclose(distort(blank, Distortion(15, 0.15, 15, 20, 1.0), torch.Generator(), -0.5), blank)


def test_a_rotation_turns_the_ink_by_at_most_the_limit():
    from mnistcli.augment import Distortion, distort

    x = _blank_and_digit()
    out = distort(x, Distortion(rotate=30), torch.Generator().manual_seed(3), -0.5)
    for image in out:
        ys, xs = torch.nonzero(image[0] > 0.75, as_tuple=True)
        cov = torch.cov(torch.stack([xs.float(), ys.float()]))
        angle = 0.5 * torch.atan2(2 * cov[0, 1], cov[1, 1] - cov[0, 0])  # of the bar's long axis, from vertical
        assert abs(float(angle)) <= math.radians(30) + 0.05


def test_stroke_width_changes_bolden_or_thin_a_share_of_the_images():
    from mnistcli.augment import random_stroke_width

    x = _blank_and_digit().repeat(20, 1, 1, 1)
    out = random_stroke_width(x, 0.6, torch.Generator().manual_seed(0))
    before = (x + 0.5).flatten(1).sum(1)
    after = (out + 0.5).flatten(1).sum(1)
    bolder, thinner = (after > before * 1.01).sum(), (after < before * 0.99).sum()
    same = torch.isclose(after, before).sum()
    assert bolder > 10 and thinner > 10 and same > 20  # about 30%, 30% and 40% of 120
    assert (out >= x.min()).all() and (out <= x.max()).all()


def _fitted_matrices(grid: torch.Tensor) -> torch.Tensor:
    """The 2x2 linear maps (B, 2, 2) that turn the identity grid into `grid` (B, H, W, 2)."""
    import torch.nn.functional as F

    b, h, w, _ = grid.shape
    identity = F.affine_grid(torch.eye(2, 3).expand(b, 2, 3), [b, 1, h, w], align_corners=False)
    base = identity.reshape(b, -1, 2)
    fitted = torch.linalg.lstsq(base, grid.reshape(b, -1, 2)).solution  # base @ A^T = grid
    assert torch.allclose(base @ fitted, grid.reshape(b, -1, 2), atol=1e-5)  # linear, about the centre
    return fitted.transpose(1, 2)


def test_each_grid_is_a_rotation_and_a_shear_divided_by_a_zoom_all_within_their_limits():
    from mnistcli.augment import Distortion, affine_grid

    d = Distortion(rotate=20, scale=0.2, shear=15)
    a = _fitted_matrices(affine_grid(256, torch.Size([28, 28]), d, torch.Generator().manual_seed(0), "cpu"))
    zoom = 1 / a[:, :, 0].norm(dim=1)  # a rotation keeps the first column's length; only the zoom changes it
    angle = torch.atan2(a[:, 1, 0], a[:, 0, 0])
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation_t = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)
    shear = rotation_t @ a * zoom[:, None, None]  # what is left: [[1, tan(shear)], [0, 1]]
    assert torch.allclose(shear[:, :, 0], torch.tensor([1.0, 0.0]), atol=1e-5)
    assert torch.allclose(shear[:, 1, 1], torch.ones(256), atol=1e-5)
    assert torch.allclose(torch.linalg.det(a), 1 / zoom**2, atol=1e-5)  # a shear keeps the area
    tan = shear[:, 0, 1]
    assert (zoom >= 0.8 - 1e-5).all() and (zoom <= 1.2 + 1e-5).all() and zoom.std() > 0.05
    assert angle.abs().max() <= math.radians(20) + 1e-5 and angle.abs().max() > math.radians(15)
    assert torch.atan(tan).abs().max() <= math.radians(15) + 1e-5 and torch.atan(tan).abs().max() > math.radians(10)


def test_the_elastic_field_is_simards_uniform_noise_smoothed_by_a_gaussian_times_alpha():
    from torchvision.transforms.functional import gaussian_blur

    from mnistcli.augment import ELASTIC_SIGMA, elastic_field

    b, h, w = 3, 28, 32
    field = elastic_field(b, torch.Size([h, w]), 10.0, torch.Generator().manual_seed(4), torch.device("cpu"))
    noise = torch.rand(b, 2, h, w, generator=torch.Generator().manual_seed(4)) * 2 - 1
    radius = int(2 * ELASTIC_SIGMA)
    smooth = gaussian_blur(noise, [2 * radius + 1] * 2, [ELASTIC_SIGMA] * 2)  # reflected at the edges
    in_pixels = field * torch.tensor([w / 2, h / 2])  # grid units: 2 span the width, 2 the height
    assert field.shape == (b, h, w, 2)
    assert torch.allclose(in_pixels, smooth.permute(0, 2, 3, 1) * 10.0, atol=1e-4)
    other = elastic_field(b, torch.Size([h, w]), 10.0, torch.Generator().manual_seed(5), torch.device("cpu"))
    assert not torch.allclose(field, other)


def test_stroke_width_follows_the_generator_and_bolder_and_thinner_are_equally_likely():
    from mnistcli.augment import random_stroke_width

    x = _blank_and_digit().repeat(200, 1, 1, 1)
    out = random_stroke_width(x, 0.5, torch.Generator().manual_seed(2))
    assert torch.equal(out, random_stroke_width(x, 0.5, torch.Generator().manual_seed(2)))
    before, after = (x + 0.5).flatten(1).sum(1), (out + 0.5).flatten(1).sum(1)
    bolder, thinner = int((after > before * 1.01).sum()), int((after < before * 0.99).sum())
    assert 540 <= bolder + thinner <= 660  # a half of 1,200 changed
    assert abs(bolder - thinner) < 100, (bolder, thinner)  # a quarter each


def _digits(n: int = 200) -> torch.Tensor:
    from helpers import render_digits

    return torch.from_numpy(render_digits(n, seed=7)[0])


def test_each_surrounding_changes_its_share_of_the_images_and_leaves_the_rest_as_they_are():
    from mnistcli.augment import Surroundings, surround

    x = _digits(400)
    for name in ("paper", "noise", "blur", "marks", "outline", "lowres"):
        out = surround(x, Surroundings(**{name: 0.25}), torch.Generator().manual_seed(3))
        changed = (out != x).flatten(1).any(1)
        assert out.dtype == torch.uint8 and out.shape == x.shape
        assert 0.17 < changed.float().mean() < 0.33, name  # about a quarter of them
    assert surround(x, Surroundings(), torch.Generator()) is x


def test_surroundings_follow_the_generator():
    from mnistcli.augment import Surroundings, surround

    x, s = _digits(50), Surroundings(0.3, 0.3, 0.3, 0.3, 0.3, 0.3)
    a = surround(x, s, torch.Generator().manual_seed(1), chunk=16)
    b = surround(x, s, torch.Generator().manual_seed(1), chunk=16)
    assert torch.equal(a, b) and not torch.equal(a, surround(x, s, torch.Generator().manual_seed(2), chunk=16))


def test_what_each_surrounding_does_to_a_digit():
    from mnistcli.augment import Surroundings, surround

    x = _digits(100)
    blank = x < 10
    g = torch.Generator().manual_seed(0)
    paper = surround(x, Surroundings(paper=1.0), g).float()
    assert paper[blank].mean() > 25  # the blank field is no longer black
    noise = surround(x, Surroundings(noise=1.0), g)
    assert (noise[blank] > 0).float().mean() > 0.02  # grain on the blank field
    blurred = surround(x, Surroundings(blur=1.0), g)
    assert blurred.float().diff(dim=2).abs().mean() < x.float().diff(dim=2).abs().mean()  # softer edges
    marked = surround(x, Surroundings(marks=1.0), g)
    assert ((marked > 100) & blank).flatten(1).any(1).float().mean() > 0.9  # ink where there was none
    outlined = surround(x, Surroundings(outline=1.0), g).float()
    cores = (-torch.nn.functional.max_pool2d(-x.float().unsqueeze(1), 5, 1, 2)).squeeze(1) > 200
    assert cores.any() and outlined[cores].mean() < 0.5 * x.float()[cores].mean()  # hollow where strokes were thick


def test_low_resolution_loses_the_detail_but_keeps_the_digit_where_it_was_and_as_strong():
    from mnistcli.augment import LOWRES_SIDES, Surroundings, surround

    x = _digits(100)
    low = surround(x, Surroundings(lowres=1.0), torch.Generator().manual_seed(0)).float()
    xf = x.float()
    # As strong: the brightest ink is the original's (averaging alone would dim a thin stroke).
    assert torch.allclose(low.flatten(1).amax(1), xf.flatten(1).amax(1), atol=1)
    # Not moved: the centre of mass stays put (within a quarter of a pixel for most, under one for all).
    grid = torch.arange(28.0)
    centre = lambda t: (t.sum(2) * grid).sum(1) / t.sum((1, 2))  # noqa: E731
    moved = (centre(low) - centre(xf)).abs()
    assert moved.median() < 0.25 and moved.max() < 1
    # At one of the low resolutions: each image is nearly what that resolution can hold (reduced to
    # it and scaled up again, it hardly changes), which the originals are not.

    def nearest_low_resolution_error(t: torch.Tensor) -> torch.Tensor:
        t = t.unsqueeze(1)
        errors = []
        for side in LOWRES_SIDES:
            small = torch.nn.functional.interpolate(t, size=(side, side), mode="area")
            back = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)
            errors.append((back - t).abs().mean((1, 2, 3)))
        return torch.stack(errors).amin(0)

    assert nearest_low_resolution_error(low).median() < 0.5 * nearest_low_resolution_error(xf).median()


def test_settling_makes_the_surroundings_rarer_in_the_last_part_of_a_run():
    from mnistcli.augment import Surroundings
    from mnistcli.trainer import SETTLED

    s = Surroundings(0.2, 0.1, 0.1, 0.1, 0.05)
    assert s.scaled(SETTLED) == Surroundings(0.05, 0.025, 0.025, 0.025, 0.0125) and SETTLED == 0.25


def _stem(lean: int) -> torch.Tensor:
    """A 28x28 uint8 "1": a 3 px stem from row 4 to row 23, its foot `lean` px left of its top."""
    x = torch.zeros(28, 28, dtype=torch.uint8)
    for row in range(4, 24):
        col = 14 + round(lean * (row - 4) / 19)  # lean > 0: the foot is right of the top, a "\"
        x[row, col - 1 : col + 2] = 255
    return x


def test_a_share_of_the_upright_ones_gets_a_flag_down_to_the_left_and_nothing_else_changes():
    from mnistcli.augment import flagged_ones

    upright, leaning_left = _stem(-3), _stem(4)  # "/" or "|" takes a flag; "\" with one would be a 7
    images = torch.stack([upright] * 100 + [leaning_left] * 20 + [upright] * 20)
    labels = torch.tensor([1] * 120 + [7] * 20)
    out = flagged_ones(images, labels, 0.5, torch.Generator().manual_seed(0))
    changed = (out != images).flatten(1).any(1)
    assert 30 < int(changed[:100].sum()) < 70  # about half the upright 1s
    assert not changed[100:].any()  # no flag on a stem leaning left, and none on other digits
    flag = (out[changed] > 0) & (images[changed] == 0)
    rows, cols = flag.nonzero()[:, 1], flag.nonzero()[:, 2]
    assert rows.min() >= 4 - 2 and rows.max() <= 4 + 0.55 * 20 + 3 and cols.max() <= 14 + 2  # from the stem's top...
    assert cols.float().mean() < 14 - 2 and rows.float().mean() > 4  # ...down to the left
    assert cols.min() < 14 - 0.3 * 20 * math.cos(math.radians(50)) + 2  # at least 30% of the height long
    again = flagged_ones(images, labels, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(out, again) and torch.equal(flagged_ones(images, labels, 0.0, torch.Generator()), images)


def test_a_run_flags_its_ones_only_on_a_dataset_of_digits(fixture_data, tmp_path, monkeypatch):
    from mnistcli import augment, trainer
    from mnistcli.settings import RunSettings

    from helpers import write_dataset

    shares = []
    monkeypatch.setattr(trainer, "flagged_ones", lambda x, y, share, g: shares.append(share) or x)
    fashion = write_dataset(tmp_path / "fashion", n_train=300, n_test=100, dataset="fashion-mnist")
    for data, dataset in ((fixture_data, "mnist"), (fashion, "fashion-mnist")):
        run = RunSettings(data_dir=data, out_dir=tmp_path / dataset, device="cpu", download=False)
        trainer.fit(run, given={"epochs": 1, "val_size": 100, "flag_ones": 0.7, "dataset": dataset})
    assert shares == [0.7, 0.0] and augment.flagged_ones is not trainer.flagged_ones


def test_views_are_the_picture_and_its_copies_moved_turned_bolder_and_thinner():
    from mnistcli.augment import views

    x = _digits(20)
    v = views(x)
    assert v.shape == (9, *x.shape) and v.dtype == torch.uint8 and torch.equal(v[0], x)

    def move_of(m: torch.Tensor) -> tuple[int, int]:
        """The one-pixel move (dy, dx) that makes m of x: m[y, x] = x[y + dy, x + dx] inside the margin."""
        [move] = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                  if torch.equal(m[:, 1:27, 1:27], x[:, 1 + dy : 27 + dy, 1 + dx : 27 + dx])]  # fmt: skip
        return move

    moved = {move_of(m) for m in v[1:5]}
    assert moved == {(-1, 0), (1, 0), (0, -1), (0, 1)}  # a pixel up, down, left and right
    turned = v[5:7].float()
    assert all((t - x.float()).abs().mean() > 5 for t in turned) and not torch.equal(turned[0], turned[1])
    assert (v[7] >= x).all() and v[7].float().sum() > 1.2 * x.float().sum()  # bolder
    assert (v[8] <= x).all() and v[8].float().sum() < 0.9 * x.float().sum()  # thinner

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mnistcli import preprocess
from mnistcli.errors import ImageError

import imagegen
from helpers import render_digits

DIGITS, LABELS = render_digits(20, seed=7)


def centre_of_mass(a):
    a = a.astype(np.float64)
    ys, xs = np.mgrid[0:28, 0:28]
    return (a * ys).sum() / a.sum(), (a * xs).sum() / a.sum()


def save(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_known_digit_is_centred_and_scaled_like_mnist(tmp_path):
    # A bar 60 px tall and 12 px wide, far off-centre on a 300x200 white page.
    page = np.full((200, 300), 240, np.uint8)
    page[20:80, 230:242] = 10
    path = tmp_path / "bar.png"
    Image.fromarray(page).save(path)
    out = preprocess.load_digit(path)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    cy, cx = centre_of_mass(out)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
    rows, cols = np.flatnonzero(out.max(1) > 0), np.flatnonzero(out.max(0) > 0)
    assert 19 <= rows[-1] - rows[0] + 1 <= 20  # the longer side
    assert cols[-1] - cols[0] + 1 <= 8  # aspect ratio kept: 12/60 of 20 px, plus anti-aliasing
    assert out.max() == 255 and out[0].max() == 0  # light on black, black border


@pytest.mark.parametrize("style", imagegen.STYLES)
def test_every_style_comes_out_like_the_original_digit(tmp_path, style):
    rng = np.random.default_rng(0)
    scores = []
    for digit in DIGITS[:6]:
        path = save(tmp_path, f"x{imagegen.SUFFIX.get(style, '.png')}", imagegen.make(style, digit, rng))
        out = preprocess.load_digit(path).astype(np.float64)
        ref = preprocess.to_mnist(Image.fromarray(digit)).astype(np.float64)
        scores.append(np.corrcoef(out.ravel(), ref.ravel())[0, 1])
        cy, cx = centre_of_mass(out)
        assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
    assert np.median(scores) > 0.75, scores


def test_polarity_does_not_matter(tmp_path):
    digit = DIGITS[3]
    big = np.asarray(Image.fromarray(digit).resize((140, 140), Image.BICUBIC))
    Image.fromarray(big).save(tmp_path / "light.png")
    Image.fromarray(255 - big).save(tmp_path / "dark.png")
    a = preprocess.load_digit(tmp_path / "light.png").astype(float)
    b = preprocess.load_digit(tmp_path / "dark.png").astype(float)
    assert np.abs(a - b).mean() < 8


def test_exif_orientation_is_applied(tmp_path):
    rng = np.random.default_rng(3)
    stored, exif = imagegen.exif_rotated(DIGITS[7], rng)
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif)
    rotated = preprocess.load_digit(save(tmp_path, "r.jpg", buf.getvalue())).astype(float)
    upright = preprocess.to_mnist(Image.fromarray(DIGITS[7])).astype(float)
    assert np.corrcoef(rotated.ravel(), upright.ravel())[0, 1] > 0.75


def test_raw_mode_keeps_an_mnist_image_as_it_is(tmp_path):
    Image.fromarray(DIGITS[0]).save(tmp_path / "m.png")
    assert np.array_equal(preprocess.load_digit(tmp_path / "m.png", raw=True), DIGITS[0])


def test_raw_mode_shrinks_a_larger_picture_without_wrapping_bright_pixels_to_dark(tmp_path):
    big = np.zeros((112, 112), np.uint8)
    big[24:88, 40:72] = 255  # a white bar on black: shrinking with LANCZOS rings above white at its edges
    Image.fromarray(big).save(tmp_path / "big.png")
    small = preprocess.load_digit(tmp_path / "big.png", raw=True)
    assert small.shape == (28, 28) and small.dtype == np.uint8
    assert (small[7:21, 11:17] >= 250).all(), small[6:22, 10:18]  # the bar stays white inside its edges
    assert small[:4].max() <= 2 and small[:, :8].max() <= 2  # and the background black


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: Image.new("RGB", (300, 200), (235, 232, 225)).save(p), "no digit found"),
        (lambda p: p.write_bytes(b"this is not an image"), "not an image"),
        (lambda p: p.write_bytes(b""), "bad.png: empty file"),
    ],
)
def test_bad_inputs_give_a_clear_error_naming_the_file(tmp_path, make, expected):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(ImageError) as err:
        preprocess.load_digit(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_a_page_of_single_specks_has_no_digit_and_says_so(tmp_path):
    page = np.full((200, 200), 250, np.uint8)
    for y, x in [(10, 10), (180, 20), (30, 170), (190, 190), (100, 100)]:
        page[y, x] = 0
    Image.fromarray(page).save(tmp_path / "dust.png")
    with pytest.raises(ImageError, match=r"dust.png: no digit found \(only specks of ink\)$"):
        preprocess.load_digit(tmp_path / "dust.png")


def test_specks_of_noise_are_removed(tmp_path):
    page = np.full((200, 200), 250, np.uint8)
    page[60:140, 95:105] = 0  # the stroke
    for y, x in [(10, 10), (180, 20), (30, 170), (190, 190)]:
        page[y : y + 2, x : x + 2] = 0  # dust
    Image.fromarray(page).save(tmp_path / "dusty.png")
    out = preprocess.load_digit(tmp_path / "dusty.png")
    rows = np.flatnonzero(out.max(1) > 0)
    assert rows[-1] - rows[0] + 1 >= 19  # cropped to the stroke, not to the dust


def test_expand_inputs_lists_images_in_folders(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in preprocess.expand_inputs([tmp_path])] == ["a.JPG", "b.png"]


def _photo_of(style: str, digit: np.ndarray, seed: int) -> bytes:
    return imagegen.make(style, digit, np.random.default_rng(seed))


def _like(out: np.ndarray, digit: np.ndarray) -> float:
    """How alike a picture's input is to the digit's, the digit drawn as large as the pictures draw it
    (112 px: large digits go through the same stroke clean-up as the photos' own)."""
    big = Image.fromarray(digit).resize((112, 112), Image.BILINEAR)
    ref = preprocess.to_mnist(big).astype(float)
    return float(np.corrcoef(out.astype(float).ravel(), ref.ravel())[0, 1])


@pytest.mark.parametrize("style", imagegen.PAPER_STYLES)
def test_pen_on_paper_photos_come_out_like_the_digit(style):
    """A faint ballpoint on grey paper, ruled and squared paper, a small digit in a large frame."""
    scores = [_like(preprocess.load_digit(_photo_of(style, d, i), name="p"), d) for i, d in enumerate(DIGITS[:5])]
    assert np.median(scores) > 0.75 and min(scores) > 0.55, scores


def test_grey_paper_darker_than_mid_grey_still_has_dark_ink():
    page = np.full((300, 300), 0.42, np.float32)
    page[60:240, 140:146] = 0.30  # a faint dark stroke
    ink = preprocess._as_ink(page)
    assert ink[100, 142] > ink[10, 10]  # the stroke is the ink, light on dark


def test_printed_lines_go_and_the_digit_stays():
    page = np.zeros((240, 240), np.float32)
    page[::30, :] = 0.5  # ruled lines across the whole page
    page[:, 7] = 0.5  # a margin line
    page[80:170, 100:112] = 1.0  # the digit: a bold bar
    out = preprocess._without_printed_lines(page)
    assert out[::30][:, :90].max() < 0.05 and out[:, 7].max() < 0.05
    assert out[90:160, 100:112].min() > 0.95  # the stroke, where lines cross it too
    alone = np.zeros((240, 240), np.float32)
    alone[5:235, 118:121] = 1.0  # a tightly cropped thin 1 is a single line: it stays
    assert preprocess._without_printed_lines(alone).max() == 1.0


def test_a_thin_stroke_in_a_large_photo_is_found_and_given_mnists_width(tmp_path):
    page = np.full((1200, 1200), 235, np.uint8)
    page[300:900, 598:601] = 40  # a 3-px pen line, 600 px long
    Image.fromarray(page).save(tmp_path / "thin.png")
    out = preprocess.load_digit(tmp_path / "thin.png")
    cols = np.flatnonzero(out.max(0) > 100)
    assert 2 <= len(cols) <= 5  # MNIST's stroke width, not a hairline
    rows = np.flatnonzero(out.max(1) > 100)
    assert rows[-1] - rows[0] + 1 >= 18


# The digit kept whole: properties over rendered digits.


def _scan(ink: np.ndarray, paper: float = 0.93) -> Image.Image:
    """Float ink (0-1) as dark ink on light paper, a grey 8-bit picture."""
    return Image.fromarray(np.round((paper - (paper - 0.1) * np.clip(ink, 0, 1)) * 255).astype(np.uint8))


def _thin_scan(digit: np.ndarray, side: int, width: float, pressure: np.ndarray | None = None) -> np.ndarray:
    """`digit` drawn with a pen `width` px wide in a side x side scan, anti-aliased (drawn at 4x, averaged
    down); `pressure` (4 side x 4 side) scales the ink."""
    k = 4
    ink = imagegen.pen(digit, int(side * 0.8) * k, width * k)
    fine = np.zeros((side * k, side * k), np.float32)
    at = (side * k - ink.shape[0]) // 2
    fine[at : at + ink.shape[0], at : at + ink.shape[1]] = ink
    if pressure is not None:
        fine *= pressure
    return np.asarray(Image.fromarray(fine, mode="F").resize((side, side), Image.BOX), dtype=np.float32)


def _box(a: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(a.max(1) > 0), np.flatnonzero(a.max(0) > 0)
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


@settings(max_examples=25, deadline=None)
@given(
    which=st.integers(0, len(DIGITS) - 1),
    side=st.integers(40, 70),
    width=st.floats(0.8, 1.6),
    faint=st.floats(0.25, 0.5),
    angle=st.floats(0, 2 * np.pi),
)
def test_the_faint_part_of_a_thin_stroke_is_kept_down_to_the_20_px_scale(which, side, width, faint, angle):
    """A small scan with thin anti-aliased strokes, part of the digit pressed lightly (25-50% of the ink):
    the faint part is as much of the 28x28 input as in the same scan pressed evenly, dimmer by its
    pressure (grey levels scaled down with it, not thresholded away first)."""
    k = 4 * side
    yy, xx = np.mgrid[0:k, 0:k] / (k - 1) - 0.5
    light = np.cos(angle) * xx + np.sin(angle) * yy > 0
    even = preprocess.to_mnist(_scan(_thin_scan(DIGITS[which], side, width)))
    uneven = preprocess.to_mnist(_scan(_thin_scan(DIGITS[which], side, width, np.where(light, faint, 1.0))))
    a, b = _box(even), _box(uneven)
    # The same size to within the 2 px a faint stroke's own soft edge adds (losing the faint part
    # shrinks it by half).
    assert abs(a.shape[0] - b.shape[0]) <= 2 and abs(a.shape[1] - b.shape[1]) <= 2, (a.shape, b.shape)
    inked = np.pad(a >= 128, 2)
    # Half the faint ink's share of a stroke at half strength, within a pixel (a faint edge moves half
    # a stroke by a pixel), at the best of the alignments up to 2 px apart.
    kept = np.pad(preprocess._dilate(b >= faint * 128 / 2, 3) > 0, 4)
    share = max(
        kept[dy : dy + inked.shape[0], dx : dx + inked.shape[1]][inked].mean()
        for dy in range(kept.shape[0] - inked.shape[0] + 1)
        for dx in range(kept.shape[1] - inked.shape[1] + 1)
    )
    assert share >= 0.95, (share, a, b)


def test_nothing_connected_to_the_strokes_is_cleared_and_their_soft_edges_stay():
    """The ink `_clean` keeps covers every stroke of the digit and the anti-aliased edge beside it,
    faint parts included; a speck apart from the digit goes."""
    ink = _thin_scan(DIGITS[8], 60, 1.2, np.where(np.arange(240)[None, :] < 120, 0.3, 1.0)).copy()
    ink[3:5, 54:56] = 0.8  # a speck of dust, apart
    cleaned = preprocess._clean(preprocess._as_ink(preprocess.to_grey(_scan(ink))))
    stroke = ink > 0.05
    stroke[3:5, 54:56] = False
    assert (cleaned.ink[stroke] > 0).mean() > 0.98
    assert cleaned.ink[3:5, 54:56].max() == 0


@pytest.mark.parametrize("label", [1, 4, 7])
def test_a_digits_own_long_straight_stroke_is_not_taken_for_a_printed_line(label):
    """A 1, 4 or 7 whose ruler-straight stroke spans nearly the whole picture, on grey paper: it comes
    out as its own strokes drawn cleanly do (a 4 does not lose its stem and become a "<")."""
    scores = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        strokes = imagegen.stroke_digit(label, "long-stroke", rng)
        photo = preprocess.to_mnist(imagegen.long_stroke(strokes, rng)).astype(float)
        clean = imagegen.draw_strokes(strokes, 200, 14, 0.0, rng)
        ref = preprocess.to_mnist(_scan(np.pad(clean, 20), paper=1.0)).astype(float)
        scores.append(np.corrcoef(photo.ravel(), ref.ravel())[0, 1])
    assert min(scores) > 0.55 and np.median(scores) > 0.75, scores


def _four(height: int, thick: int = 3) -> np.ndarray:
    """An open 4 of straight strokes, `height` px tall: stem, left stroke and bar, `thick` px wide."""
    four = np.zeros((height, height * 3 // 4), np.float32)
    stem, bar = height // 2, height * 3 // 5
    four[:, stem : stem + thick] = 1.0
    four[: bar + thick, 2 : 2 + thick] = 1.0
    four[bar : bar + thick, 2 : height * 3 // 4 - 2] = 1.0
    return four


@settings(max_examples=40, deadline=None)
@given(
    spacing=st.integers(20, 60),
    lines=st.integers(5, 12),
    thick=st.integers(1, 3),
    level=st.floats(0.2, 0.7),
    seed=st.integers(0, 2**16),
)
def test_ruled_lines_go_and_the_digit_across_them_stays(spacing, lines, thick, level, seed):
    """Lines at a regular spacing across the page and beyond the digit are printed and go; the digit
    (a 4 two spacings tall, drawn across them) stays whole: away from the lines as it was, and where
    one crosses it or its bar lies along one, with at least the ink it has beyond the line's."""
    rng = np.random.default_rng(seed)
    h, w = spacing * lines, int(rng.integers(200, 400))
    page = np.zeros((h, w), np.float32)
    for y in range(int(rng.integers(0, spacing)), h, spacing):
        page[y : y + thick] = level
    digit = np.zeros_like(page)
    four = _four(2 * spacing)
    top, left = int(rng.integers(0, h - four.shape[0] + 1)), int(rng.integers(0, w - four.shape[1] + 1))
    digit[top : top + four.shape[0], left : left + four.shape[1]] = four
    out = preprocess._without_printed_lines(np.maximum(page, digit))
    near_line = preprocess._dilate(page > 0, 2 * preprocess.LINE_THICKNESS + 1) > 0
    assert out[(digit > 0) & ~near_line].min() > 0.95 and out[digit > 0].min() > 0.95 - level
    away = np.ones_like(page, dtype=bool)
    away[max(0, top - 3) : top + four.shape[0] + 3, max(0, left - 3) : left + four.shape[1] + 3] = False
    assert out[away].max() < 0.05


@settings(max_examples=40, deadline=None)
@given(height=st.integers(150, 400), width=st.integers(110, 300), thick=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_a_long_straight_stroke_that_the_digit_touches_is_not_a_printed_line(height, width, thick, seed):
    """On plain paper, one stroke as long as the picture that the rest of the digit touches (a 4's or a
    1's stem, a 7's or a 5's bar) is the digit's own, wherever along it the rest lies."""
    rng = np.random.default_rng(seed)
    page = np.zeros((height, width), np.float32)
    stem = int(rng.integers(width // 4, 3 * width // 4))
    page[2 : height - 2, stem : stem + thick] = 1.0
    at = int(rng.integers(0, height - 20))
    reach = int(rng.integers(10, width // 4))
    page[at : at + thick + 1, stem - reach : stem + thick] = 1.0  # a bar, a flag or a foot touching it
    page = page if rng.random() < 0.5 else np.ascontiguousarray(page.T)  # a vertical stem or a long bar
    assert np.array_equal(preprocess._without_printed_lines(page), page)


def test_one_long_line_with_nothing_else_is_kept_as_the_digit():
    alone = np.zeros((300, 180), np.float32)
    alone[4:296, 88:91] = 1.0  # a tightly cropped 1 of one straight stroke
    assert np.array_equal(preprocess._without_printed_lines(alone), alone)


def test_the_centre_of_mass_not_the_box_is_placed_at_mnists_centre(tmp_path):
    # An L: a heavy stem and a long thin foot, whose mass lies far left of its box's middle.
    page = np.full((300, 300), 245, np.uint8)
    page[40:260, 60:110] = 10  # the stem, 50 px wide
    page[240:260, 110:260] = 10  # the foot, 20 px thick, to the right
    Image.fromarray(page).save(tmp_path / "L.png")
    out = preprocess.load_digit(tmp_path / "L.png")
    cy, cx = centre_of_mass(out)
    assert abs(cy - preprocess.MNIST_CENTRE) <= 0.5 and abs(cx - preprocess.MNIST_CENTRE) <= 0.5, (cy, cx)
    cols = np.flatnonzero(out.max(0) > 0)
    box_x = (cols[0] + cols[-1]) / 2
    assert box_x - cx >= 3  # the box's middle lies well right: a box-centred placement fails above


def test_mnists_centre_is_where_its_digits_mass_lies_on_average():
    """Rendered digits come out with their centre of mass at MNIST's, (14, 14), within the half pixel
    that whole-pixel placement allows (and a little for the rounding of grey levels), on average within
    a fifth of a pixel (the field's middle, 13.5, is not it)."""
    centres = np.array([centre_of_mass(preprocess.to_mnist(Image.fromarray(d))) for d in DIGITS])
    assert np.abs(centres - 14.0).max() <= 0.6 and np.abs(centres.mean(0) - 14.0).max() <= 0.2, centres


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_large_picture_is_decoded_reduced_before_any_float_copy(tmp_path, monkeypatch, suffix):
    """A 6000x4000 drawing: the grey copy the pipeline works on has its longer side DECODE_SIDE, and a
    JPEG is decoded at half size or less inside the decoder; it reads like the same drawing small."""
    from PIL import ImageDraw, ImageFile

    big = Image.new("RGB", (6000, 4000), (250, 250, 250))
    ImageDraw.Draw(big).line([(2400, 600), (3600, 600), (2800, 3400)], fill=(20, 20, 20), width=150)  # a 7
    path = tmp_path / f"big{suffix}"
    big.save(path)
    decoded, grey = [], []
    load, to_grey = ImageFile.ImageFile.load, preprocess.to_grey

    def recording_load(self):
        result = load(self)
        decoded.append(self.size)
        return result

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    monkeypatch.setattr(preprocess, "to_grey", lambda image: grey.append(image.size) or to_grey(image))
    out = preprocess.load_digit(path).astype(float)
    assert grey == [(preprocess.DECODE_SIDE, preprocess.DECODE_SIDE * 2 // 3)]
    assert max(decoded[0]) <= (3000 if suffix == ".jpg" else 6000)
    small = preprocess.to_mnist(big.resize((600, 400), Image.BOX)).astype(float)
    assert np.corrcoef(out.ravel(), small.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("mode", ["P", "I;16", "1", "RGBA"])
def test_large_pictures_of_every_mode_are_shrunk_by_their_grey_levels(tmp_path, mode):
    """Shrinking averages what the pixels show (grey, opacity), not palette indices or bits."""
    small = Image.fromarray(255 - DIGITS[5]).resize((300, 300), Image.BICUBIC)
    big = small.resize((3000, 3000), Image.NEAREST)
    if mode == "RGBA":
        image = Image.new("RGBA", big.size, (0, 0, 0, 0))
        image.putalpha(Image.eval(big, lambda v: 255 - v))
    elif mode == "I;16":
        image = Image.fromarray(np.asarray(big, np.uint16) * 257)
    elif mode == "1":
        small = small.point(lambda v: 255 if v > 128 else 0)
        image = small.resize(big.size, Image.NEAREST).convert("1")
    else:
        image = big.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.save(tmp_path / "big.png")
    out = preprocess.load_digit(tmp_path / "big.png").astype(float)
    ref = preprocess.to_mnist(small).astype(float)
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9, mode


@pytest.mark.parametrize("mode", ["P", "1"])
def test_a_thin_stroke_in_a_large_palette_or_bilevel_picture_survives_the_shrinking(tmp_path, mode):
    """Pillow shrinks palette and bilevel pictures by picking one pixel in each block; averaging their
    grey levels instead keeps a 2 px line that falls between the picked columns (shrunk 3 times)."""
    side = 3 * preprocess.DECODE_SIDE
    page = Image.new("L", (side, side // 3), 255)
    x = 3 * (side // 6) + 2  # columns 3k + 2 and 3k + 3: never the middle of a block of three
    page.paste(0, (x, 200, x + 2, side // 3 - 200))
    page.convert(mode).save(tmp_path / "thin.png")
    out = preprocess.load_digit(tmp_path / "thin.png")
    assert np.flatnonzero(out.max(1) > 100).size >= 18  # the whole stroke, 20 px tall


def test_an_empty_file_or_upload_says_so():
    with pytest.raises(ImageError, match=r"^upload.png: empty file$"):
        preprocess.load_digit(b"", name="upload.png")


def _bold_bar(scale: int) -> Image.Image:
    """A bold upright bar (a 1 drawn with a marker) in an 8x8 grid, scaled up `scale` times: 4 as an 8x8
    scan shown at 32x32 (the UCI digits), 16 as the same bar drawn large."""
    grid = np.zeros((8, 8), np.uint8)
    grid[0:8, 3:5] = 255  # two of eight cells wide: a stroke a quarter of the digit's height
    return Image.fromarray(grid).resize((8 * scale, 8 * scale), Image.BILINEAR)


def test_bold_strokes_are_thinned_in_a_large_picture_but_not_in_a_small_scaled_up_scan():
    def width(out):
        return np.flatnonzero(out.max(0) > 127).size

    small, large = preprocess.to_mnist(_bold_bar(4)), preprocess.to_mnist(_bold_bar(16))
    assert width(large) <= preprocess.MAX_STROKE + 1  # brought to MNIST's width
    assert width(small) >= 4  # left as bold as it was (a quarter of 20 px is 5)

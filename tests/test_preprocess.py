import io

import numpy as np
import pytest
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
        (lambda p: p.write_bytes(b""), "not an image"),
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
    ref = preprocess.to_mnist(Image.fromarray(digit)).astype(float)
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
    out = preprocess._without_printed_lines(page, fewest=1)
    assert out[::30][:, :90].max() < 0.05 and out[:, 7].max() < 0.05
    assert out[90:160, 100:112].min() > 0.95  # the stroke, where lines cross it too
    alone = np.zeros((240, 240), np.float32)
    alone[5:235, 118:121] = 1.0  # a tightly cropped thin 1 is a single line: it stays
    assert preprocess._without_printed_lines(alone, fewest=2).max() == 1.0


def test_a_thin_stroke_in_a_large_photo_is_found_and_given_mnists_width(tmp_path):
    page = np.full((1200, 1200), 235, np.uint8)
    page[300:900, 598:601] = 40  # a 3-px pen line, 600 px long
    Image.fromarray(page).save(tmp_path / "thin.png")
    out = preprocess.load_digit(tmp_path / "thin.png")
    cols = np.flatnonzero(out.max(0) > 100)
    assert 2 <= len(cols) <= 5  # MNIST's stroke width, not a hairline
    rows = np.flatnonzero(out.max(1) > 100)
    assert rows[-1] - rows[0] + 1 >= 18

"""Whatever image or data file a user has at hand: each works or fails with its own clear line."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile
from typer.testing import CliRunner

from mnistcli import data, preprocess
from mnistcli.cli import app
from mnistcli.errors import DataError, ImageError

from helpers import bomb_png, idx_bytes, render_digits

DIGIT = render_digits(1, seed=4)[0][0]  # a "0", light on black, 28x28


def big_digit(mode: str = "L", size: int = 140) -> Image.Image:
    """The test digit, dark on white, larger than 28 px."""
    return Image.fromarray(255 - DIGIT).resize((size, size), Image.BICUBIC).convert(mode)


def png_bytes(image: Image.Image, **kw) -> bytes:
    return encode(image, "PNG", **kw)


def _works(path) -> np.ndarray:
    out = preprocess.load_digit(path)
    assert out.shape == (28, 28) and out.dtype == np.uint8 and out.max() > 0
    return out


def test_formats_and_modes_people_have_all_work(tmp_path):
    reference = _works_from(tmp_path, "ref.png", png_bytes(big_digit()))
    cases = {
        "16bit.png": png_bytes(Image.fromarray(np.asarray(big_digit(), np.uint16) * 257).convert("I;16")),
        "cmyk.jpg": _jpeg(big_digit("RGB").convert("CMYK")),
        "palette-transparent.png": _palette_with_transparency(),
        "animated.gif": _animated_gif(),
        "grey-alpha.png": png_bytes(big_digit("LA")),
        "bilevel.bmp": encode(big_digit().point(lambda v: 255 if v > 128 else 0).convert("1"), "BMP"),
        "photo.webp": encode(big_digit("RGB"), "WEBP", quality=95),
        "scan.tiff": encode(big_digit(), "TIFF"),
    }
    for name, content in cases.items():
        out = _works_from(tmp_path, name, content).astype(float)
        assert np.corrcoef(out.ravel(), reference.astype(float).ravel())[0, 1] > 0.8, name


def test_a_dim_16_bit_scan_reads_like_the_8_bit_picture(tmp_path):
    reference = _works_from(tmp_path, "ref.png", png_bytes(big_digit())).astype(float)
    dim = Image.fromarray(np.asarray(big_digit(), np.uint16) * 16)  # a 12-bit scanner's range, in 16 bits
    assert dim.mode == "I;16"
    out = _works_from(tmp_path, "dim16.png", png_bytes(dim)).astype(float)
    assert np.corrcoef(out.ravel(), reference.ravel())[0, 1] > 0.95
    grey, grey8 = preprocess.to_grey(dim), preprocess.to_grey(big_digit())
    assert np.abs(grey - grey8).max() < 0.01  # stretched to the full range, not clipped or shifted


def _works_from(tmp_path, name, content: bytes) -> np.ndarray:
    path = tmp_path / name
    path.write_bytes(content)
    return _works(path)


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    return encode(image, "JPEG", quality=95)


def _palette_with_transparency() -> bytes:
    # Dark strokes on a fully transparent palette background.
    rgba = np.zeros((140, 140, 4), np.uint8)
    ink = np.asarray(Image.fromarray(DIGIT).resize((140, 140), Image.BICUBIC)) > 100
    rgba[ink] = (20, 20, 120, 255)
    p = Image.fromarray(rgba, "RGBA").convert("P", palette=Image.ADAPTIVE, colors=4)
    p.info["transparency"] = int(np.asarray(p)[0, 0])
    return png_bytes(p, transparency=p.info["transparency"])


def _animated_gif() -> bytes:
    frames = [big_digit("L"), Image.new("L", (140, 140), 255)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("truncated.png", png_bytes(big_digit())[:300], "truncated or corrupt image"),
        ("truncated.jpg", _jpeg(big_digit("RGB"))[:400], "truncated or corrupt image"),
        ("bomb.png", bomb_png(50_000, 50_000), "image too large"),
        # Between mnistcli's 40 MP limit and Pillow's own (~179 MP): only mnistcli's check stops it.
        ("big.png", bomb_png(8_000, 6_000), "image too large (8000x6000 pixels); the limit is 40 megapixels"),
        ("tiny.png", png_bytes(Image.new("L", (1, 1), 0)), "too small to hold a digit"),
        ("blank.png", png_bytes(Image.new("RGB", (200, 150), (250, 250, 250))), "no digit found"),
        ("empty.png", b"", "empty.png: empty file"),
        ("text.png", b"hello, world\n" * 20, "not an image"),
    ],
)
def test_broken_images_give_their_own_clear_error(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as err:
        preprocess.load_digit(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_the_size_is_checked_before_any_pixel_is_decoded(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(bomb_png(8_000, 6_000))

    def decode(*args, **kwargs):
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    with pytest.raises(ImageError, match=r"image too large \(8000x6000 pixels\)"):
        preprocess.open_image(path)


def test_predict_keeps_going_past_every_broken_file(tmp_path, trained_run):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(big_digit()))
    bad = {"bomb.png": bomb_png(50_000, 50_000), "empty.jpg": b"", "cut.png": png_bytes(big_digit())[:200]}
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    result = CliRunner().invoke(app, ["predict", str(tmp_path), "-c", str(trained_run / "best.pt")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "good.png" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3 and all(name in result.stderr for name in bad)


MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    mode=st.sampled_from(MODES),
    kind=st.sampled_from(["noise", "constant", "blob", "stripes"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_preprocessing_never_crashes(width, height, mode, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "noise":
        a = rng.integers(0, 256, (height, width), dtype=np.uint8)
    elif kind == "constant":
        a = np.full((height, width), int(rng.integers(0, 256)), np.uint8)
    elif kind == "blob":
        a = np.full((height, width), 240, np.uint8)
        y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
        a[y : y + max(1, height // 3), x : x + max(1, width // 5)] = 10
    else:
        a = ((np.arange(width)[None, :] // max(1, int(rng.integers(1, 20)))) % 2 * 255).astype(np.uint8)
        a = np.repeat(a, height, 0)
    image = Image.fromarray(a).convert(mode)
    try:
        out = preprocess.to_mnist(image)
    except ImageError as exc:
        assert "no digit" in str(exc) or "too small" in str(exc)
        return
    assert out.shape == (28, 28) and out.dtype == np.uint8 and np.isfinite(out).all()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_idx_parser_never_crashes_on_random_bytes(raw):
    try:
        out = data.parse_idx(raw, "fuzz")
    except DataError as exc:
        assert str(exc).startswith("fuzz: ")
        return
    assert out.size * out.dtype.itemsize <= len(raw)


@settings(max_examples=200, deadline=None)
@given(
    cut=st.integers(0, 800),
    flip=st.tuples(st.integers(0, 799), st.integers(0, 255)),
    gz=st.booleans(),
)
def test_damaged_idx_files_are_named_or_read(tmp_path_factory, cut, flip, gz):
    raw = bytearray(idx_bytes(np.arange(2 * 28 * 28, dtype=np.uint16).reshape(2, 28, 28).astype(np.uint8)))
    raw[flip[0] % len(raw)] = flip[1]
    raw = bytes(raw[: len(raw) - cut])
    if gz:
        raw = gzip.compress(raw)
        raw = raw[: len(raw) // 2] if cut % 2 else raw
    path = tmp_path_factory.mktemp("idx") / "t10k-images-idx3-ubyte"
    path.write_bytes(raw)
    try:
        out = data.read_idx(path)
    except DataError as exc:
        assert str(path) in str(exc)
        return
    assert isinstance(out, np.ndarray)


_CHECKPOINT_BYTES: dict[str, bytes] = {}


def _small_checkpoint_bytes() -> bytes:
    if "cnn" not in _CHECKPOINT_BYTES:
        from mnistcli import checkpoint
        from mnistcli.models import create_model, model_args

        model = create_model("cnn")
        ckpt = checkpoint.Checkpoint(model="cnn", state_dict=model.state_dict(), model_args=model_args("cnn"))
        _CHECKPOINT_BYTES["cnn"] = checkpoint.training_bytes(ckpt)
    return _CHECKPOINT_BYTES["cnn"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(kind="pickle", body=b".", at=0, cut=0)  # an empty stack: IndexError inside torch's unpickler
@example(kind="pickle", body=b"K\x01K\x02a.", at=0, cut=0)  # torch's weights-only error, with its advice
@example(kind="damaged checkpoint", body=b"\x00" * 48, at=0, cut=0)
@given(
    kind=st.sampled_from(["pickle", "damaged checkpoint"]),
    body=st.binary(max_size=48),
    at=st.integers(0, 10**6),
    cut=st.integers(0, 10**6),
)
def test_any_damaged_checkpoint_is_one_checkpoint_error(tmp_path, kind, body, at, cut):
    from mnistcli import checkpoint
    from mnistcli.errors import CheckpointError

    if kind == "pickle":  # opcodes after a pickle header: what a file cut or garbled early holds
        raw = b"\x80\x02" + body
    else:  # a real checkpoint with a few bytes overwritten, then perhaps cut short
        whole = bytearray(_small_checkpoint_bytes())
        start = at % len(whole)
        whole[start : start + len(body)] = body
        raw = bytes(whole[: len(whole) - cut % 3000 if cut % 2 else len(whole)])
    path = tmp_path / "x.pt"
    path.write_bytes(raw)
    try:
        checkpoint.load(path)
    except CheckpointError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc) and "weights_only" not in str(exc)

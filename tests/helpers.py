"""Helpers shared by the tests: datasets written as real IDX files, running the CLI, checks on output."""

from __future__ import annotations

import gzip
import io
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

from mnistcli.cli import app
from mnistcli.dataset_specs import DATASETS, RAW_FILES

ROOT = Path(__file__).resolve().parents[1]
REAL_MNIST = ROOT.parent / "shared" / "data" / "mnist"
FASHION = Path("/usr/share/datasets/fashion-mnist")
# Child processes run in an empty folder of their own, never in the repository or the folder pytest was
# started from: a user's ./checkpoints/best.pt or ./data there must not change what a test sees. They
# import this checkout's mnistcli through PYTHONPATH (set in conftest.py).
# Under mutation testing (tools/mutation.sh: a copy of the project in mutants/) they run in that copy
# instead: mutmut's code in the mutated modules reads its configuration from the working folder.
UNDER_MUTATION = ROOT.name == "mutants"
NEUTRAL = ROOT if UNDER_MUTATION else Path(tempfile.mkdtemp(prefix="mnistcli-tests-cwd-"))


def _has_all(folder: Path, names: list[str]) -> bool:
    return all((folder / n).is_file() or (folder / (n + ".gz")).is_file() for n in names)


MNIST_FILES = [name for pair in RAW_FILES.values() for name in pair]
needs_real_mnist = pytest.mark.skipif(
    not _has_all(REAL_MNIST / "MNIST" / "raw", MNIST_FILES),
    reason=f"real MNIST (all four IDX files) not found in {REAL_MNIST / 'MNIST' / 'raw'}",
)
needs_real_fashion = pytest.mark.skipif(
    not _has_all(FASHION, MNIST_FILES), reason=f"Debian's dataset-fashion-mnist is not installed ({FASHION})"
)

runner = CliRunner()


def run(*args: Any, env: dict[str, str] | None = None):
    """Invoke the CLI in-process; stdout and stderr are separate (result.stdout, result.stderr)."""
    return runner.invoke(app, [str(a) for a in args], env=env)


def run_module(*args: Any, cwd: Path = NEUTRAL, timeout: int = 600, check: bool = True, **kw: Any):
    """Run `python -m mnistcli ARGS` in a child process."""
    cmd = [sys.executable, "-m", "mnistcli", *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, **kw)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    """`mnistcli serve` on a free port in a child process; returns it and its URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnistcli", "serve", "--port", str(port), *args],
        cwd=NEUTRAL,
        stdout=subprocess.DEVNULL,  # its access log: never read, so never let it fill a pipe and stall
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/api/health", timeout=1)
            return proc, url
        except OSError as exc:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read()) from exc
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def train_cmd(data_dir: Path, out_dir: Path, *extra: Any) -> list[str]:
    """A small training run on the fixture data as a child-process command line."""
    return [
        sys.executable,
        "-m",
        "mnistcli",
        "train",
        "--data-dir",
        str(data_dir),
        "--no-download",
        "--out-dir",
        str(out_dir),
        "--val-size",
        "100",
        "--batch-size",
        "16",
        *map(str, extra),
    ]


def one_error_line(result) -> str:
    """The single stderr line of an expected failure (non-zero exit, no traceback)."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def plain(text: str) -> str:
    """Text without rich's box drawing, on one line: what a usage error says."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(path).size[0] > 100


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    raw = buf.getvalue()
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    patched = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return raw[:8] + patched + raw[8 + 25 :]


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0, 0, 0x08, ndim; big-endian sizes; data)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(array)
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def render_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n MNIST-like images (light strokes on black, 28x28) of digits drawn with a font, varied in size,
    position, angle and stroke; labels cycle through 0-9. Learnable, so a small model trains on it."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    for i in range(n):
        font = ImageFont.load_default(size=int(rng.integers(34, 44)))
        canvas = Image.new("L", (56, 56), 0)
        draw = ImageDraw.Draw(canvas)
        stroke = int(rng.integers(1, 4))
        draw.text((28, 28), str(labels[i]), fill=255, font=font, anchor="mm", stroke_width=stroke, stroke_fill=255)
        shift = tuple(int(t) for t in rng.integers(-3, 4, 2))
        canvas = canvas.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR, translate=shift)
        images[i] = np.asarray(canvas.resize((28, 28), Image.BILINEAR))
    return images, labels


def write_dataset(
    root: Path,
    n_train: int = 600,
    n_test: int = 200,
    gz: bool = True,
    layout: str = "torchvision",
    dataset: str = "mnist",
) -> Path:
    """Write the four IDX files of `dataset` under `root` (in FOLDER/raw/ or flat); returns `root`."""
    spec = DATASETS[dataset]
    folder = root / spec.folder / "raw" if layout == "torchvision" else root
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = render_digits(n, seed)
        if spec.transpose:
            images = images.transpose(0, 2, 1)  # stored column by column, as EMNIST is
        img_name, lbl_name = spec.files[split]
        write_idx(folder / img_name, images, gz)
        write_idx(folder / lbl_name, labels, gz)
    return root

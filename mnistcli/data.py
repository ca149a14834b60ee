"""MNIST on disk -> whole splits as uint8 tensors, and fast batch iteration.

Each split is held once as a uint8 tensor (N, 28, 28) and int64 labels. A batch
is an index slice of a seeded permutation, turned into normalised floats on the
fly on the training device: no PIL and no per-item transform on the training
path (on a 2-core CPU that alone costs more than a small CNN).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from mnistcli import files
from mnistcli.dataset_specs import DEFAULT_VAL_SIZE, MEAN, MNIST_SPEC, STD, DatasetSpec, dataset_spec
from mnistcli.errors import DataError

# The validation split is carved with its own fixed seed, so that runs with
# different training seeds are compared on the same held-out images.
SPLIT_SEED = 12345

# IDX type codes -> numpy big-endian dtypes.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def cache_dir() -> Path:
    """The user's cache folder for mnistcli (platformdirs; $XDG_CACHE_HOME/mnistcli on Linux)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mnistcli", appauthor=False))


def default_data_dir() -> Path:
    """Where datasets are downloaded when no folder is named: `$MNISTCLI_DATA_DIR`, else the user's cache,
    shared by every folder mnistcli runs in."""
    env = os.environ.get("MNISTCLI_DATA_DIR")
    return Path(env) if env else cache_dir() / "data"


def search_dirs(
    spec: DatasetSpec, data_dir: Optional[Path] = None, recorded_dir: Optional[Path] = None
) -> tuple[list[Path], Path]:
    """The folders to look for a dataset in, in order, and the one to download it into.

    A named folder (--data-dir or $MNISTCLI_DATA_DIR) is the only one, besides where an OS
    package puts the dataset. Otherwise: the folder a checkpoint recorded, ./data (where
    earlier versions downloaded), then the user's cache.
    """
    system = [Path(d) for d in spec.system_dirs]
    named = data_dir if data_dir is not None else os.environ.get("MNISTCLI_DATA_DIR") or None
    if named is not None:
        return [Path(named), *system], Path(named)
    default = default_data_dir()
    recorded = [Path(recorded_dir)] if recorded_dir else []
    return [*recorded, Path("data"), default, *system], default


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzipped or not) into an array; corrupt files raise DataError naming the file.

    A gzipped file is decompressed once: the array is kept in the user's cache as .npy, under the
    file's name, size and CRC-32, and read from there while the file stays the same.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if raw[:2] != b"\x1f\x8b":
        return parse_idx(raw, str(path))
    cached = cache_dir() / "idx" / f"{path.name}-{len(raw)}-{zlib.crc32(raw):08x}.npy"
    array = _read_cached(cached)
    if array is None:
        try:
            array = parse_idx(gzip.decompress(raw), str(path))
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
        _write_cached(cached, array)
    return array


def _read_cached(path: Path) -> Optional[np.ndarray]:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # absent, unreadable or damaged: decompress again
        return None


def _write_cached(path: Path, array: np.ndarray) -> None:
    """Best effort: a cache that cannot be written only costs the decompression next time (and one that
    a crash leaves half written is never read: the write is atomic)."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write(path, buf.getvalue(), durable=False)
    except OSError:
        pass


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file: magic (0, 0, type, ndim), ndim big-endian sizes, data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number)")
    dtype = _IDX_DTYPES.get(raw[2])
    ndim = raw[3]
    if dtype is None or ndim == 0:
        raise DataError(f"{name}: not an IDX file (type 0x{raw[2]:02x}, {ndim} dimensions)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{name}: truncated or corrupt IDX file: header says {shape} "
            f"({expected} bytes of data), file has {len(raw) - header}"
        )
    native = np.dtype(dtype.newbyteorder("="))
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(native)


def _candidates(base: str) -> list[str]:
    # Also accept the dotted spelling some mirrors use (train-images.idx3-ubyte).
    dotted = base.replace("-idx", ".idx")
    return [base, base + ".gz", dotted, dotted + ".gz"]


def find_raw_files(
    root: Path, spec: DatasetSpec = MNIST_SPEC, splits: Sequence[str] = ("train", "test")
) -> Optional[dict[str, Path]]:
    """The IDX files of `splits` under `root`, flat or in torchvision's `FOLDER/raw/` layout; None if
    any is missing (evaluating the test split needs only the two test files)."""
    wanted = spec.raw_files(splits)
    for folder in (root, root / spec.folder / "raw", root / "raw", root / spec.folder):
        found = {}
        for base in wanted:
            for name in _candidates(base):
                if (folder / name).is_file():
                    found[base] = folder / name
                    break
        if len(found) == len(wanted):
            return found
    return None


def shown(path: Path) -> str:
    """A folder as a message shows it: relative ones start with ./ so that "data" reads as a folder."""
    text = str(path)
    return text if Path(path).is_absolute() or text.startswith(".") else f".{os.sep}{text}"


def missing_data_message(
    looked: list[Path], spec: DatasetSpec = MNIST_SPEC, splits: Sequence[str] = ("train", "test")
) -> str:
    where = ", ".join(shown(p) for p in dict.fromkeys(looked))
    return (
        f"{spec.title} not found (looked in {where}) and it could not be downloaded. Put the files "
        f"{', '.join(f + '.gz' for f in spec.raw_files(splits))} (gzipped or not) in a folder (or its "
        f"{spec.folder}/raw/) and pass --data-dir FOLDER (or set MNISTCLI_DATA_DIR)."
    )


def download(root: Path, spec: DatasetSpec = MNIST_SPEC, looked: Optional[list[Path]] = None) -> None:
    """Fetch a dataset with torchvision into `root/FOLDER/raw`; any failure becomes one clear DataError
    that says why (no network, an HTTP status, a checksum). torchvision's progress goes to stderr, so
    that `--json` output stays one document."""
    import torchvision.datasets  # imported here: torchvision is slow to import

    try:
        root.mkdir(parents=True, exist_ok=True)
        cls = getattr(torchvision.datasets, spec.torchvision_class)
        with contextlib.redirect_stdout(sys.stderr):
            for train in (True, False):
                cls(str(root), train=train, download=True, **dict(spec.torchvision_args))
    except Exception as exc:
        message = f"{missing_data_message(looked or [root], spec)} (download failed: {download_failure(exc)})"
        raise DataError(message) from exc


def download_failure(exc: BaseException) -> str:
    """Why torchvision could not download: its error lists each mirror's own error after "got:"."""
    text = str(exc).strip()
    lines = text.splitlines()
    causes = [lines[i + 1].strip() for i, line in enumerate(lines[:-1]) if line.rstrip().endswith("got:")]
    causes = [c for c in causes if c] or [text.splitlines()[0] if text else type(exc).__name__]
    cause = causes[-1]
    network = ("urlopen error", "Name or service not known", "name resolution", "Network is unreachable", "timed out")
    if any(word in cause for word in network):
        reason = f"no network ({cause.strip('<>')})"
    elif "HTTP Error" in cause:
        reason = cause.replace("HTTP Error", "HTTP")
    elif "not found or corrupted" in cause or "md5" in cause.lower() or "checksum" in cause.lower():
        reason = "checksum mismatch: the file downloaded is not the published one"
    else:
        reason = cause
    mirrors = f"; tried {len(causes)} mirrors" if len(causes) > 1 else ""
    return reason[:300] + mirrors


def locate(
    spec: DatasetSpec,
    data_dir: Optional[Path] = None,
    *,
    download_ok: bool = True,
    recorded_dir: Optional[Path] = None,
    splits: Sequence[str] = ("train", "test"),
) -> tuple[Path, dict[str, Path]]:
    """The folder that holds the IDX files of `splits` and the files, downloading the dataset first
    when they are nowhere and that is allowed."""
    looked, target = search_dirs(spec, data_dir, recorded_dir)
    for root in looked:
        files = find_raw_files(root, spec, splits)
        if files is not None:
            return root, files
    if not download_ok:
        raise DataError(missing_data_message(looked, spec, splits) + " (download disabled by --no-download)")
    download(target, spec, looked)
    files = find_raw_files(target, spec, splits)
    if files is None:
        raise DataError(missing_data_message(looked, spec, splits))
    return target, files


@dataclass
class Split:
    """One split held whole: images (N, 28, 28) uint8 and labels (N,) int64."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    mean: float = MEAN  # the dataset's normalisation
    std: float = STD

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.name, self.images.to(device), self.labels.to(device), self.mean, self.std)

    def subset(self, index: torch.Tensor, name: Optional[str] = None) -> Split:
        return Split(name or self.name, self.images[index], self.labels[index], self.mean, self.std)


@dataclass
class Dataset:
    """The splits of one run: train (minus validation), optional val, and test."""

    train: Split
    test: Split
    val: Optional[Split] = None
    source: str = ""  # the folder of the IDX files
    spec: DatasetSpec = MNIST_SPEC
    root: Optional[Path] = None  # the data folder they were found in (absolute)

    @property
    def classes(self) -> list[str]:
        return list(self.spec.classes)

    def split(self, name: str) -> Split:
        if name == "val":
            if self.val is None:
                raise DataError("there is no validation split (--val-size 0)")
            return self.val
        return {"train": self.train, "test": self.test}[name]


def _load_split(name: str, images_path: Path, labels_path: Path, spec: DatasetSpec = MNIST_SPEC) -> Split:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if spec.transpose and images.ndim == 3:
        images = images.transpose(0, 2, 1)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images of 28x28, got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{labels_path}: {labels.shape[0] if labels.ndim else 0} labels for {images.shape[0]} images")
    if labels.size and int(labels.max()) >= len(spec.classes):
        raise DataError(f"{labels_path}: label {int(labels.max())} is out of range 0-{len(spec.classes) - 1}")
    return Split(
        name,
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(labels.astype(np.int64)),
        spec.mean,
        spec.std,
    )


def validation_indices(n: int, val_size: int, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) of a seeded split of n training images."""
    if not 0 <= val_size < n:
        raise DataError(f"a validation split of {val_size} images does not fit in {n} training images (--val-size)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:].sort().values, order[:val_size].sort().values


def load_dataset(
    name: str = "mnist",
    data_dir: Optional[Path] = None,
    *,
    download_ok: bool = True,
    val_size: int = DEFAULT_VAL_SIZE,
    splits: tuple[str, ...] = ("train", "test"),
    recorded_dir: Optional[Path] = None,
) -> Dataset:
    """Read a dataset (see `locate` for where from), with a validation split of `val_size`
    training images."""
    spec = dataset_spec(name)
    needed = tuple(sorted(set(splits) | {"test"}))
    root, files = locate(spec, data_dir, download_ok=download_ok, recorded_dir=recorded_dir, splits=needed)
    loaded = {}
    for split in needed:
        img_name, lbl_name = spec.files[split]
        loaded[split] = _load_split(split, files[img_name], files[lbl_name], spec)
    test = loaded["test"]
    train = loaded.get("train", test.subset(torch.arange(0), "train"))
    val = None
    if "train" in loaded and val_size > 0:
        train_idx, val_idx = validation_indices(len(train), val_size)
        train, val = train.subset(train_idx, "train"), train.subset(val_idx, "val")
    source = str(files[spec.files["test"][0]].parent)
    return Dataset(train=train, test=test, val=val, source=source, spec=spec, root=Path(root).resolve())


def normalize(images: torch.Tensor, mean: float = MEAN, std: float = STD) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28), scaled to [0, 1] then standardised."""
    x = images.unsqueeze(1).to(torch.float32)
    # (x / 255 - MEAN) / STD folded into one multiply-add. Channels-last, as the models are
    # (engine.place_model): measured 1.4x faster convolutions on a 2-core CPU.
    return x.mul_(1.0 / (255.0 * std)).sub_(mean / std).contiguous(memory_format=torch.channels_last)


def num_batches(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size


def iterate_batches(
    split: Split,
    batch_size: int,
    *,
    order: Optional[torch.Tensor] = None,
    start: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalised (x, y) batches of `split`, in `order` when given, from batch number `start`."""
    images, labels = split.images, split.labels
    if order is not None:
        # One gather for the whole epoch (47 MB for MNIST), then plain slices: cheaper than a
        # gather per batch.
        images, labels = images[order], labels[order]
    for lo in range(start * batch_size, len(labels), batch_size):
        yield normalize(images[lo : lo + batch_size], split.mean, split.std), labels[lo : lo + batch_size]

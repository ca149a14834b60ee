"""Checkpoints: atomic save, safe load (weights_only), and rebuilding the model from one.

A checkpoint is a dict of plain Python values and tensors (see FORMAT below), so
`torch.load(path, weights_only=True)` reads it and nothing in it can run code.
"""

from __future__ import annotations

import datetime as _dt
import io
from dataclasses import replace
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from mnistcli.errors import CheckpointError, MnistCliError
from mnistcli.data import DATASETS, DatasetSpec
from mnistcli.engine import place_model
from mnistcli.models import create_model

FORMAT_VERSION = 1
# Keys every checkpoint written by mnistcli has:
FORMAT = (
    "format_version", "model", "model_args", "state_dict", "optimizer", "scheduler", "epoch",
    "metrics", "history", "config", "normalization", "classes", "dataset", "rng",
    "torch_version", "created",
)  # fmt: skip


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def atomic_write(path: Path, write: Any) -> None:
    """Call `write(fileobj)` on a temp file beside `path`, fsync, then os.replace it over `path`.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode of a new file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(payload: dict, *paths: Path) -> None:
    """Serialise `payload` once and write it atomically to each of `paths`, in order."""
    path = paths[0]
    try:
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        for path in paths:
            atomic_write(path, lambda f: f.write(data))
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None


def load(path: Path, map_location: str | torch.device = "cpu", model_name: Optional[str] = None) -> dict:
    """Read a checkpoint safely: weights_only unpickling, any device mapped to `map_location`.

    `model_name` lets a bare `model.state_dict()` saved by other tools load as that architecture.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (or, before 1.6, a raw pickle starting with 0x80).
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        unsafe = re.search(r"Unsupported (global|operand)[^\n.]*|GLOBAL [\w.]+", text)
        if unsafe:
            raise CheckpointError(
                f"{path}: refused: it holds objects other than tensors and plain values, "
                f"which could run code when loaded ({unsafe.group(0).strip()[:200]})"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None
    if model_name is not None and _is_state_dict(ckpt) and "format_version" not in ckpt:
        return bare_state_dict_checkpoint(ckpt, model_name)
    return validate(ckpt, path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def validate(ckpt: Any, path: Path) -> dict:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not an mnistcli checkpoint (holds a {type(ckpt).__name__})")
    if "format_version" not in ckpt:
        if _is_state_dict(ckpt):
            raise CheckpointError(
                f"{path}: a bare state_dict without mnistcli metadata; "
                "pass --model NAME to load it into that architecture"
            )
        raise CheckpointError(f"{path}: not an mnistcli checkpoint (no format_version)")
    version = ckpt["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version!r} is newer than this mnistcli reads "
            f"({FORMAT_VERSION}); upgrade mnistcli"
        )
    for key in ("model", "model_args", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no {key!r}")
    return ckpt


def build_model(ckpt: dict, path: Path | str = "checkpoint", device: Optional[torch.device] = None) -> nn.Module:
    """Rebuild the network a checkpoint describes and load its weights."""
    try:
        model = create_model(ckpt["model"], **dict(ckpt.get("model_args") or {}))
    except MnistCliError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{path}: weights do not fit model {ckpt['model']!r}: {' '.join(detail[1:3]).strip()[:300]}"
        ) from None
    model = place_model(model, device if device is not None else "cpu")
    model.eval()
    return model


def bare_state_dict_checkpoint(state_dict: dict, model_name: str) -> dict:
    """Wrap a plain `model.state_dict()` saved by other tools so it can be used with --model NAME."""
    return {
        "format_version": FORMAT_VERSION,
        "model": model_name,
        "model_args": {},
        "state_dict": state_dict,
        "epoch": None,
        "metrics": {},
        "config": {},
        "normalization": {"mean": 0.1307, "std": 0.3081},
        "classes": [str(d) for d in range(10)],
        "dataset": "mnist",
    }


def dataset_of(ckpt: dict) -> DatasetSpec:
    """The dataset a checkpoint was trained on (MNIST for bare state dicts), with its stored normalisation."""
    spec = DATASETS.get(ckpt.get("dataset") or "mnist", DATASETS["mnist"])
    norm = ckpt.get("normalization") or {}
    return replace(spec, mean=float(norm.get("mean", spec.mean)), std=float(norm.get("std", spec.std)))


def class_names(ckpt: dict) -> list[str]:
    return list(ckpt.get("classes") or [str(d) for d in range(10)])


def describe(ckpt: dict) -> str:
    """One line saying what a checkpoint is: model, epoch, recorded accuracy."""
    parts = [f"model {ckpt.get('model')}"]
    if ckpt.get("epoch") is not None:
        parts.append(f"epoch {ckpt['epoch']}")
    metrics = ckpt.get("metrics") or {}
    for key, label in (("val_acc", "val"), ("test_acc", "test")):
        if isinstance(metrics.get(key), float):
            parts.append(f"{label} acc {100 * metrics[key]:.2f}%")
    return ", ".join(parts)


PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "mnistcli-cnn.pt"
LOCAL_BEST = Path("checkpoints") / "best.pt"


def resolve(path: Optional[Path]) -> tuple[Path, str]:
    """The checkpoint to use and why: the one given, else ./checkpoints/best.pt, else the bundled one."""
    if path is not None:
        return Path(path), "given"
    if LOCAL_BEST.is_file():
        return LOCAL_BEST, "local best (./checkpoints/best.pt)"
    if PRETRAINED.is_file():
        return PRETRAINED, "bundled pretrained"
    raise CheckpointError(
        "no checkpoint: ./checkpoints/best.pt does not exist and no pretrained model is bundled; "
        "train one with `mnistcli train` or pass --checkpoint PATH"
    )


def load_model(
    path: Optional[Path], device: torch.device, model_name: Optional[str] = None
) -> tuple[nn.Module, dict, Path, str]:
    """Resolve, load and rebuild: (model on `device`, checkpoint dict, path, why this one)."""
    path, why = resolve(path)
    ckpt = load(path, map_location="cpu", model_name=model_name)
    return build_model(ckpt, path, device), ckpt, path, why

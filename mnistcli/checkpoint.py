"""The one owner of mnistcli's model files: what they hold, how they are written and read.

Two kinds of file, one `Checkpoint` in memory:
- a training checkpoint (`.pt`): a dict of plain Python values and tensors (the fields of
  `Checkpoint`), read with `torch.load(weights_only=True)`, so nothing in it can run code;
- an inference model (`.safetensors`, made by `mnistcli export`): the weights to use, with
  what is needed to use them as JSON in the header; no pickle at all, no training state.

Writes are atomic (temp file beside the target, fsync, rename, fsync of the folder).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from mnistcli import __version__, models
from mnistcli.datasets import DATASETS, DIGITS, MNIST_SPEC, DatasetSpec
from mnistcli.engine import place_model
from mnistcli.errors import CheckpointError, MnistCliError
from mnistcli.recipes import Recipe

FORMAT_VERSION = 1
SAFETENSORS_SUFFIX = ".safetensors"
_METADATA_KEY = "mnistcli"  # the safetensors header entry that holds our JSON


@dataclass
class Checkpoint:
    """Everything a checkpoint holds. Training state (optimizer to partial) is None in
    inference models and in bare state dicts loaded with --model."""

    model: str
    state_dict: dict[str, torch.Tensor]  # the weights to evaluate: the weight average when there is one
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    classes: list[str] = field(default_factory=lambda: list(DIGITS))
    normalization: dict[str, float] = field(default_factory=lambda: {"mean": MNIST_SPEC.mean, "std": MNIST_SPEC.std})
    epoch: Optional[int] = None  # epochs finished
    metrics: dict[str, Any] = field(default_factory=dict)  # the epoch's losses and accuracies
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per finished epoch
    best_epoch: Optional[int] = None
    config: dict[str, Any] = field(default_factory=dict)  # recipe, data_dir, device, precision, command
    optimizer: Optional[dict[str, Any]] = None
    scheduler: Optional[dict[str, Any]] = None
    rng: Optional[dict[str, torch.Tensor]] = None  # torch's global RNG and the run's generator
    train_state_dict: Optional[dict[str, torch.Tensor]] = None  # the raw weights when state_dict is an average
    ema_steps: Optional[int] = None
    partial: Optional[dict[str, Any]] = None  # where a stopped epoch stopped
    torch_version: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: Any, path: Path | str = "checkpoint") -> Checkpoint:
        """Check what a training checkpoint file held and wrap it; CheckpointError says what is wrong."""
        if not isinstance(values, dict):
            raise CheckpointError(f"{path}: not an mnistcli checkpoint (holds a {type(values).__name__})")
        if "format_version" not in values:
            if _is_state_dict(values):
                raise CheckpointError(
                    f"{path}: a bare state_dict without mnistcli metadata; "
                    "pass --model NAME to load it into that architecture"
                )
            raise CheckpointError(f"{path}: not an mnistcli checkpoint (no format_version)")
        _check_version(values["format_version"], path)
        if not isinstance(values.get("model"), str):
            raise CheckpointError(f"{path}: checkpoint names no model")
        if not isinstance(values.get("state_dict"), dict):
            raise CheckpointError(f"{path}: checkpoint has no state_dict")
        names = {f.name for f in fields(cls)}
        # None stands for "not there" in files of every version: take the field's default.
        return cls(**{k: v for k, v in values.items() if k in names and v is not None})

    # Reading it --------------------------------------------------------------------------
    @property
    def recipe(self) -> Recipe:
        return Recipe.from_dict(self.saved_recipe or {})

    @property
    def saved_recipe(self) -> Optional[dict[str, Any]]:
        """The recipe as saved (None for a bare state dict)."""
        return self.config.get("recipe")

    @property
    def spec(self) -> DatasetSpec:
        """The dataset it was trained on (MNIST for bare state dicts), with its stored normalisation."""
        spec = DATASETS.get(self.dataset, MNIST_SPEC)
        return replace(spec, mean=float(self.normalization["mean"]), std=float(self.normalization["std"]))

    @property
    def data_dir(self) -> Optional[Path]:
        """The data folder the run was given (None when it used the default)."""
        value = self.config.get("data_dir")
        return Path(value) if value else None

    @property
    def resumable(self) -> bool:
        return self.optimizer is not None and self.rng is not None

    def describe(self) -> str:
        """One line saying what it is: model, epoch, recorded accuracy."""
        parts = [f"model {self.model}"]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}")
        for key, label in (("val_acc", "val"), ("test_acc", "test")):
            if isinstance(self.metrics.get(key), float):
                parts.append(f"{label} acc {100 * self.metrics[key]:.2f}%")
        return ", ".join(parts)

    def inference_only(self) -> Checkpoint:
        """The same model without training state, history or local paths: what `export` ships."""
        recipe = self.saved_recipe
        return Checkpoint(
            model=self.model,
            state_dict=self.state_dict,
            model_args=dict(self.model_args),
            dataset=self.dataset,
            classes=list(self.classes),
            normalization=dict(self.normalization),
            epoch=self.epoch,
            metrics=dict(self.metrics),
            config={"recipe": dict(recipe)} if recipe else {},
            torch_version=self.torch_version,
            created=self.created,
        )


def _check_version(version: Any, path: Path | str) -> None:
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version!r} is newer than this mnistcli reads ({FORMAT_VERSION}); "
            "upgrade mnistcli"
        )


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# Writing ---------------------------------------------------------------------------------
TEMP_SUFFIX = ".tmp"


def temp_prefix(path: Path) -> str:
    """Temp files of `path` are named `.NAME.XXXXXXXX.tmp` beside it."""
    return f".{Path(path).name}."


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync it, rename it over `path`, fsync the folder.

    A crash at any moment leaves either the old file or the new one, never half of one (and
    perhaps a temp file, which `remove_stale_temps` clears).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode of a new file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (not every file system allows it)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temp files that a crashed save left in `folder`; returns them."""
    stale = [p for p in Path(folder).glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def to_bytes(ckpt: Checkpoint) -> bytes:
    """The bytes of a training checkpoint file."""
    buf = io.BytesIO()
    torch.save(ckpt.to_dict(), buf)
    return buf.getvalue()


def write_files(data: bytes, paths: list[Path]) -> None:
    """Write the same bytes atomically to each of `paths`, in order; OSError becomes CheckpointError."""
    for path in paths:
        try:
            atomic_write(path, data)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from exc


def save(ckpt: Checkpoint, path: Path) -> None:
    write_files(to_bytes(ckpt), [Path(path)])


def inference_bytes(ckpt: Checkpoint) -> bytes:
    """The bytes of an inference model: safetensors weights with our metadata as JSON in the header."""
    from safetensors.torch import save as save_safetensors

    meta = {
        "format_version": FORMAT_VERSION,
        "model": ckpt.model,
        "model_args": ckpt.model_args,
        "dataset": ckpt.dataset,
        "classes": ckpt.classes,
        "normalization": ckpt.normalization,
        "epoch": ckpt.epoch,
        "metrics": ckpt.metrics,
        "recipe": ckpt.saved_recipe,
        "torch_version": ckpt.torch_version or str(torch.__version__),
        "mnistcli_version": __version__,
        "created": ckpt.created or now_iso(),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()}
    return save_safetensors(tensors, metadata={_METADATA_KEY: json.dumps(meta)})


def export(ckpt: Checkpoint, path: Path) -> None:
    """Write an inference model (safetensors) atomically."""
    try:
        atomic_write(Path(path), inference_bytes(ckpt))
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from exc


# Reading ---------------------------------------------------------------------------------
def load(path: Path, map_location: str | torch.device = "cpu", model_name: Optional[str] = None) -> Checkpoint:
    """Read a training checkpoint (weights_only unpickling) or an inference model (safetensors);
    tensors of any device are mapped to `map_location`.

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
        head = f.read(9)
    if _is_safetensors(head):
        return _load_safetensors(path, map_location)
    # torch.save writes a zip archive (or, before 1.6, a raw pickle starting with 0x80).
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise CheckpointError(f"{path}: not a readable model file (not a PyTorch checkpoint or a safetensors file)")
    raw = _torch_load(path, map_location)
    if model_name is not None and _is_state_dict(raw) and "format_version" not in raw:
        return Checkpoint(model=model_name, state_dict=raw, model_args=models.model_args(model_name))
    return Checkpoint.from_dict(raw, path)


def _is_safetensors(head: bytes) -> bool:
    # 8 bytes: little-endian length of the JSON header, which starts with "{".
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000


def _torch_load(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"Unsupported (global|operand)[^\n.]*|GLOBAL [\w.]+", str(exc))
        if unsafe:
            raise CheckpointError(
                f"{path}: refused: it holds objects other than tensors and plain values, "
                f"which could run code when loaded ({unsafe.group(0).strip()[:200]})"
            ) from exc
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_unpickler_reason(exc)})") from exc
    except Exception as exc:  # a damaged file can make the zip reader or the unpickler fail in any way
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from exc


def _unpickler_reason(exc: BaseException) -> str:
    """torch's weights-only errors open with advice on weights_only=False; the reason comes after it."""
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
    return found.group(1).strip()[:200] if found else _first_line(exc)


def _load_safetensors(path: Path, map_location: str | torch.device) -> Checkpoint:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k).to(map_location) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from exc
    try:
        meta = json.loads(header[_METADATA_KEY])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: a safetensors file without mnistcli metadata") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: a safetensors file without mnistcli metadata")
    _check_version(meta.get("format_version"), path)
    if not isinstance(meta.get("model"), str):
        raise CheckpointError(f"{path}: its metadata names no model")
    recipe = meta.get("recipe")
    return Checkpoint(
        model=meta["model"],
        state_dict=tensors,
        model_args=dict(meta.get("model_args") or {}),
        dataset=meta.get("dataset") or "mnist",
        classes=list(meta.get("classes") or DIGITS),
        normalization=dict(meta.get("normalization") or {"mean": MNIST_SPEC.mean, "std": MNIST_SPEC.std}),
        epoch=meta.get("epoch"),
        metrics=dict(meta.get("metrics") or {}),
        config={"recipe": recipe} if recipe else {},
        torch_version=str(meta.get("torch_version") or ""),
        created=str(meta.get("created") or ""),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def build_model(ckpt: Checkpoint, path: Path | str = "checkpoint", device: Optional[torch.device] = None) -> nn.Module:
    """Rebuild the network a checkpoint describes, load its weights, and put it in eval mode on `device`."""
    try:
        model = models.build(ckpt.model, dict(ckpt.model_args))
    except MnistCliError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{path}: weights do not fit model {ckpt.model!r}: {' '.join(detail[1:3]).strip()[:300]}"
        ) from exc
    model = place_model(model, device if device is not None else "cpu")
    model.eval()
    return model


# Which model file a command uses ------------------------------------------------------------
PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "mnistcli-cnn.safetensors"
LOCAL_BEST = Path("checkpoints") / "best.pt"


def resolve(path: Optional[Path]) -> tuple[Path, str]:
    """The model file to use and why: the one given, else ./checkpoints/best.pt, else the bundled one."""
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


@dataclass
class LoadedModel:
    """A network ready to use, with the checkpoint it came from."""

    net: nn.Module
    checkpoint: Checkpoint
    path: Path
    source: str  # why this file: "given", "local best (...)", "bundled pretrained"

    def info(self) -> dict[str, Any]:
        """What `--json` output says about the model."""
        ck = self.checkpoint
        return {
            "path": str(self.path),
            "source": self.source,
            "model": ck.model,
            "epoch": ck.epoch,
            "metrics": ck.metrics,
            "summary": ck.describe(),
        }


def load_model(path: Optional[Path], device: torch.device, model_name: Optional[str] = None) -> LoadedModel:
    """Resolve, load and rebuild the model a command uses."""
    path, source = resolve(path)
    ckpt = load(path, map_location="cpu", model_name=model_name)
    return LoadedModel(build_model(ckpt, path, device), ckpt, path, source)

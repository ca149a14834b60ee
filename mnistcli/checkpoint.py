"""The one owner of mnistcli's model files: what they hold, how they are written and read.

Two kinds of file, one `Checkpoint` in memory:
- a training checkpoint (`.pt`): a dict of plain Python values and tensors (the fields of
  `Checkpoint`), read with `torch.load(weights_only=True)`, so nothing in it can run code;
- an inference model (`.safetensors`, made by `mnistcli export`): the weights to use, with the
  fields marked `inference` (what is needed to use them) as JSON in the header; no pickle at all,
  no training state. The ONNX export carries the same JSON in its metadata.

Every file is written through `files.atomic_write`.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import pickle
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from mnistcli import __version__, files, models
from mnistcli.dataset_specs import DATASETS, DIGITS, MNIST_SPEC, DatasetSpec
from mnistcli.devices import place_model
from mnistcli.errors import CheckpointError, MnistCliError
from mnistcli.history import HistoryRow
from mnistcli.settings import Recipe

FORMAT_VERSION = 1
_METADATA_KEY = "mnistcli"  # the safetensors header entry that holds our JSON


def _inference(**kw: Any) -> Any:
    """A field that inference files carry too (in their JSON metadata)."""
    return field(metadata={"inference": True}, **kw)


@dataclass
class StopPosition:
    """Where a stopped epoch stopped: written when a run stops mid-epoch, read when it resumes."""

    epoch: int  # the epoch in progress (1-based)
    batch: int  # batches of it done
    loss_sum: float  # the epoch's training sums so far
    correct: int
    seen: int
    seconds: float
    epoch_start_rng: torch.Tensor  # the run generator's state when the epoch began (its permutation)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], finished: int) -> StopPosition:
        """As any version wrote it; files before 0.2 name no epoch: it is the one after those finished."""
        return cls(**{**{"epoch": finished + 1}, **{f.name: values[f.name] for f in fields(cls) if f.name in values}})


@dataclass
class RunConfig:
    """How a checkpoint's run was set up: its recipe, the data folder it was given, where and how it computed."""

    recipe: Optional[dict[str, Any]] = None  # None for a bare state dict
    data_dir: Optional[str] = None
    device: str = ""
    precision: str = ""
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


@dataclass
class Checkpoint:
    """Everything a checkpoint holds. Training state (optimizer to stopped_at) is None in
    inference models and in bare state dicts loaded with --model."""

    model: str = _inference()
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)  # the weights to evaluate (the average)
    model_args: dict[str, Any] = _inference(default_factory=dict)
    dataset: str = _inference(default="mnist")
    classes: list[str] = _inference(default_factory=lambda: list(DIGITS))
    normalization: dict[str, float] = _inference(
        default_factory=lambda: {"mean": MNIST_SPEC.mean, "std": MNIST_SPEC.std}
    )
    epoch: Optional[int] = _inference(default=None)  # epochs finished
    metrics: dict[str, Any] = _inference(default_factory=dict)  # the epoch's losses and accuracies
    temperature: float = _inference(default=1.0)  # probabilities are softmax(logits / temperature): calibrated
    config: RunConfig = _inference(default_factory=RunConfig)  # inference files keep only its recipe
    history: list[HistoryRow] = field(default_factory=list)  # one row per finished epoch
    best_epoch: Optional[int] = None
    optimizer: Optional[dict[str, Any]] = None
    scheduler: Optional[dict[str, Any]] = None
    rng: Optional[dict[str, torch.Tensor]] = None  # torch's global RNG and the run's generator
    train_state_dict: Optional[dict[str, torch.Tensor]] = None  # the raw weights when state_dict is an average
    ema_steps: Optional[int] = None
    stopped_at: Optional[StopPosition] = None  # where a stopped epoch stopped
    torch_version: str = _inference(default="")
    mnistcli_version: str = _inference(default="")
    created: str = _inference(default="")
    format_version: int = _inference(default=FORMAT_VERSION)

    # The file's form --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """What a .pt file holds: plain values and tensors, one key per field."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["history"] = [row.to_dict() for row in self.history]
        out["config"] = self.config.to_dict()
        out["stopped_at"] = self.stopped_at.to_dict() if self.stopped_at is not None else None
        return out

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
        if not isinstance(values.get("state_dict"), dict):
            raise CheckpointError(f"{path}: checkpoint has no state_dict")
        return cls._of(values, values["state_dict"], path)

    @classmethod
    def _of(cls, values: dict[str, Any], state_dict: dict[str, torch.Tensor], path: Path | str) -> Checkpoint:
        if not isinstance(values.get("model"), str):
            raise CheckpointError(f"{path}: checkpoint names no model")
        names = {f.name for f in fields(cls)}
        # None stands for "not there" in files of every version: take the field's default.
        kept = {k: v for k, v in values.items() if k in names and v is not None}
        kept["state_dict"] = state_dict
        kept["history"] = [HistoryRow.from_dict(row) for row in kept.get("history", [])]
        kept["config"] = RunConfig.from_dict(kept.get("config", {}))
        stop = kept.pop("stopped_at", None) or values.get("partial")  # "partial" before 0.2
        ckpt = cls(**kept)
        if stop:
            ckpt.stopped_at = StopPosition.from_dict(stop, finished=ckpt.epoch or 0)
        return ckpt

    # Inference files ----------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """The fields an inference file carries, as JSON values."""
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("inference")}
        meta["config"] = {"recipe": self.config.recipe} if self.config.recipe else {}
        return meta

    @classmethod
    def from_metadata(cls, meta: Any, state_dict: dict[str, torch.Tensor], path: Path | str) -> Checkpoint:
        if not isinstance(meta, dict):
            raise CheckpointError(f"{path}: a safetensors file without mnistcli metadata")
        _check_version(meta.get("format_version"), path)
        if "recipe" in meta:  # 0.1 kept the recipe at the top
            meta = {**meta, "config": {"recipe": meta["recipe"]}}
        inference = {f.name for f in fields(cls) if f.metadata.get("inference")}
        return cls._of({k: v for k, v in meta.items() if k in inference}, state_dict, path)

    def inference_only(self) -> Checkpoint:
        """The same model without training state, history or local paths: what `export` ships."""
        return replace(
            Checkpoint(model=self.model, state_dict=self.state_dict),
            **{k: v for k, v in self.metadata().items() if k != "config"},
            config=RunConfig(recipe=self.config.recipe),
        )

    # Reading it --------------------------------------------------------------------------
    @property
    def recipe(self) -> Recipe:
        return Recipe.from_dict(self.config.recipe or {})

    @property
    def spec(self) -> DatasetSpec:
        """The dataset it was trained on (MNIST for bare state dicts), with its stored normalisation."""
        spec = DATASETS.get(self.dataset, MNIST_SPEC)
        return replace(spec, mean=float(self.normalization["mean"]), std=float(self.normalization["std"]))

    @property
    def data_dir(self) -> Optional[Path]:
        """The data folder the run was given (None when it used the default)."""
        return Path(self.config.data_dir) if self.config.data_dir else None

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


def rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of the random state: torch's global RNG and the run's own generator."""
    return {"torch": torch.get_rng_state(), "generator": generator.get_state()}


def stamped(ckpt: Checkpoint) -> Checkpoint:
    """The checkpoint with the versions and the time it is written."""
    return replace(ckpt, torch_version=str(torch.__version__), mnistcli_version=__version__, created=now_iso())


# Writing ---------------------------------------------------------------------------------
def training_bytes(ckpt: Checkpoint) -> bytes:
    """The bytes of a training checkpoint file."""
    buf = io.BytesIO()
    torch.save(ckpt.to_dict(), buf)
    return buf.getvalue()


def write_checkpoint(data: bytes, paths: list[Path]) -> None:
    """Write the same checkpoint bytes to each of `paths`, in order; OSError becomes CheckpointError."""
    for path in paths:
        write_file(path, data, "checkpoint ")


def write_file(path: Path, data: bytes, what: str = "") -> None:
    try:
        files.atomic_write(Path(path), data)
    except OSError as exc:
        raise CheckpointError(f"cannot write {what}{path}: {exc.strerror or exc}") from exc


def inference_bytes(ckpt: Checkpoint) -> bytes:
    """The bytes of an inference model: safetensors weights with the metadata as JSON in the header."""
    from safetensors.torch import save as save_safetensors

    tensors = {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()}
    meta = ckpt.metadata()
    meta["torch_version"] = meta["torch_version"] or str(torch.__version__)  # a bare state dict has none
    meta["mnistcli_version"] = meta["mnistcli_version"] or __version__
    meta["created"] = meta["created"] or now_iso()
    return save_safetensors(tensors, metadata={_METADATA_KEY: json.dumps(meta)})


def write_inference_file(ckpt: Checkpoint, path: Path) -> None:
    """Write an inference model (safetensors) of `ckpt`."""
    write_file(path, inference_bytes(ckpt.inference_only()))


# Reading ---------------------------------------------------------------------------------
def load(path: Path, map_location: str | torch.device = "cpu", model_name: Optional[str] = None) -> Checkpoint:
    """Read a training checkpoint (weights_only unpickling) or an inference model (safetensors);
    tensors of any device are mapped to `map_location`. A run folder means its last.pt.

    `model_name` lets a bare `model.state_dict()` saved by other tools load as that architecture.
    """
    path = Path(path)
    if path.is_dir():
        path = path / files.LAST
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
    return Checkpoint.from_metadata(meta, tensors, path)


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
LOCAL_BEST = files.RUN_DIR / files.BEST


def choose_model_file(path: Optional[Path]) -> tuple[Path, str]:
    """The model file to use and why: the one given, else ./checkpoints/best.pt, else the bundled one."""
    if path is not None:
        return Path(path), "given"
    if LOCAL_BEST.is_file():
        return LOCAL_BEST, f"local best (./{LOCAL_BEST})"
    if PRETRAINED.is_file():
        return PRETRAINED, "bundled pretrained"
    raise CheckpointError(
        f"no checkpoint: ./{LOCAL_BEST} does not exist and no pretrained model is bundled; "
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
    """Choose, load and rebuild the model a command uses."""
    path, source = choose_model_file(path)
    ckpt = load(path, map_location="cpu", model_name=model_name)
    return LoadedModel(build_model(ckpt, path, device), ckpt, path, source)

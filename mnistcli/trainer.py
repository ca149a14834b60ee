"""A training run: data, model, optimiser, epochs, checkpoints, history and resume.

Reports through a `Hooks` object and never prints; `cli` and `ui` draw it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from mnistcli import checkpoint, distributed
from mnistcli.augment import random_shift
from mnistcli.data import Dataset, load_dataset, num_batches
from mnistcli.engine import (
    BatchEvent, Stats, WeightAverage, evaluate, place_model, resolve_precision, select_device, train_epoch,
)  # fmt: skip
from mnistcli.errors import CheckpointError, OptionError
from mnistcli.models import count_parameters, create_model
from mnistcli.recipes import Recipe, check, make_optimizer, make_scheduler

HISTORY_FIELDS = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
    "lr", "seconds", "images_per_s", "steps",
)  # fmt: skip
# Options a resumed run may change; everything else must match the checkpoint.
RESUMABLE_CHANGES = ("epochs",)


@dataclass
class RunOptions:
    """Where a run reads and writes and how it reports; not part of what it learns."""

    data_dir: Optional[Path] = None
    download: bool = True
    out_dir: Path = Path("checkpoints")
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False  # torch.compile the network for training (opt-in: compiling takes a while)
    log_every: int = 300
    resume: Optional[Path] = None
    command: str = ""  # the command line that started the run, kept in its checkpoints


@dataclass
class StartInfo:
    recipe: Recipe
    device: torch.device
    precision: str
    parameters: int
    train_size: int
    val_size: int
    test_size: int
    steps_per_epoch: int
    start_epoch: int  # 1-based epoch the run starts in
    start_batch: int
    best_by: str  # "val_acc" or "test_acc"
    data_source: str
    resumed_from: Optional[str] = None
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    processes: int = 1


@dataclass
class EpochEnd:
    record: dict[str, float]
    saved: list[Path]
    is_best: bool


class Hooks:
    """Callbacks of a run; the defaults do nothing."""

    def on_start(self, info: StartInfo) -> None: ...
    def on_epoch_start(self, epoch: int, total_epochs: int, steps: int, start_batch: int) -> None: ...
    def on_batch(self, epoch: int, event: BatchEvent) -> None: ...
    def on_evaluating(self, epoch: int) -> None: ...
    def on_epoch_end(self, end: EpochEnd) -> None: ...


@dataclass
class RunResult:
    history: list[dict[str, float]]
    out_dir: Path
    best_epoch: Optional[int]
    interrupted: bool = False
    interrupted_at: Optional[tuple[int, int]] = None  # (epoch, batch)


def check_writable(folder: Path) -> None:
    """Fail before training when checkpoints could not be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CheckpointError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from None


def write_history(history: list[dict[str, float]], out_dir: Path) -> None:
    def write_json(f):
        f.write(json.dumps(history, indent=2).encode())

    def write_csv(f):
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in history:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in HISTORY_FIELDS})
        f.write(text.getvalue().encode())

    try:
        checkpoint.atomic_write(out_dir / "history.json", write_json)
        checkpoint.atomic_write(out_dir / "history.csv", write_csv)
    except OSError as exc:
        raise CheckpointError(f"cannot write history in {out_dir}: {exc.strerror or exc}") from None


def _resume_recipe(ckpt: dict, recipe: Recipe, path: Path) -> tuple[Recipe, dict[str, tuple[Any, Any]]]:
    """The checkpoint's recipe, with the changes a resume may make; others are refused."""
    saved = Recipe.from_dict(ckpt.get("config", {}).get("recipe", {}))
    if ckpt.get("model") != saved.model:
        raise CheckpointError(f"{path}: inconsistent checkpoint (model {ckpt.get('model')!r})")
    changed: dict[str, tuple[Any, Any]] = {}
    conflicts = []
    for name, new in recipe.to_dict().items():
        old = getattr(saved, name)
        if new == old:
            continue
        if name in RESUMABLE_CHANGES:
            changed[name] = (old, new)
            setattr(saved, name, new)
        else:
            conflicts.append(f"--{name.replace('_', '-')} {new} (checkpoint: {old})")
    if conflicts:
        raise OptionError(
            f"cannot resume {path} with " + ", ".join(conflicts)
            + "; drop these options or start a new run with another --out-dir"
        )
    if saved.epochs <= int(ckpt.get("epoch") or 0) and not ckpt.get("partial"):
        raise OptionError(
            f"{path} has already finished {ckpt.get('epoch')} of {saved.epochs} epochs; "
            "pass a larger --epochs to train further"
        )
    return saved, changed


def fit(
    recipe: Recipe,
    options: RunOptions,
    hooks: Optional[Hooks] = None,
    should_stop: Callable[[], bool] = lambda: False,
    explicit: Optional[set[str]] = None,
) -> RunResult:
    """Train `recipe` (or resume `options.resume`) and write checkpoints and history to `options.out_dir`.

    `explicit` names the recipe fields the user set; on resume only those are compared with
    the checkpoint, the rest come from it.
    """
    hooks = hooks or Hooks()
    device = select_device(options.device)
    group = distributed.from_env(device.type)  # under torchrun: this process's rank
    try:
        return _fit(recipe, options, hooks, should_stop, explicit, device, group)
    finally:
        distributed.shutdown()


def _fit(
    recipe: Recipe,
    options: RunOptions,
    hooks: Hooks,
    should_stop: Callable[[], bool],
    explicit: Optional[set[str]],
    device: torch.device,
    group: Optional[distributed.Group],
) -> RunResult:
    main = group is None or group.main
    world = group.world if group is not None else 1
    if group is not None:
        if device.type == "cuda":
            device = torch.device("cuda", group.local_rank)
            torch.cuda.set_device(device)
        if not main:
            hooks = Hooks()  # only rank 0 reports
    autocast = resolve_precision(options.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    if options.log_every < 1:
        raise OptionError(f"--log-every must be at least 1, got {options.log_every}")
    ckpt = None
    changed: dict[str, tuple[Any, Any]] = {}
    if options.resume is not None:
        ckpt = checkpoint.load(options.resume, map_location="cpu")
        saved = Recipe.from_dict(ckpt.get("config", {}).get("recipe", {}))
        wanted = Recipe.from_dict({**saved.to_dict(), **{k: getattr(recipe, k) for k in (explicit or ())}})
        recipe, changed = _resume_recipe(ckpt, wanted, Path(options.resume))
    check(recipe)
    if recipe.batch_size % world:
        raise OptionError(f"--batch-size {recipe.batch_size} does not split evenly over {world} processes")
    out_dir = Path(options.out_dir)
    if main:
        check_writable(out_dir)

    data = load_dataset(recipe.dataset, options.data_dir, download_ok=options.download, val_size=recipe.val_size)
    if len(data.train) == 0:
        raise OptionError("the training split is empty")
    train, val, test = data.train.to(device), data.val.to(device) if data.val else None, data.test.to(device)

    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    model = place_model(create_model(recipe.model), device)
    # Under torchrun, each process takes batch_size / world images of every batch; the gradients
    # are averaged, so a step sees batch_size images and an epoch has the single-process count of steps.
    net = torch.nn.parallel.DistributedDataParallel(model) if group is not None else model
    if options.compile:
        net = torch.compile(net)  # checkpoints still save `model`, the uncompiled module
    optimizer = make_optimizer(recipe, model)
    rank_batch = recipe.batch_size // world
    steps = num_batches(len(train) // world, rank_batch)
    scheduler = make_scheduler(recipe, optimizer, steps)
    history: list[dict[str, float]] = []
    start_epoch, start_batch, partial = 1, 0, None
    if ckpt is not None:
        model.load_state_dict(ckpt.get("train_state_dict") or ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            if "epochs" in changed:
                # The schedule spans the new number of epochs, continued from the step reached.
                scheduler = make_scheduler(recipe, optimizer, steps)
                with warnings.catch_warnings():  # stepping the schedule alone is the point here
                    warnings.simplefilter("ignore", UserWarning)
                    for _ in range(int(ckpt["scheduler"].get("last_epoch", 0))):
                        scheduler.step()
            else:
                scheduler.load_state_dict(ckpt["scheduler"])
        history = list(ckpt.get("history") or [])
        start_epoch = int(ckpt.get("epoch") or 0) + 1
        partial = ckpt.get("partial")
        torch.set_rng_state(ckpt["rng"]["torch"])
        generator.set_state(ckpt["rng"]["generator"])
        if partial:
            start_batch = int(partial["batch"])

    # With --ema the averaged weights are the ones evaluated and saved as `state_dict`;
    # the raw ones travel as `train_state_dict` for resuming.
    average = WeightAverage(model, recipe.ema) if recipe.ema else None
    if average is not None and ckpt is not None:
        average.model.load_state_dict(ckpt["state_dict"])
        average.steps = int(ckpt.get("ema_steps") or 0)
    scored = average.model if average is not None else model

    best_by = "val_acc" if val is not None else "test_acc"
    best_epoch = ckpt.get("best_epoch") if ckpt else None
    best_value = max((h[best_by] for h in history), default=-1.0)
    hooks.on_start(StartInfo(
        recipe, device, "bf16 autocast" if autocast is not None else "fp32", count_parameters(model), len(train), len(val) if val else 0, len(test), steps,
        start_epoch, start_batch, best_by, data.source,
        resumed_from=str(options.resume) if options.resume else None, changed=changed, processes=world,
    ))  # fmt: skip

    loss_fn = lambda logits, y: F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)  # noqa: E731
    blank = -data.spec.mean / data.spec.std
    augment = (lambda x: random_shift(x, recipe.augment, generator, blank)) if recipe.augment else None

    def payload(epoch: int, metrics: dict, partial_state: Optional[dict] = None) -> dict:
        return {
            "format_version": checkpoint.FORMAT_VERSION,
            "model": recipe.model,
            "model_args": {},
            "state_dict": _cpu(scored.state_dict()),
            "train_state_dict": _cpu(model.state_dict()) if average is not None else None,
            "ema_steps": average.steps if average is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "epoch": epoch,
            "metrics": metrics,
            "history": list(history),
            "best_epoch": best_epoch,
            "config": {"recipe": recipe.to_dict(), "data_dir": str(options.data_dir or ""), "device": str(device),
                       "precision": "bf16" if autocast is not None else "fp32",
                       "command": options.command},  # fmt: skip
            "normalization": {"mean": data.spec.mean, "std": data.spec.std},
            "classes": data.classes,
            "dataset": data.spec.name,
            "rng": {"torch": torch.get_rng_state(), "generator": generator.get_state()},
            "partial": partial_state,
            "torch_version": str(torch.__version__),
            "created": checkpoint.now_iso(),
        }

    for epoch in range(start_epoch, recipe.epochs + 1):
        epoch_start_rng = partial["epoch_start_rng"] if partial else generator.get_state()
        generator.set_state(epoch_start_rng)
        order = torch.randperm(len(train), generator=generator)
        order = (distributed.shard(order, group) if group is not None else order).to(device)
        stats = Stats()
        elapsed = 0.0
        if partial:
            # Continue mid-epoch exactly: same permutation, augmentation RNG where it stopped.
            generator.set_state(ckpt["rng"]["generator"])
            stats = Stats(partial["loss_sum"], partial["correct"], partial["seen"])
            elapsed = float(partial["seconds"])
        hooks.on_epoch_start(epoch, recipe.epochs, steps, start_batch)
        t0 = time.perf_counter()
        stats, done = train_epoch(
            net, train, optimizer, batch_size=rank_batch, order=order, scheduler=scheduler,
            loss_fn=loss_fn, augment=augment, start_batch=start_batch, stats=stats,
            log_every=options.log_every, on_batch=lambda ev, e=epoch: hooks.on_batch(e, ev),
            should_stop=should_stop, after_step=average.update if average is not None else None, autocast=autocast,
        )  # fmt: skip
        elapsed += time.perf_counter() - t0
        steps_done, partial, start_batch = done - start_batch, None, 0
        if group is not None:
            loss_sum, correct, seen = distributed.sum_across([stats.loss_sum, stats.correct, stats.seen], device)
            stats = Stats(loss_sum, int(correct), int(seen))
            if not main:
                distributed.barrier()  # while rank 0 evaluates and saves
                continue
        if done < steps:
            state = {"batch": done, "loss_sum": stats.loss_sum, "correct": stats.correct, "seen": stats.seen,
                     "seconds": elapsed, "epoch_start_rng": epoch_start_rng}  # fmt: skip
            checkpoint.save(payload(epoch - 1, {}, state), out_dir / "last.pt")
            return RunResult(history, out_dir, best_epoch, interrupted=True, interrupted_at=(epoch, done))
        hooks.on_evaluating(epoch)
        record: dict[str, Any] = {
            "epoch": epoch, "train_loss": stats.loss, "train_acc": stats.accuracy,
            "val_loss": None, "val_acc": None, "lr": optimizer.param_groups[0]["lr"],
            "seconds": elapsed, "images_per_s": stats.seen / elapsed if elapsed > 0 else math.nan,
            "steps": steps_done,
        }  # fmt: skip
        if val is not None:
            res = evaluate(scored, val)
            record["val_loss"], record["val_acc"] = res.loss, res.accuracy
        res = evaluate(scored, test)
        record["test_loss"], record["test_acc"] = res.loss, res.accuracy
        history.append(record)
        is_best = record[best_by] > best_value
        if is_best:
            best_value, best_epoch = record[best_by], epoch
        metrics = {k: record[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")}
        data_ckpt = payload(epoch, metrics)
        # last.pt goes last: a crash before it resumes from the previous epoch and redoes this one,
        # so best.pt can never lag behind the history that last.pt carries.
        saved = [out_dir / f"epoch-{epoch:03d}.pt"] + ([out_dir / "best.pt"] if is_best else []) + [out_dir / "last.pt"]
        checkpoint.save(data_ckpt, *saved)  # serialised once, written in this order
        write_history(history, out_dir)
        hooks.on_epoch_end(EpochEnd(record, saved, is_best))
        if group is not None:
            distributed.barrier()
        if should_stop() and epoch < recipe.epochs:
            return RunResult(history, out_dir, best_epoch, interrupted=True, interrupted_at=(epoch + 1, 0))
    return RunResult(history, out_dir, best_epoch)


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


def dataset_for(ckpt: dict, data_dir: Optional[Path], download: bool, splits: tuple[str, ...]) -> Dataset:
    """The dataset a checkpoint was trained on, with the same validation split."""
    recipe = Recipe.from_dict((ckpt.get("config") or {}).get("recipe") or {})
    name = ckpt.get("dataset") or recipe.dataset
    return load_dataset(name, data_dir, download_ok=download, val_size=recipe.val_size, splits=splits)

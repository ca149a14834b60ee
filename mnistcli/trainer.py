"""A training run as named steps: set up, restore from a checkpoint, train an epoch, evaluate and
record, save. `fit` strings them together.

Reports through a `Hooks` object and never prints; `cli` and `ui` draw it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from mnistcli import checkpoint, distributed
from mnistcli.augment import Distortion, distort, random_shift
from mnistcli.checkpoint import Checkpoint
from mnistcli.data import Dataset, Split, load_dataset, num_batches
from mnistcli.engine import (
    BatchEvent,
    Stats,
    WeightAverage,
    evaluate,
    place_model,
    resolve_precision,
    select_device,
    train_epoch,
)
from mnistcli.errors import OptionError
from mnistcli.models import count_parameters, create_model, model_args
from mnistcli.optim import continue_schedule, make_optimizer, make_scheduler
from mnistcli.recipes import Recipe, Resolved, RunOptions, resolve
from mnistcli.saver import CheckpointSaver

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


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
    log_every: int = 300  # batches per printed row
    threads: int = 1  # torch's CPU threads


@dataclass
class EpochEnd:
    record: dict[str, Any]
    saved: list[Path]
    is_best: bool


class Hooks(Protocol):
    """What a run reports, as it happens (`ui.TrainDisplay` draws it)."""

    def on_start(self, info: StartInfo) -> None: ...
    def on_epoch_start(self, epoch: int, total_epochs: int, steps: int, start_batch: int) -> None: ...
    def on_batch(self, epoch: int, event: BatchEvent) -> None: ...
    def on_evaluating(self, epoch: int) -> None: ...
    def on_epoch_end(self, end: EpochEnd) -> None: ...


class SilentHooks:
    """Hooks that report nothing (library use, and every process but rank 0)."""

    def on_start(self, info: StartInfo) -> None: ...
    def on_epoch_start(self, epoch: int, total_epochs: int, steps: int, start_batch: int) -> None: ...
    def on_batch(self, epoch: int, event: BatchEvent) -> None: ...
    def on_evaluating(self, epoch: int) -> None: ...
    def on_epoch_end(self, end: EpochEnd) -> None: ...


@dataclass
class RunResult:
    recipe: Recipe
    history: list[dict[str, Any]]
    out_dir: Path
    best_epoch: Optional[int]
    interrupted: bool = False
    interrupted_at: Optional[tuple[int, int]] = None  # (epoch, batch)
    data_dir: Optional[Path] = None  # the data folder the run read


@dataclass
class Best:
    """The best epoch so far by one metric (higher is better)."""

    by: str  # "val_acc", or "test_acc" when there is no validation split
    value: float = -1.0
    epoch: Optional[int] = None

    def update(self, record: dict[str, Any]) -> bool:
        if record[self.by] > self.value:
            self.value, self.epoch = record[self.by], record["epoch"]
            return True
        return False


@dataclass
class EpochProgress:
    """How far an epoch got: its stats, batches done, seconds, and the RNG state it began with."""

    stats: Stats
    done: int
    start_batch: int
    seconds: float
    start_rng: torch.Tensor

    def stopped_at(self) -> dict[str, Any]:
        """The `partial` record of a checkpoint saved mid-epoch."""
        return {
            "batch": self.done,
            "loss_sum": self.stats.loss_sum,
            "correct": self.stats.correct,
            "seen": self.stats.seen,
            "seconds": self.seconds,
            "epoch_start_rng": self.start_rng,
        }


@dataclass
class Run:
    """The live state of a run: built by `set_up`, restored by `restore`, advanced by `fit`."""

    recipe: Recipe
    options: RunOptions
    device: torch.device
    autocast: Optional[torch.dtype]
    group: Optional[distributed.Group]
    data: Dataset
    train: Split
    val: Optional[Split]
    test: Split
    model: nn.Module  # what is saved
    net: nn.Module  # what is trained: the model, perhaps wrapped in DDP or compiled
    optimizer: torch.optim.Optimizer
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler]
    average: Optional[WeightAverage]
    generator: torch.Generator
    steps: int  # optimiser steps per epoch
    rank_batch: int  # images per step in this process
    saver: CheckpointSaver
    best: Best
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 1
    partial: Optional[dict[str, Any]] = None  # where a stopped epoch stopped
    resume_rng: Optional[torch.Tensor] = None  # the generator's state at that point
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def main(self) -> bool:
        return self.group is None or self.group.main

    @property
    def world(self) -> int:
        return self.group.world if self.group is not None else 1

    @property
    def scored(self) -> nn.Module:
        """The weights that are evaluated and saved: the average when there is one."""
        return self.average.model if self.average is not None else self.model


def fit(
    options: RunOptions,
    *,
    preset: Optional[str] = None,
    given: Optional[dict[str, Any]] = None,
    hooks: Optional[Hooks] = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RunResult:
    """Train the recipe of `preset` with the options `given` (or resume `options.resume`), writing
    checkpoints and history to `options.out_dir`."""
    device = select_device(options.device)
    group = distributed.from_env(device.type)  # under torchrun: this process's rank
    try:
        saved = checkpoint.load(options.resume, map_location="cpu") if options.resume is not None else None
        resolved = resolve_for_resume(preset, given, saved, options.resume)
        run = set_up(resolved.recipe, options, device, group, saved)
        if saved is not None:
            restore(run, saved, resolved.changed)
        reporting = hooks if hooks is not None and run.main else SilentHooks()
        return train(run, reporting, should_stop)
    finally:
        distributed.shutdown()


def resolve_for_resume(
    preset: Optional[str], given: Optional[dict[str, Any]], saved: Optional[Checkpoint], path: Optional[Path]
) -> Resolved:
    """The run's recipe (recipes.resolve), checked against what a resumed checkpoint has done."""
    if saved is None:
        return resolve(preset, given)
    if not saved.resumable:
        raise OptionError(f"{path}: an inference-only model file cannot be resumed; pass the run's last.pt")
    try:
        resolved = resolve(preset, given, saved.saved_recipe or {})
    except OptionError as exc:
        raise OptionError(f"{path}: {exc}") from exc
    if resolved.recipe.model != saved.model:
        raise OptionError(f"{path}: inconsistent checkpoint (model {saved.model!r})")
    if resolved.recipe.epochs <= (saved.epoch or 0) and not saved.partial:
        raise OptionError(
            f"{path} has already finished epoch {saved.epoch} of {resolved.recipe.epochs}; "
            "pass a larger --epochs to train further"
        )
    return resolved


def set_up(
    recipe: Recipe,
    options: RunOptions,
    device: torch.device,
    group: Optional[distributed.Group],
    saved: Optional[Checkpoint] = None,
) -> Run:
    """Device, output folder, data, model, optimiser and schedule of a new run (or one to restore)."""
    if options.log_every < 1:
        raise OptionError(f"--log-every must be at least 1, got {options.log_every}")
    if options.threads is not None:
        if options.threads < 1:
            raise OptionError(f"--threads must be at least 1, got {options.threads}")
        torch.set_num_threads(options.threads)
    world = group.world if group is not None else 1
    if recipe.batch_size % world:
        raise OptionError(f"--batch-size {recipe.batch_size} does not split evenly over {world} processes")
    device = _claim_device(device, group)
    autocast = resolve_precision(options.precision, device)
    saver = CheckpointSaver(options.out_dir, options.keep)
    if group is None or group.main:
        saver.prepare()
    data = load_dataset(
        recipe.dataset,
        options.data_dir,
        download_ok=options.download,
        val_size=recipe.val_size,
        recorded_dir=saved.data_dir if saved is not None else None,
    )
    if len(data.train) == 0:
        raise OptionError("the training split is empty")
    torch.manual_seed(recipe.seed)
    model = place_model(create_model(recipe.model), device)
    optimizer = make_optimizer(recipe, model)
    rank_batch = recipe.batch_size // world
    steps = num_batches(len(data.train) // world, rank_batch)
    return Run(
        recipe=recipe,
        options=options,
        device=device,
        autocast=autocast,
        group=group,
        data=data,
        train=data.train.to(device),
        val=data.val.to(device) if data.val is not None else None,
        test=data.test.to(device),
        model=model,
        net=_trainable(model, group, options.compile),
        optimizer=optimizer,
        scheduler=make_scheduler(recipe, optimizer, steps),
        average=WeightAverage(model, recipe.ema) if recipe.ema else None,
        generator=torch.Generator().manual_seed(recipe.seed),
        steps=steps,
        rank_batch=rank_batch,
        saver=saver,
        best=Best("val_acc" if data.val is not None else "test_acc"),
    )


def _claim_device(device: torch.device, group: Optional[distributed.Group]) -> torch.device:
    """Under torchrun each process takes its own GPU; cuDNN may pick its fastest kernels (fixed sizes)."""
    if group is not None and device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def _trainable(model: nn.Module, group: Optional[distributed.Group], compile_net: bool) -> nn.Module:
    """What the optimiser steps through: DDP across processes (each takes batch_size / world images
    of every batch; gradients are averaged), compiled on request. Checkpoints save `model` itself."""
    net: nn.Module = torch.nn.parallel.DistributedDataParallel(model) if group is not None else model
    if compile_net:
        net = torch.compile(net)  # type: ignore[assignment]
    return net


def restore(run: Run, saved: Checkpoint, changed: dict[str, tuple[Any, Any]]) -> None:
    """Put a run back where `saved` left it: weights, average, optimiser, schedule, RNG, history."""
    assert saved.optimizer is not None and saved.rng is not None  # resolve_for_resume checked it
    run.model.load_state_dict(saved.train_state_dict or saved.state_dict)
    run.optimizer.load_state_dict(saved.optimizer)
    if run.scheduler is not None and saved.scheduler is not None:
        if "epochs" in changed:  # the schedule spans the new number of epochs, from the step reached
            steps_done = int(saved.scheduler.get("last_epoch", 0))
            run.scheduler = continue_schedule(run.recipe, run.optimizer, run.steps, steps_done)
        else:
            run.scheduler.load_state_dict(saved.scheduler)
    if run.average is not None:
        run.average.model.load_state_dict(saved.state_dict)
        run.average.steps = int(saved.ema_steps or 0)
    torch.set_rng_state(saved.rng["torch"])
    run.generator.set_state(saved.rng["generator"])
    run.resume_rng = saved.rng["generator"]
    run.history = list(saved.history)
    run.start_epoch = int(saved.epoch or 0) + 1
    run.partial = saved.partial
    run.changed = changed
    run.best.value = max((h[run.best.by] for h in run.history), default=-1.0)
    run.best.epoch = saved.best_epoch


def train(run: Run, hooks: Hooks, should_stop: Callable[[], bool]) -> RunResult:
    """The epochs, from where the run stands: train, evaluate and record, save; stop when asked."""
    hooks.on_start(start_info(run))
    for epoch in range(run.start_epoch, run.recipe.epochs + 1):
        progress = train_one_epoch(run, epoch, hooks, should_stop)
        if not run.main:
            distributed.barrier()  # while rank 0 evaluates and saves
            continue
        if progress.done < run.steps:
            run.saver.save_stopped(make_checkpoint(run, epoch - 1, {}, progress.stopped_at()))
            return _result(run, interrupted_at=(epoch, progress.done))
        hooks.on_evaluating(epoch)
        record = evaluate_and_record(run, epoch, progress)
        is_best = run.best.update(record)
        ckpt = make_checkpoint(run, epoch, {k: record[k] for k in METRICS})
        saved = run.saver.save_epoch(ckpt, is_best)
        hooks.on_epoch_end(EpochEnd(record, saved, is_best))
        if run.group is not None:
            distributed.barrier()
        if should_stop() and epoch < run.recipe.epochs:
            return _result(run, interrupted_at=(epoch + 1, 0))
    return _result(run)


def _result(run: Run, interrupted_at: Optional[tuple[int, int]] = None) -> RunResult:
    return RunResult(
        run.recipe,
        run.history,
        run.saver.out_dir,
        run.best.epoch,
        interrupted=interrupted_at is not None,
        interrupted_at=interrupted_at,
        data_dir=run.data.root,
    )


def start_info(run: Run) -> StartInfo:
    return StartInfo(
        recipe=run.recipe,
        device=run.device,
        precision="bf16 autocast" if run.autocast is not None else "fp32",
        parameters=count_parameters(run.model),
        train_size=len(run.train),
        val_size=len(run.val) if run.val is not None else 0,
        test_size=len(run.test),
        steps_per_epoch=run.steps,
        start_epoch=run.start_epoch,
        start_batch=int(run.partial["batch"]) if run.partial else 0,
        best_by=run.best.by,
        data_source=run.data.source,
        resumed_from=str(run.options.resume) if run.options.resume else None,
        changed=run.changed,
        processes=run.world,
        log_every=run.options.log_every,
        threads=torch.get_num_threads(),
    )


def train_one_epoch(run: Run, epoch: int, hooks: Hooks, should_stop: Callable[[], bool]) -> EpochProgress:
    """One pass over the seeded permutation of the epoch (continued exactly where a stopped one stopped)."""
    start_rng = run.partial["epoch_start_rng"] if run.partial else run.generator.get_state()
    run.generator.set_state(start_rng)
    order = torch.randperm(len(run.train), generator=run.generator)
    order = (distributed.shard(order, run.group) if run.group is not None else order).to(run.device)
    stats, seconds, start_batch = Stats(), 0.0, 0
    if run.partial:  # same permutation; the augmentation's RNG where it stopped
        assert run.resume_rng is not None
        run.generator.set_state(run.resume_rng)
        stats = Stats(run.partial["loss_sum"], run.partial["correct"], run.partial["seen"])
        seconds, start_batch = float(run.partial["seconds"]), int(run.partial["batch"])
        run.partial = None
    hooks.on_epoch_start(epoch, run.recipe.epochs, run.steps, start_batch)
    t0 = time.perf_counter()
    stats, done = train_epoch(
        run.net,
        run.train,
        run.optimizer,
        batch_size=run.rank_batch,
        order=order,
        scheduler=run.scheduler,
        loss_fn=_loss(run.recipe),
        augment=_augmentation(run),
        start_batch=start_batch,
        stats=stats,
        log_every=run.options.log_every,
        on_batch=lambda event: hooks.on_batch(epoch, event),
        should_stop=should_stop,
        after_step=run.average.update if run.average is not None else None,
        autocast=run.autocast,
    )
    seconds += time.perf_counter() - t0
    if run.group is not None:
        loss_sum, correct, seen = distributed.sum_across([stats.loss_sum, stats.correct, stats.seen], run.device)
        stats = Stats(loss_sum, int(correct), int(seen))
    return EpochProgress(stats, done, start_batch, seconds, start_rng)


def _loss(r: Recipe) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda logits, y: F.cross_entropy(logits, y, label_smoothing=r.label_smoothing)


def _augmentation(run: Run) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """Distortions (stroke width, rotation, scale, shear, elastic), then whole-pixel shifts."""
    r = run.recipe
    distortion = Distortion(**{f.name: getattr(r, f.name) for f in fields(Distortion)})
    if not r.augment and distortion == Distortion():
        return None
    blank = -run.data.spec.mean / run.data.spec.std  # an empty pixel after normalisation

    def augment(x: torch.Tensor) -> torch.Tensor:  # each step returns x itself when it is off
        return random_shift(distort(x, distortion, run.generator, blank), r.augment, run.generator, blank)

    return augment


def evaluate_and_record(run: Run, epoch: int, progress: EpochProgress) -> dict[str, Any]:
    """The epoch's history record: training stats, validation and test loss and accuracy."""
    stats, seconds = progress.stats, progress.seconds
    record: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": stats.loss,
        "train_acc": stats.accuracy,
        "val_loss": None,
        "val_acc": None,
        "lr": run.optimizer.param_groups[0]["lr"],
        "seconds": seconds,
        "images_per_s": stats.seen / seconds if seconds > 0 else math.nan,
        "steps": progress.done - progress.start_batch,
    }
    if run.val is not None:
        res = evaluate(run.scored, run.val)
        record["val_loss"], record["val_acc"] = res.loss, res.accuracy
    res = evaluate(run.scored, run.test)
    record["test_loss"], record["test_acc"] = res.loss, res.accuracy
    run.history.append(record)
    return record


def make_checkpoint(
    run: Run, epoch: int, metrics: dict[str, Any], partial: Optional[dict[str, Any]] = None
) -> Checkpoint:
    """Everything needed to use the run's weights and to resume it exactly."""
    return Checkpoint(
        model=run.recipe.model,
        model_args=model_args(run.recipe.model),
        state_dict=_cpu(run.scored.state_dict()),
        train_state_dict=_cpu(run.model.state_dict()) if run.average is not None else None,
        ema_steps=run.average.steps if run.average is not None else None,
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict() if run.scheduler is not None else None,
        epoch=epoch,
        metrics=metrics,
        history=list(run.history),
        best_epoch=run.best.epoch,
        config={
            "recipe": run.recipe.to_dict(),
            "data_dir": str(run.data.root),
            "device": str(run.device),
            "precision": "bf16" if run.autocast is not None else "fp32",
            "command": run.options.command,
        },
        normalization={"mean": run.data.spec.mean, "std": run.data.spec.std},
        classes=run.data.classes,
        dataset=run.data.spec.name,
        rng={"torch": torch.get_rng_state(), "generator": run.generator.get_state()},
        partial=partial,
        torch_version=str(torch.__version__),
        created=checkpoint.now_iso(),
    )


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}

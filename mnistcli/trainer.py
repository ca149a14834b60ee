"""A training run as named steps: set up (restoring a checkpoint when resuming), train an epoch,
evaluate and record, save. `fit` strings them together.

`set_up` builds a `Run`, what stays fixed for the whole run, and the `Progress` it starts from;
`run_epochs` advances the progress. Reports through a `Hooks` object and never prints; the
command line and `ui` draw it.
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

from mnistcli import checkpoint, config, distributed, settings, tensorboard_log
from mnistcli.augment import Distortion, Surroundings, distort, flagged_ones, random_shift, surround
from mnistcli.checkpoint import Checkpoint, RunConfig, StopPosition
from mnistcli.data import Dataset, Split, load_dataset, num_batches
from mnistcli.devices import autocast_dtype, place_model, select_device
from mnistcli.engine import BatchEvent, Stats, evaluate_split, train_epoch
from mnistcli.errors import OptionError
from mnistcli.history import HistoryRow
from mnistcli.metrics import fit_temperature
from mnistcli.models import count_parameters, create_model, model_args
from mnistcli.optim import WeightAverage, make_optimizer, make_scheduler, restore_optimizer
from mnistcli.saver import CheckpointSaver
from mnistcli.settings import Recipe, Resolved, RunSettings, resolve_recipe


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
    origins: dict[str, str] = field(default_factory=dict)  # where each recipe value came from
    processes: int = 1
    log_every: int = 300  # batches per printed row
    threads: int = 1  # torch's CPU threads


@dataclass
class EpochEnd:
    row: HistoryRow
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
    history: list[HistoryRow]
    out_dir: Path
    best_epoch: Optional[int]
    interrupted_at: Optional[tuple[int, int]] = None  # (epoch, batch) where a stopped run stopped
    data_dir: Optional[Path] = None  # the data folder the run read

    @property
    def interrupted(self) -> bool:
        return self.interrupted_at is not None

    @property
    def best(self) -> Optional[HistoryRow]:
        return next((row for row in self.history if row.epoch == self.best_epoch), None)


@dataclass
class Best:
    """The best epoch so far by one metric (higher is better)."""

    by: str  # "val_acc", or "test_acc" when there is no validation split
    value: float = -1.0
    epoch: Optional[int] = None

    def update(self, row: HistoryRow) -> bool:
        if row.score(self.by) > self.value:
            self.value, self.epoch = row.score(self.by), row.epoch
            return True
        return False


@dataclass
class Progress:
    """Where a run stands: the epochs done, the best of them, and where a stopped epoch resumes."""

    history: list[HistoryRow]
    best: Best
    next_epoch: int = 1
    stopped_at: Optional[StopPosition] = None


@dataclass
class EpochProgress:
    """How far an epoch got: its stats, batches done, seconds, and the RNG state it began with."""

    epoch: int
    stats: Stats
    done: int
    start_batch: int
    seconds: float
    start_rng: torch.Tensor

    def stop_position(self) -> StopPosition:
        """Where it stopped, for a checkpoint saved mid-epoch."""
        s = self.stats
        return StopPosition(self.epoch, self.done, s.loss_sum, s.correct, s.seen, self.seconds, self.start_rng)


@dataclass(frozen=True)
class Run:
    """What stays fixed for a whole run; built by `set_up`."""

    recipe: Recipe
    settings: RunSettings
    device: torch.device
    autocast: Optional[torch.dtype]
    group: Optional[distributed.Group]
    data: Dataset
    train: Split
    val: Optional[Split]
    test: Split
    network: nn.Module  # the network whose weights the optimiser changes
    wrapped: nn.Module  # what the training loop calls: the network, perhaps in DDP or compiled
    optimizer: torch.optim.Optimizer
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler]
    average: Optional[WeightAverage]
    generator: torch.Generator
    steps: int  # optimiser steps per epoch
    rank_batch: int  # images per step in this process
    saver: CheckpointSaver

    @property
    def main(self) -> bool:
        return self.group is None or self.group.main

    @property
    def world(self) -> int:
        return self.group.world if self.group is not None else 1

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are evaluated and saved: the average when there is one."""
        return self.average.model if self.average is not None else self.network


def fit(
    run_settings: RunSettings,
    *,
    preset: Optional[str] = None,
    given: Optional[dict[str, Any]] = None,
    hooks: Optional[Hooks] = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RunResult:
    """Train the recipe of `preset` with the settings `given` (or resume `run_settings.resume`), writing
    checkpoints and history to the run folder."""
    run_settings.check()
    device = select_device(run_settings.device)
    group = distributed.from_env(device.type)  # under torchrun: this process's rank
    log: Optional[tensorboard_log.TensorBoardHooks] = None
    try:
        path = run_settings.resume
        saved = checkpoint.load(path, map_location="cpu") if path is not None else None
        resolved = resolve_for_resume(preset, given, saved, path)
        run, progress = set_up(resolved, run_settings, device, group, saved)
        reporting: Hooks = hooks if hooks is not None and run.main else SilentHooks()
        if run_settings.tensorboard and run.main:
            log = tensorboard_log.TensorBoardHooks(run.saver.out_dir)
            reporting = tensorboard_log.BothHooks(reporting, log)
        reporting.on_start(start_info(run, progress, resolved))
        return run_epochs(run, progress, reporting, should_stop)
    finally:
        if log is not None:
            log.close()  # before the quick exit of the command line: the last events reach the disk
        distributed.shutdown()


def resolve_for_resume(
    preset: Optional[str], given: Optional[dict[str, Any]], saved: Optional[Checkpoint], path: Optional[Path]
) -> Resolved:
    """The run's recipe (settings.resolve_recipe), checked against what a resumed checkpoint has done."""
    if saved is None:
        return resolve_recipe(preset, given)
    if not saved.resumable:
        raise OptionError(f"{path}: an inference-only model file cannot be resumed; pass the run's last.pt")
    try:
        resolved = resolve_recipe(preset, given, saved.config.recipe or {})
    except OptionError as exc:
        raise OptionError(f"{path}: {exc}") from exc
    if resolved.recipe.model != saved.model:
        raise OptionError(f"{path}: inconsistent checkpoint (model {saved.model!r})")
    if resolved.recipe.epochs <= (saved.epoch or 0) and saved.stopped_at is None:
        raise OptionError(
            f"{path} has already finished epoch {saved.epoch} of {resolved.recipe.epochs}; "
            "pass a larger --epochs to train further"
        )
    return resolved


def set_up(
    resolved: Resolved,
    run_settings: RunSettings,
    device: torch.device,
    group: Optional[distributed.Group],
    saved: Optional[Checkpoint] = None,
) -> tuple[Run, Progress]:
    """Device, output folder, data, model, optimiser and schedule of a run, restored from `saved` when
    resuming; and the progress it starts from."""
    recipe, world = resolved.recipe, group.world if group is not None else 1
    if recipe.batch_size % world:
        raise OptionError(f"--batch-size {recipe.batch_size} does not split evenly over {world} processes")
    if run_settings.threads is not None:
        torch.set_num_threads(run_settings.threads)
    device = _claim_device(device, group)
    saver = CheckpointSaver(
        run_settings.run_dir, run_settings.keep, f"mnistcli {recipe.model}", settings.training_note(recipe)
    )
    if group is None or group.main:
        saver.prepare()
        saver.write_config(config.to_toml(recipe, run_settings, resolved.preset))
    data = _load_data(recipe, run_settings, saved)
    torch.manual_seed(recipe.seed)
    network = place_model(create_model(recipe.model), device)
    optimizer = make_optimizer(recipe, network)
    rank_batch = recipe.batch_size // world
    steps = num_batches(len(data.train) // world, rank_batch)
    average = WeightAverage(network, recipe.ema) if recipe.ema else None
    generator = torch.Generator().manual_seed(recipe.seed)
    best = Best("val_acc" if data.val is not None else "test_acc")
    if saved is None:
        scheduler, progress = make_scheduler(recipe, optimizer, steps), Progress([], best)
    else:
        scheduler = restore_optimizer(
            recipe, optimizer, steps, saved.optimizer or {}, saved.scheduler, "epochs" in resolved.changed
        )
        progress = restore(saved, network, average, generator, best)
    run = Run(
        recipe=recipe,
        settings=run_settings,
        device=device,
        autocast=autocast_dtype(run_settings.precision, device),
        group=group,
        data=data,
        train=data.train.to(device),
        val=data.val.to(device) if data.val is not None else None,
        test=data.test.to(device),
        network=network,
        wrapped=_trainable(network, group, run_settings.compile),
        optimizer=optimizer,
        scheduler=scheduler,
        average=average,
        generator=generator,
        steps=steps,
        rank_batch=rank_batch,
        saver=saver,
    )
    return run, progress


def _load_data(recipe: Recipe, run_settings: RunSettings, saved: Optional[Checkpoint]) -> Dataset:
    data = load_dataset(
        recipe.dataset,
        run_settings.data_dir,
        download_ok=run_settings.download,
        val_size=recipe.val_size,
        recorded_dir=saved.data_dir if saved is not None else None,
    )
    if len(data.train) == 0:
        raise OptionError("the training split is empty")
    return data


def _claim_device(device: torch.device, group: Optional[distributed.Group]) -> torch.device:
    """Under torchrun each process takes its own GPU; cuDNN may pick its fastest kernels (fixed sizes)."""
    if group is not None and device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def _trainable(network: nn.Module, group: Optional[distributed.Group], compile_net: bool) -> nn.Module:
    """What the optimiser steps through: DDP across processes (each takes batch_size / world images
    of every batch; gradients are averaged), compiled on request. Checkpoints save the network itself."""
    net: nn.Module = torch.nn.parallel.DistributedDataParallel(network) if group is not None else network
    if compile_net:
        net = torch.compile(net)  # type: ignore[assignment]
    return net


def restore(
    saved: Checkpoint,
    network: nn.Module,
    average: Optional[WeightAverage],
    generator: torch.Generator,
    best: Best,
) -> Progress:
    """Put the weights, the average and the random state back where `saved` left them; the progress
    it had made. (The optimiser and schedule: optim.restore_optimizer.)"""
    assert saved.rng is not None  # resolve_for_resume checked that it is resumable
    network.load_state_dict(saved.train_state_dict or saved.state_dict)
    if average is not None:
        average.model.load_state_dict(saved.state_dict)
        average.steps = int(saved.ema_steps or 0)
    torch.set_rng_state(saved.rng["torch"])
    generator.set_state(saved.rng["generator"])
    best.value = max((row.score(best.by) for row in saved.history), default=-1.0)
    best.epoch = saved.best_epoch
    return Progress(list(saved.history), best, int(saved.epoch or 0) + 1, saved.stopped_at)


def run_epochs(run: Run, progress: Progress, hooks: Hooks, should_stop: Callable[[], bool]) -> RunResult:
    """The epochs, from where the run stands: train, evaluate and record, save; stop when asked."""
    for epoch in range(progress.next_epoch, run.recipe.epochs + 1):
        stopped_at, progress.stopped_at = progress.stopped_at, None
        done = train_one_epoch(run, epoch, hooks, should_stop, stopped_at)
        if not run.main:
            distributed.barrier()  # while rank 0 evaluates and saves
            continue
        if done.done < run.steps:
            run.saver.save_stopped(make_checkpoint(run, progress, epoch - 1, {}, done.stop_position()))
            return _result(run, progress, interrupted_at=(epoch, done.done))
        hooks.on_evaluating(epoch)
        row = evaluate_and_record(run, done)
        progress.history.append(row)
        is_best = progress.best.update(row)
        saved = run.saver.save_epoch(make_checkpoint(run, progress, epoch, row.metrics()), is_best)
        progress.next_epoch = epoch + 1
        hooks.on_epoch_end(EpochEnd(row, saved, is_best))
        if run.group is not None:
            distributed.barrier()
        if should_stop() and epoch < run.recipe.epochs:
            return _result(run, progress, interrupted_at=(epoch + 1, 0))
    return _result(run, progress)


def _result(run: Run, progress: Progress, interrupted_at: Optional[tuple[int, int]] = None) -> RunResult:
    return RunResult(
        run.recipe, progress.history, run.saver.out_dir, progress.best.epoch, interrupted_at, run.data.root
    )


def start_info(run: Run, progress: Progress, resolved: Resolved) -> StartInfo:
    return StartInfo(
        recipe=run.recipe,
        device=run.device,
        precision="bf16 autocast" if run.autocast is not None else "fp32",
        parameters=count_parameters(run.network),
        train_size=len(run.train),
        val_size=len(run.val) if run.val is not None else 0,
        test_size=len(run.test),
        steps_per_epoch=run.steps,
        start_epoch=progress.next_epoch,
        start_batch=progress.stopped_at.batch if progress.stopped_at is not None else 0,
        best_by=progress.best.by,
        data_source=run.data.source,
        resumed_from=str(run.settings.resume) if run.settings.resume else None,
        changed=resolved.changed,
        origins=resolved.origins,
        processes=run.world,
        log_every=run.settings.log_every,
        threads=torch.get_num_threads(),
    )


def train_one_epoch(
    run: Run, epoch: int, hooks: Hooks, should_stop: Callable[[], bool], stopped_at: Optional[StopPosition] = None
) -> EpochProgress:
    """One pass over the seeded permutation of the epoch (continued exactly where a stopped one stopped)."""
    resume_rng = run.generator.get_state()  # where the augmentation's draws had got to
    start_rng = stopped_at.epoch_start_rng if stopped_at is not None else resume_rng
    run.generator.set_state(start_rng)
    order = torch.randperm(len(run.train), generator=run.generator)
    order = (distributed.shard(order, run.group) if run.group is not None else order).to(run.device)
    t0 = time.perf_counter()
    epoch_split = _epoch_images(run, order, epoch)
    prepared = time.perf_counter() - t0
    stats, seconds, start_batch = Stats(), 0.0, 0
    if stopped_at is not None:  # same permutation; the augmentation's RNG where it stopped
        run.generator.set_state(resume_rng)
        stats = Stats(stopped_at.loss_sum, stopped_at.correct, stopped_at.seen)
        seconds, start_batch = stopped_at.seconds, stopped_at.batch
    hooks.on_epoch_start(epoch, run.recipe.epochs, run.steps, start_batch)
    t0 = time.perf_counter() - prepared  # the epoch's images are part of its time
    stats, done = train_epoch(
        run.wrapped,
        epoch_split,
        run.optimizer,
        batch_size=run.rank_batch,
        order=None,
        scheduler=run.scheduler,
        loss_fn=_loss(run.recipe),
        augment=_augmentation(run),
        start_batch=start_batch,
        stats=stats,
        log_every=run.settings.log_every,
        on_batch=lambda event: hooks.on_batch(epoch, event),
        should_stop=should_stop,
        after_step=run.average.update if run.average is not None else None,
        autocast=run.autocast,
    )
    seconds += time.perf_counter() - t0
    if run.group is not None:
        loss_sum, correct, seen = distributed.sum_across([stats.loss_sum, stats.correct, stats.seen], run.device)
        stats = Stats(loss_sum, int(correct), int(seen))
    return EpochProgress(epoch, stats, done, start_batch, seconds, start_rng)


def _loss(r: Recipe) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda logits, y: F.cross_entropy(logits, y, label_smoothing=r.label_smoothing)


def _augmentation(run: Run) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """Distortions (stroke width, rotation, scale, shear, elastic), then whole-pixel shifts; batch by
    batch, after the epoch's surroundings (_epoch_images)."""
    r = run.recipe
    distortion = Distortion(**{f.name: getattr(r, f.name) for f in fields(Distortion)})
    if not r.augment and distortion == Distortion():
        return None
    blank = -run.data.spec.mean / run.data.spec.std  # an empty pixel after normalisation

    def augment(x: torch.Tensor) -> torch.Tensor:  # each step returns x itself when it is off
        return random_shift(distort(x, distortion, run.generator, blank), r.augment, run.generator, blank)

    return augment


# In the settling part of a run the surroundings come this much as often: measured on the validation
# split (20 epochs, the default shares): all the way through, 99.42% clean; a quarter as often in the
# last 40%, 99.56% with the corruptions' mean kept (97.9% against 98.1%); none there, 99.60% but 95.1%
# (edge maps down to 82%); a tenth as often, no better clean (99.46, 99.52, 99.48% over seeds 0, 1, 2,
# against 99.52, 99.50, 99.46%).
SETTLED = 0.25
DIGIT_DATASETS = ("mnist", "emnist-digits")  # where --flag-ones means the digit 1


def _epoch_images(run: Run, order: torch.Tensor, epoch: int) -> Split:
    """The epoch's images in the order they are trained on, with their surroundings (paper, grain, blur,
    marks, outlines) drawn for this epoch from the run's generator; rarer in the settling epochs."""
    surroundings = Surroundings(**{f.name: getattr(run.recipe, f.name) for f in fields(Surroundings)})
    if epoch > round(run.recipe.epochs * (1 - run.recipe.settle)):
        surroundings = surroundings.scaled(SETTLED)
    labels = run.train.labels[order]
    flags = run.recipe.flag_ones if run.recipe.dataset in DIGIT_DATASETS else 0.0  # class 1 is a digit 1
    images = flagged_ones(run.train.images[order], labels, flags, run.generator)
    images = surround(images, surroundings, run.generator)
    return Split(run.train.name, images, labels, run.train.mean, run.train.std)


def evaluate_and_record(run: Run, done: EpochProgress) -> HistoryRow:
    """The epoch's history row: training stats, validation and test loss and accuracy."""
    stats, seconds = done.stats, done.seconds
    val = evaluate_split(run.evaluated, run.val) if run.val is not None else None
    test = evaluate_split(run.evaluated, run.test)
    # Calibrated on the validation split, never on the test split; without one, left at 1.
    temperature = fit_temperature(val.logits, val.labels) if val is not None else None
    return HistoryRow(
        epoch=done.epoch,
        train_loss=stats.loss,
        train_acc=stats.accuracy,
        val_loss=val.loss if val is not None else None,
        val_acc=val.accuracy if val is not None else None,
        test_loss=test.loss,
        test_acc=test.accuracy,
        lr=run.optimizer.param_groups[0]["lr"],
        seconds=seconds,
        images_per_s=stats.seen / seconds if seconds > 0 else math.nan,
        steps=done.done - done.start_batch,
        temperature=temperature,
    )


def make_checkpoint(
    run: Run, progress: Progress, epoch: int, metrics: dict[str, Any], stopped_at: Optional[StopPosition] = None
) -> Checkpoint:
    """Everything needed to use the run's weights and to resume it exactly."""
    spec = run.data.spec
    return checkpoint.stamped(
        Checkpoint(
            model=run.recipe.model,
            model_args=model_args(run.recipe.model),
            state_dict=_cpu(run.evaluated.state_dict()),
            train_state_dict=_cpu(run.network.state_dict()) if run.average is not None else None,
            ema_steps=run.average.steps if run.average is not None else None,
            optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict() if run.scheduler is not None else None,
            epoch=epoch,
            metrics=metrics,
            temperature=_temperature(progress, epoch),
            history=list(progress.history),
            best_epoch=progress.best.epoch,
            config=RunConfig(
                recipe=run.recipe.to_dict(),
                data_dir=str(run.data.root),
                device=str(run.device),
                precision="bf16" if run.autocast is not None else "fp32",
                command=run.settings.command,
            ),
            normalization={"mean": spec.mean, "std": spec.std},
            classes=run.data.classes,
            dataset=spec.name,
            rng=checkpoint.rng_state(run.generator),
            stopped_at=stopped_at,
        )
    )


def _temperature(progress: Progress, epoch: int) -> float:
    """The calibration of the weights saved after `epoch` (that of the last finished epoch)."""
    row = next((r for r in progress.history if r.epoch == epoch), None)
    return row.temperature if row is not None and row.temperature is not None else 1.0


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}

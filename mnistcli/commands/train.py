"""`mnistcli train`: train a network; checkpoints every epoch, history and curves."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from mnistcli import ui
from mnistcli.commands.common import (
    DataDir,
    DatasetName,
    Device,
    DeviceName,
    ModelName,
    NoDownload,
    OptimizerName,
    PrecisionName,
    PresetName,
    SchedulerName,
    handles_errors,
    value,
)
from mnistcli.errors import OptionError
from mnistcli.recipes import DEFAULT_PRESET, Recipe, RunOptions

if TYPE_CHECKING:
    from mnistcli.trainer import RunResult

D = Recipe()  # the default recipe: its values are the defaults the help shows
# The recipe options; those the user gives override the preset (--recipe), the others come from it.
RECIPE_OPTIONS = tuple(Recipe().to_dict())


@handles_errors
def train(
    ctx: typer.Context,
    epochs: Annotated[int, typer.Option(help="Epochs to train.")] = D.epochs,
    model: Annotated[ModelName, typer.Option(help="Network to train (see --list-models).")] = ModelName(D.model),
    dataset: Annotated[DatasetName, typer.Option(help="Dataset.")] = DatasetName(D.dataset),
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = D.batch_size,
    lr: Annotated[float, typer.Option(help="Learning rate (the peak of the schedule).")] = D.lr,
    optimizer: Annotated[OptimizerName, typer.Option(help="Optimiser.")] = OptimizerName(D.optimizer),
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = D.momentum,
    nesterov: Annotated[bool, typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum for SGD.")] = D.nesterov,
    weight_decay: Annotated[float, typer.Option(help="Weight decay (not on biases and batch norm).")] = D.weight_decay,
    scheduler: Annotated[SchedulerName, typer.Option(help="Learning-rate schedule over the run.")] = SchedulerName(
        D.scheduler
    ),
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing of the loss.")] = D.label_smoothing,
    augment: Annotated[int, typer.Option(help="Random shifts of up to N pixels (0 = none).")] = D.augment,
    rotate: Annotated[float, typer.Option(help="Random rotations of up to this many degrees either way.")] = D.rotate,
    scale: Annotated[float, typer.Option(help="Random scaling of up to this fraction either way.")] = D.scale,
    shear: Annotated[float, typer.Option(help="Random shear of up to this many degrees either way.")] = D.shear,
    elastic: Annotated[
        float, typer.Option(help="Elastic distortions of this strength (alpha in pixels, Simard et al. 2003).")
    ] = D.elastic,
    stroke: Annotated[float, typer.Option(help="Share of images whose strokes are made bolder or thinner.")] = D.stroke,
    ema: Annotated[
        float, typer.Option(help="Evaluate and save an average of the weights with this decay per step (0 = off).")
    ] = D.ema,
    seed: Annotated[int, typer.Option(help="Random seed.")] = D.seed,
    val_size: Annotated[
        int, typer.Option(help="Training images held out to choose best.pt; 0 trains on all 60,000.")
    ] = D.val_size,
    recipe: Annotated[
        PresetName,
        typer.Option(
            help="Preset: 'default', or 'report' (its CNN, SGD lr 0.01 momentum 0.5, batch 128, all 60,000 "
            "images). Options given explicitly override it; the defaults shown are the default recipe's."
        ),
    ] = PresetName(DEFAULT_PRESET),
    device: Device = DeviceName("auto"),
    precision: Annotated[
        PrecisionName,
        typer.Option(
            help="Training arithmetic: auto is bf16 autocast where the hardware has it natively. "
            "Evaluation is always fp32."
        ),
    ] = PrecisionName("auto"),
    log_every: Annotated[int, typer.Option(help="Print a row of loss and accuracy every N batches.")] = 300,
    threads: Annotated[
        Optional[int],
        typer.Option(
            help="CPU threads torch may use; on a machine busy with other work, fewer threads than cores train faster.",
            show_default="torch's default: $OMP_NUM_THREADS, else one per core",
        ),
    ] = None,
    out_dir: Annotated[
        Optional[Path],
        typer.Option(
            help="Where checkpoints, history and curves go.", show_default="./checkpoints, or the resumed run's"
        ),
    ] = None,
    keep: Annotated[
        Optional[int],
        typer.Option(
            help="Keep only the last N epoch-NNN.pt files (best.pt and last.pt always stay).", show_default="all"
        ),
    ] = None,
    resume: Annotated[
        Optional[Path], typer.Option(help="Continue a run from its last.pt (or its folder).", show_default=False)
    ] = None,
    data_dir: DataDir = None,
    no_download: NoDownload = False,
    compile_net: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the network for training (pays off on GPUs and long runs; "
            "compiling takes tens of seconds).",
        ),
    ] = False,
    nproc: Annotated[
        int,
        typer.Option(help="Train with N processes (torch.distributed, gloo on CPU, nccl on CUDA); launches torchrun."),
    ] = 1,
    list_models: Annotated[bool, typer.Option("--list-models", help="List the models and exit.")] = False,
) -> None:
    """Train a network; checkpoints every epoch, history and curves into --out-dir."""
    from mnistcli import trainer

    if list_models:
        return _print_models()
    if nproc < 1:
        raise OptionError(f"--nproc must be at least 1, got {nproc}")
    if keep is not None and keep < 1:
        raise OptionError(f"--keep must be at least 1, got {keep}")
    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if nproc > 1 and not under_torchrun:
        from mnistcli import distributed

        raise typer.Exit(distributed.launch(nproc, _without_option(sys.argv[1:], "--nproc")))
    given = {name: value(ctx.params[name]) for name in RECIPE_OPTIONS if _given(ctx, name)}
    if resume is not None and resume.is_dir():
        resume = resume / "last.pt"
    options = RunOptions(
        data_dir=data_dir,
        download=not no_download,
        out_dir=out_dir if out_dir is not None else resume.parent if resume is not None else Path("checkpoints"),
        device=value(device),
        precision=value(precision),
        compile=compile_net,
        log_every=log_every,
        threads=threads,
        keep=keep,
        resume=resume,
        command=" ".join(["mnistcli", *sys.argv[1:]]),
    )
    display = ui.TrainDisplay()
    # Under torchrun every worker gets the signal and stops at once; the last finished epoch's
    # checkpoint is what --resume continues from.
    with _NoStop() if under_torchrun else _StopFlag(display.notice) as stop:
        try:
            result = trainer.fit(
                options,
                preset=value(recipe) if _given(ctx, "recipe") else None,
                given=given,
                hooks=display,
                should_stop=stop,
            )
        finally:
            display.close()
    _report(result, options)
    if result.interrupted:
        raise typer.Exit(143 if stop.signal == signal.SIGTERM else 130)


def _report(result: RunResult, options: RunOptions) -> None:
    """The summary table, the curves, and what to do next."""
    from mnistcli import plots

    if result.history:
        ui.console.print(ui.history_table(result.history, result.best_epoch))
        title = f"mnistcli {result.recipe.model}"
        note = train_note(result.recipe)
        curves = plots.training_curves(result.history, result.out_dir / "curves.png", title=title, train_note=note)
        ui.info(f"History: {result.out_dir / 'history.json'}, {result.out_dir / 'history.csv'}; curves: {curves}")
    if result.interrupted_at is not None:
        epoch, batch = result.interrupted_at
        ui.warn(f"stopped in epoch {epoch} after batch {batch}; saved {result.out_dir / 'last.pt'}")
        ui.info("Resume with: " + resume_command(result.out_dir / "last.pt", options))
        return
    best = next((h for h in result.history if h["epoch"] == result.best_epoch), None)
    if best is not None:
        ui.info(
            f"Best epoch {best['epoch']}: val {ui.pct(best.get('val_acc'))}, test {ui.pct(best['test_acc'])} "
            f"-> {result.out_dir / 'best.pt'}"
        )


def train_note(r: Recipe) -> str:
    """Why the training curve sits apart from validation and test: how its figures were measured."""
    parts = ["during the epoch"]
    if r.augment:
        parts.append("shifted images")
    if r.label_smoothing:
        parts.append(f"label smoothing {r.label_smoothing:g}")
    return ", ".join(parts)


def resume_command(last: Path, options: RunOptions) -> str:
    """The command that continues a stopped run: its last.pt and the run options that were not
    at their defaults (the recipe and the data folder are in the checkpoint)."""
    words = ["mnistcli", "train", "--resume", str(last)]
    defaults = RunOptions()
    for flag, current, default in (
        ("--device", options.device, defaults.device),
        ("--precision", options.precision, defaults.precision),
        ("--log-every", options.log_every, defaults.log_every),
        ("--threads", options.threads, defaults.threads),
        ("--keep", options.keep, defaults.keep),
    ):
        if current != default:
            words += [flag, str(current)]
    if options.compile:
        words.append("--compile")
    if not options.download:
        words.append("--no-download")
    return shlex.join(words)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set option `name` (on the command line or in the environment)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _print_models() -> None:
    from mnistcli.models import DEFAULT_MODEL, count_parameters, create_model, model_names, model_spec

    rows = [(n, count_parameters(create_model(n)), model_spec(n).description) for n in model_names()]
    ui.console.print(ui.model_table(rows, DEFAULT_MODEL))


def _without_option(argv: list[str], name: str) -> list[str]:
    """argv less `name VALUE` / `name=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


class _StopFlag:
    """SIGINT/SIGTERM ask training to stop after the current batch; a second Ctrl-C aborts."""

    def __init__(self, notice: Callable[[str], None]):
        self.notice = notice
        self.signal: Optional[int] = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        self.notice("Stopping after this batch to save a resumable checkpoint (Ctrl-C again to abort)")

    def __call__(self) -> bool:
        return self.signal is not None

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _NoStop(_StopFlag):
    """Under torchrun: no signal handling of our own."""

    def __init__(self) -> None:
        super().__init__(lambda message: None)

    def __enter__(self) -> _NoStop:
        return self

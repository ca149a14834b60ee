"""The `mnistcli` command line: thin Typer commands over the core; no tensor math here."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from mnistcli import __version__, ui
from mnistcli.errors import MnistCliError

app = typer.Typer(
    name="mnistcli",
    help="Train, evaluate and use PyTorch networks for handwritten digits (MNIST).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get("MNISTCLI_DEBUG", "") not in ("", "0")


def handles_errors(fn: Callable) -> Callable:
    """Expected failures become one red line on stderr and a non-zero exit (a traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MnistCliError as exc:
            if debug_enabled():
                raise
            ui.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            ui.error("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        ui.info(f"mnistcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show a full traceback on errors (or set MNISTCLI_DEBUG=1).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Train, evaluate and use PyTorch networks for handwritten digits (MNIST)."""
    _state["debug"] = debug


DataDir = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        envvar="MNISTCLI_DATA_DIR",
        help="Folder with MNIST (the four IDX files, flat or in MNIST/raw/); downloaded there when missing. "
        "Default: ./data.",
        show_default=False,
    ),
]
NoDownload = Annotated[bool, typer.Option("--no-download", help="Never download MNIST; fail if it is not on disk.")]


class _StopFlag:
    """SIGINT/SIGTERM ask training to stop after the current batch; a second Ctrl-C aborts."""

    def __init__(self, notice: Callable[[str], None]):
        self.notice = notice
        self.signal: Optional[int] = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> "_StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        self.notice("Stopping after this batch to save a resumable checkpoint (Ctrl-C again to abort)")

    def __call__(self) -> bool:
        return self.signal is not None

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@app.command()
@handles_errors
def train(
    epochs: Annotated[Optional[int], typer.Option(help="Epochs to train. [default: 20]", show_default=False)] = None,
    model: Annotated[
        Optional[str], typer.Option(help="Network to train (see --list-models). [default: cnn]", show_default=False)
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per batch. [default: 128]", show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (the peak of the schedule).", show_default=False)] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="sgd, adam or adamw.", show_default=False)] = None,
    momentum: Annotated[Optional[float], typer.Option(help="SGD momentum.", show_default=False)] = None,
    nesterov: Annotated[Optional[bool], typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum for SGD.", show_default=False)] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay (not on biases and batch norm).", show_default=False)] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Learning-rate schedule over the run: onecycle, cosine or none.", show_default=False)] = None,
    label_smoothing: Annotated[Optional[float], typer.Option(help="Label smoothing of the loss.", show_default=False)] = None,
    augment: Annotated[Optional[int], typer.Option(help="Random shifts of up to N pixels (0 = none).", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed. [default: 0]", show_default=False)] = None,
    val_size: Annotated[
        Optional[int], typer.Option(help="Training images held out for validation; 0 trains on all 60,000. [default: 5000]", show_default=False)
    ] = None,
    recipe: Annotated[
        str, typer.Option(help="Preset recipe: 'default', or 'report' (its CNN, SGD lr 0.01 momentum 0.5, batch 128, all 60,000 images). Options given explicitly override it.")
    ] = "default",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    log_every: Annotated[int, typer.Option(help="Print a loss/accuracy row every N batches.")] = 300,
    out_dir: Annotated[Path, typer.Option(help="Where checkpoints, history and curves go.")] = Path("checkpoints"),
    resume: Annotated[
        Optional[Path], typer.Option(help="Continue a run from its last.pt (or its folder).", show_default=False)
    ] = None,
    data_dir: DataDir = None,
    no_download: NoDownload = False,
    list_models: Annotated[bool, typer.Option("--list-models", help="List the models and exit.")] = False,
) -> None:
    """Train a network; checkpoints every epoch, history and curves into --out-dir."""
    from mnistcli import plots, trainer
    from mnistcli.recipes import make_recipe

    if list_models:
        _print_models()
        return
    overrides = dict(
        model=model, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
        nesterov=nesterov, weight_decay=weight_decay, scheduler=scheduler, label_smoothing=label_smoothing,
        augment=augment, val_size=val_size, seed=seed,
    )  # fmt: skip
    explicit = {k for k, v in overrides.items() if v is not None}
    run_recipe = make_recipe(recipe, **overrides)
    if resume is not None and recipe != "default":
        raise MnistCliError("--recipe cannot be combined with --resume: the run keeps its own recipe")
    if resume is not None and resume.is_dir():
        resume = resume / "last.pt"
    options = trainer.RunOptions(
        data_dir=data_dir, download=not no_download, out_dir=out_dir if resume is None or out_dir != Path("checkpoints") else resume.parent,
        device=device, log_every=log_every, resume=resume,
    )  # fmt: skip
    display = ui.TrainDisplay()
    with _StopFlag(display.notice) as stop:
        try:
            result = trainer.fit(run_recipe, options, display, should_stop=stop, explicit=explicit)
        finally:
            display.close()
    if result.history:
        ui.console.print(ui.history_table(result.history, result.best_epoch))
        curves = plots.training_curves(result.history, result.out_dir / "curves.png", title=f"mnistcli {run_recipe.model}")
        ui.info(f"History: {result.out_dir / 'history.json'}, {result.out_dir / 'history.csv'}; curves: {curves}")
    if result.interrupted:
        epoch, batch = result.interrupted_at
        ui.warn(f"stopped in epoch {epoch} after batch {batch}; saved {result.out_dir / 'last.pt'}")
        ui.info(f"Resume with: mnistcli train --resume {result.out_dir / 'last.pt'}")
        raise typer.Exit(143 if stop.signal == signal.SIGTERM else 130)
    if result.best_epoch is not None:
        best = next(h for h in result.history if h["epoch"] == result.best_epoch) if result.history else None
        if best:
            ui.info(
                f"Best epoch {best['epoch']}: val {ui.pct(best.get('val_acc'))}, test {ui.pct(best['test_acc'])} "
                f"-> {result.out_dir / 'best.pt'}"
            )


def _print_models() -> None:
    from mnistcli.models import DEFAULT_MODEL, count_parameters, create_model, model_names, model_spec

    rows = [(n, count_parameters(create_model(n)), model_spec(n).description) for n in model_names()]
    ui.console.print(ui.model_table(rows, DEFAULT_MODEL))


def main() -> None:
    app(prog_name="mnistcli")

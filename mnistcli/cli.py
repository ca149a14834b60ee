"""The `mnistcli` command line: thin Typer commands over the core; no tensor math here."""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from mnistcli import __version__, ui
from mnistcli.errors import MnistCliError, OptionError

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


class _NoStop:
    signal = None

    def __enter__(self) -> "_NoStop":
        return self

    def __call__(self) -> bool:
        return False

    def __exit__(self, *exc) -> None:
        pass


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


@app.command()
@handles_errors
def train(
    epochs: Annotated[Optional[int], typer.Option(help="Epochs to train. [default: 20]", show_default=False)] = None,
    model: Annotated[
        Optional[str], typer.Option(help="Network to train (see --list-models). [default: cnn]", show_default=False)
    ] = None,
    dataset: Annotated[
        Optional[str], typer.Option(help="mnist, fashion-mnist, kmnist or emnist-digits. [default: mnist]", show_default=False)
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
    ema: Annotated[Optional[float], typer.Option(help="Evaluate and save an average of the weights with this decay per step (0 = off).", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed. [default: 0]", show_default=False)] = None,
    val_size: Annotated[
        Optional[int], typer.Option(help="Training images held out for validation; 0 trains on all 60,000. [default: 5000]", show_default=False)
    ] = None,
    recipe: Annotated[
        str, typer.Option(help="Preset recipe: 'default', or 'report' (its CNN, SGD lr 0.01 momentum 0.5, batch 128, all 60,000 images). Options given explicitly override it.")
    ] = "default",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    precision: Annotated[
        str, typer.Option(help="Training arithmetic: auto (bf16 autocast where the hardware has it natively), fp32 or bf16. Evaluation is always fp32.")
    ] = "auto",
    log_every: Annotated[int, typer.Option(help="Print a loss/accuracy row every N batches.")] = 300,
    out_dir: Annotated[
        Optional[Path],
        typer.Option(help="Where checkpoints, history and curves go. [default: ./checkpoints, or the resumed run's folder]", show_default=False),
    ] = None,
    resume: Annotated[
        Optional[Path], typer.Option(help="Continue a run from its last.pt (or its folder).", show_default=False)
    ] = None,
    data_dir: DataDir = None,
    no_download: NoDownload = False,
    compile_net: Annotated[
        bool, typer.Option("--compile", help="torch.compile the network for training (pays off on GPUs and long runs; compiling takes tens of seconds).")
    ] = False,
    nproc: Annotated[
        int, typer.Option(help="Train with N processes (torch.distributed, gloo on CPU, nccl on CUDA); launches torchrun.")
    ] = 1,
    list_models: Annotated[bool, typer.Option("--list-models", help="List the models and exit.")] = False,
) -> None:
    """Train a network; checkpoints every epoch, history and curves into --out-dir."""
    from mnistcli import plots, trainer
    from mnistcli.recipes import make_recipe

    if list_models:
        _print_models()
        return
    if nproc < 1:
        raise OptionError(f"--nproc must be at least 1, got {nproc}")
    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if nproc > 1 and not under_torchrun:
        from mnistcli import distributed

        raise typer.Exit(distributed.launch(nproc, _without_option(sys.argv[1:], "--nproc")))
    overrides = dict(
        model=model, dataset=dataset, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
        nesterov=nesterov, weight_decay=weight_decay, scheduler=scheduler, label_smoothing=label_smoothing,
        augment=augment, ema=ema, val_size=val_size, seed=seed,
    )  # fmt: skip
    explicit = {k for k, v in overrides.items() if v is not None}
    run_recipe = make_recipe(recipe, **overrides)
    if resume is not None and recipe != "default":
        raise OptionError("--recipe cannot be combined with --resume: the run keeps its own recipe")
    if resume is not None and resume.is_dir():
        resume = resume / "last.pt"
    if out_dir is None:
        out_dir = resume.parent if resume is not None else Path("checkpoints")
    options = trainer.RunOptions(
        data_dir=data_dir, download=not no_download, out_dir=out_dir, device=device, precision=precision, compile=compile_net,
        log_every=log_every, resume=resume,
        command=" ".join(["mnistcli", *sys.argv[1:]]),
    )  # fmt: skip
    display = ui.TrainDisplay()
    # Under torchrun every worker gets the signal and stops at once; the last finished epoch's
    # checkpoint is what --resume continues from.
    with (_NoStop() if under_torchrun else _StopFlag(display.notice)) as stop:
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
    best = next((h for h in result.history if h["epoch"] == result.best_epoch), None)
    if best is not None:
        ui.info(
            f"Best epoch {best['epoch']}: val {ui.pct(best.get('val_acc'))}, test {ui.pct(best['test_acc'])} "
            f"-> {result.out_dir / 'best.pt'}"
        )


CheckpointOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--checkpoint", "-c",
        help="Checkpoint to use. Default: ./checkpoints/best.pt, else the bundled pretrained model.",
        show_default=False,
    ),
]  # fmt: skip
ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", help="Architecture of a bare state_dict saved by other tools (see train --list-models).", show_default=False),
]  # fmt: skip
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]


def _checkpoint_info(ckpt: dict, path: Path, why: str) -> dict:
    from mnistcli import checkpoint

    return {"path": str(path), "source": why, "model": ckpt.get("model"), "epoch": ckpt.get("epoch"),
            "metrics": ckpt.get("metrics") or {}, "summary": checkpoint.describe(ckpt)}  # fmt: skip


def _check_split(split: str) -> None:
    if split not in ("test", "val", "train"):
        raise OptionError(f"unknown split {split!r}; choose from: test, val, train")


def _print_json(document) -> None:
    import json

    print(json.dumps(document, indent=2))


@app.command()
@handles_errors
def evaluate(
    ckpt: Annotated[
        Optional[Path],
        typer.Argument(help="Checkpoint (.pt). Default: ./checkpoints/best.pt, else the bundled model.", show_default=False),
    ] = None,
    split: Annotated[str, typer.Option(help="test, val or train (val: the checkpoint's own held-out images).")] = "test",
    out_dir: Annotated[
        Optional[Path], typer.Option(help="Save confusion.png and mistakes.png (the most confident errors) here.", show_default=False)
    ] = None,
    json_out: JsonOpt = False,
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    data_dir: DataDir = None,
    no_download: NoDownload = False,
) -> None:
    """Accuracy, loss, per-class precision/recall/F1 and the confusion matrix of a checkpoint."""
    from mnistcli import checkpoint, engine, metrics, plots, trainer

    _check_split(split)
    dev = engine.select_device(device)
    net, ck, path, why = checkpoint.load_model(ckpt, dev, model)
    classes = checkpoint.class_names(ck)
    data = trainer.dataset_for(ck, data_dir, not no_download, ("train", "test") if split != "test" else ("test",))
    result = engine.evaluate(net, data.split(split).to(dev))
    cm = metrics.confusion_matrix(result.labels, result.predictions, len(classes))
    rows = metrics.per_class(cm)
    errors = result.total - result.correct
    saved = []
    if out_dir is not None:
        images = data.split(split).images
        saved.append(plots.confusion_figure(cm, classes, out_dir / "confusion.png",
                                            title=f"{ck.get('model')} on {split}: {100 * result.accuracy:.2f}% ({errors} errors)"))  # fmt: skip
        worst = metrics.worst_mistakes(result.probabilities, result.labels, 40)
        conf, pred = result.probabilities.max(1)
        titles = [f"true {classes[result.labels[i]]}, pred {classes[pred[i]]}\n{100 * conf[i]:.0f}%" for i in worst.tolist()]
        saved.append(plots.image_grid([images[i].numpy() for i in worst.tolist()], out_dir / "mistakes.png", titles,
                                      colors=["firebrick"] * len(titles), suptitle="Most confident mistakes"))  # fmt: skip
    if json_out:
        _print_json({
            "checkpoint": _checkpoint_info(ck, path, why), "split": split, "images": result.total,
            "accuracy": result.accuracy, "loss": result.loss, "errors": errors, "classes": classes,
            "per_class": rows, "confusion_matrix": cm.tolist(), "plots": [str(p) for p in saved],
        })  # fmt: skip
        return
    ui.info(f"Checkpoint {path} ({why}): {checkpoint.describe(ck)}")
    ui.info(f"[bold]{split}[/]: accuracy [bold]{ui.pct(result.accuracy)}[/] ({result.correct:,}/{result.total:,}), "
            f"loss {result.loss:.4f}, {errors:,} errors")  # fmt: skip
    ui.console.print(ui.per_class_table(rows, classes))
    ui.console.print(ui.confusion_table(cm, classes))
    if saved:
        ui.info("Saved " + ui.saved_paths(saved))


@app.command()
@handles_errors
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, BMP, GIF, WebP, TIFF) or folders of them.", show_default=False)],
    checkpoint_path: CheckpointOpt = None,
    top_k: Annotated[int, typer.Option(help="How many most likely digits to list.")] = 3,
    raw: Annotated[bool, typer.Option("--raw", help="Skip the clean-up: the images are already 28x28 MNIST-style (light on black).")] = False,
    json_out: JsonOpt = False,
    show: Annotated[bool, typer.Option("--show", help="Print the 28x28 input the network saw, in the terminal.")] = False,
    save_inputs: Annotated[
        Optional[Path], typer.Option(help="Write the 28x28 inputs the network saw as PNGs into this folder.", show_default=False)
    ] = None,
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Read the digit in people's own photos, scans and drawings."""
    import numpy as np
    import torch

    from mnistcli import checkpoint, engine, preprocess

    if top_k < 1:
        raise OptionError(f"--top-k must be at least 1, got {top_k}")
    dev = engine.select_device(device)
    net, ck, path, why = checkpoint.load_model(checkpoint_path, dev, model)
    classes = checkpoint.class_names(ck)
    spec = checkpoint.dataset_of(ck)
    files = preprocess.expand_inputs(images)
    if not files:
        raise MnistCliError("no image files found in " + ", ".join(str(p) for p in images))
    inputs, ok_files, failures = [], [], []
    for f in files:
        try:
            inputs.append(preprocess.load_digit(f, raw=raw, object_size=spec.object_size))
            ok_files.append(f)
        except MnistCliError as exc:
            failures.append({"file": str(f), "error": str(exc)})
    rows = []
    if inputs:
        batch = torch.from_numpy(np.stack(inputs))
        probs = engine.predict(net, batch, mean=spec.mean, std=spec.std)
        k = min(top_k, probs.shape[1])
        top_p, top_i = probs.topk(k, dim=1)
        for f, p, i in zip(ok_files, top_p.tolist(), top_i.tolist()):
            rows.append({"file": str(f), "digit": i[0], "label": classes[i[0]], "confidence": p[0],
                         "top_k": [{"digit": c, "label": classes[c], "probability": q} for c, q in zip(i, p)]})  # fmt: skip
    if save_inputs is not None:
        save_inputs.mkdir(parents=True, exist_ok=True)
        for f, x in zip(ok_files, inputs):
            preprocess.save_input(x, save_inputs / f"{f.stem}.png")
    if json_out:
        _print_json({"checkpoint": _checkpoint_info(ck, path, why), "predictions": rows, "errors": failures})
    else:
        ui.info(f"Checkpoint {path} ({why}): {checkpoint.describe(ck)}")
        if rows:
            ui.console.print(ui.predictions_table(rows, min(top_k, len(classes))))
        if show:
            for r, x in zip(rows, inputs):
                ui.console.print(ui.digit_preview(x, f"{r['file']}: {r['label']}"))
        if save_inputs is not None and inputs:
            ui.info(f"Inputs saved in {save_inputs}")
    for fail in failures:
        ui.error(fail["error"])
    if failures:
        raise typer.Exit(1)


@app.command("show-samples")
@handles_errors
def show_samples(
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    count: Annotated[int, typer.Option(help="How many images (ignored with --per-class).")] = 40,
    per_class: Annotated[Optional[int], typer.Option(help="This many images of each class, one row per class.", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Which images to pick.")] = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG to write.")] = Path("samples.png"),
    show: Annotated[bool, typer.Option("--show", help="Also open the grid in a window (needs a display).")] = False,
    checkpoint_path: Annotated[
        Optional[Path], typer.Option("--checkpoint", "-c", help="Title each image with truth and this checkpoint's prediction; mistakes in red.", show_default=False)
    ] = None,
    errors_only: Annotated[bool, typer.Option("--errors-only", help="Only the images the checkpoint gets wrong.")] = False,
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist, kmnist or emnist-digits (with --checkpoint: its own).")] = "mnist",
    device: DeviceOpt = "auto",
    data_dir: DataDir = None,
    no_download: NoDownload = False,
) -> None:
    """A labelled grid of dataset images as a PNG, and the split's label counts."""
    import torch

    from mnistcli import checkpoint, data, engine, plots, trainer

    _check_split(split)
    if count < 1 or (per_class is not None and per_class < 1):
        raise OptionError("--count and --per-class must be at least 1")
    if errors_only and checkpoint_path is None:
        raise OptionError("--errors-only needs --checkpoint")
    ck = net = None
    if checkpoint_path is not None:
        dev = engine.select_device(device)
        net, ck, _, _ = checkpoint.load_model(checkpoint_path, dev)
        ds = trainer.dataset_for(ck, data_dir, not no_download, ("train", "test") if split != "test" else ("test",))
    else:
        # Without a checkpoint, "train" is all 60,000 training images and "val" the default held-out part.
        ds = data.load_dataset(dataset, data_dir, download_ok=not no_download,
                               val_size=data.DEFAULT_VAL_SIZE if split == "val" else 0,
                               splits=("train", "test") if split != "test" else ("test",))  # fmt: skip
    classes = ds.classes
    chosen = ds.split(split)
    labels = chosen.labels
    predicted = engine.predict(net, chosen.images, mean=chosen.mean, std=chosen.std).argmax(1) if net is not None else None
    pool = torch.arange(len(labels))
    if errors_only:
        pool = torch.nonzero(predicted != labels).flatten()
    gen = torch.Generator().manual_seed(seed)
    pool = pool[torch.randperm(len(pool), generator=gen)]
    if per_class is not None:
        picks = torch.cat([pool[labels[pool] == c][:per_class] for c in range(len(classes))])
        ncols = per_class
    else:
        picks = pool[:count]
        ncols = None
    if len(picks) == 0:
        ui.info("No images to show" + (" (the checkpoint makes no mistakes on this split)" if errors_only else ""))
    titles, colors = [], []
    for i in picks.tolist():
        truth = classes[labels[i]]
        if predicted is None:
            titles.append(truth)
            colors.append("black")
        else:
            guess = classes[predicted[i]]
            titles.append(f"{truth} -> {guess}" if guess != truth else truth)
            colors.append("red" if guess != truth else "black")
    if len(picks):
        what = "mistakes" if errors_only else "samples"
        plots.image_grid([chosen.images[i].numpy() for i in picks.tolist()], output, titles, colors, ncols=ncols,
                         suptitle=f"{ds.spec.title} {split} {what}" + (f" (model {ck['model']}: true -> predicted)" if ck else ""))  # fmt: skip
        ui.info(f"Saved {len(picks)} images to {output}")
    counts = torch.bincount(labels.cpu(), minlength=len(classes)).tolist()
    ui.console.print(ui.distribution_table(counts, classes, split))
    if show and len(picks) and not plots.show(output):
        ui.warn(f"no display to open a window; the grid is in {output}")


def _print_models() -> None:
    from mnistcli.models import DEFAULT_MODEL, count_parameters, create_model, model_names, model_spec

    rows = [(n, count_parameters(create_model(n)), model_spec(n).description) for n in model_names()]
    ui.console.print(ui.model_table(rows, DEFAULT_MODEL))


def main() -> None:
    app(prog_name="mnistcli")

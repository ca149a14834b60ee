"""`mnistcli evaluate`: accuracy, loss, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from mnistcli import ui
from mnistcli.commands.common import (
    BareModel,
    DataDir,
    Device,
    DeviceName,
    Json,
    NoDownload,
    SplitName,
    handles_errors,
    print_json,
    value,
)


@handles_errors
def evaluate_command(
    ckpt: Annotated[
        Optional[Path],
        typer.Argument(
            help="Model file (.pt checkpoint or exported .safetensors).",
            show_default="./checkpoints/best.pt, else the bundled model",
        ),
    ] = None,
    split: Annotated[
        SplitName, typer.Option(help="Which images: val is the checkpoint's own held-out part of train.")
    ] = SplitName("test"),
    out_dir: Annotated[
        Optional[Path],
        typer.Option(
            help="Save confusion.png, mistakes.png (the most confident errors) and reliability.png here.",
            show_default=False,
            metavar="FOLDER",
        ),
    ] = None,
    json_out: Json = False,
    model: BareModel = None,
    device: Device = DeviceName("auto"),
    data_dir: DataDir = None,
    no_download: NoDownload = False,
) -> None:
    """Accuracy, loss, per-class precision/recall/F1 and the confusion matrix of a checkpoint."""
    from mnistcli import checkpoint, devices, inference

    split_name = value(split)
    loaded = checkpoint.load_model(ckpt, devices.select_device(value(device)), value(model))
    ck = loaded.checkpoint
    evaluation = inference.evaluate_model(loaded, data_dir, split_name, not no_download)
    saved = _save_plots(out_dir, evaluation, ck.model) if out_dir is not None else []
    if json_out:
        return print_json({"checkpoint": loaded.info(), **evaluation.to_dict(), "plots": [str(p) for p in saved]})
    result = evaluation.result
    ui.info(f"Checkpoint {loaded.path} ({loaded.source}): {ck.describe()}; data {evaluation.data_dir}")
    ui.info(
        f"[bold]{split_name}[/]: accuracy [bold]{ui.pct(result.accuracy)}[/] ({result.correct:,}/{result.total:,}), "
        f"loss {result.loss:.4f}, {evaluation.errors:,} errors"
    )
    ui.info(
        f"Calibration: expected calibration error {ui.pct(evaluation.ece)} with temperature "
        f"{result.temperature:.3g} ({ui.pct(evaluation.ece_uncalibrated)} uncalibrated)"
    )
    ui.console.print(ui.per_class_table(evaluation.to_dict()["per_class"], ck.classes))
    ui.console.print(ui.confusion_table(evaluation.confusion, ck.classes))
    if saved:
        ui.info("Saved " + ui.saved_paths(saved))


def _save_plots(out_dir: Path, evaluation: Any, model: str) -> list[Path]:
    """confusion.png, mistakes.png (the most confident, with their index in the split) and reliability.png."""
    from mnistcli import metrics, plots

    result, classes = evaluation.result, evaluation.classes
    title = f"{model} on {evaluation.split}: {100 * result.accuracy:.2f}% ({evaluation.errors} errors)"
    probabilities = result.probabilities
    worst = metrics.worst_mistakes(probabilities, result.labels, 40).tolist()
    confidence, predicted = probabilities.max(1)
    titles = plots.mistake_titles(
        worst, result.labels[worst].tolist(), predicted[worst].tolist(), confidence[worst].tolist(), classes
    )
    return [
        plots.confusion_figure(evaluation.confusion, classes, out_dir / "confusion.png", title=title),
        plots.image_grid(
            [evaluation.images[i].numpy() for i in worst],
            out_dir / "mistakes.png",
            titles,
            colors=["firebrick"] * len(titles),
            suptitle=f"The most confident mistakes on {evaluation.split} (#: index in the split)",
        ),
        plots.reliability_figure(
            metrics.reliability(probabilities, result.labels),
            metrics.reliability(result.logits.softmax(1), result.labels),
            out_dir / "reliability.png",
            title=f"{model} on {evaluation.split}: is it as sure as it is right?",
            temperature=result.temperature,
        ),
    ]

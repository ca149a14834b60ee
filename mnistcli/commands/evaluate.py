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
        typer.Option(help="Save confusion.png and mistakes.png (the most confident errors) here.", show_default=False),
    ] = None,
    json_out: Json = False,
    model: BareModel = None,
    device: Device = DeviceName("auto"),
    data_dir: DataDir = None,
    no_download: NoDownload = False,
) -> None:
    """Accuracy, loss, per-class precision/recall/F1 and the confusion matrix of a checkpoint."""
    from mnistcli import checkpoint, devices, engine, inference, metrics

    split_name = value(split)
    loaded = checkpoint.load_model(ckpt, devices.select_device(value(device)), value(model))
    ck = loaded.checkpoint
    data = inference.dataset_of(ck, data_dir, not no_download, inference.splits_for(split_name))
    images = data.split(split_name)
    result = engine.evaluate_split(loaded.net, images.to(next(loaded.net.parameters()).device))
    cm = metrics.confusion_matrix(result.labels, result.predictions, len(ck.classes))
    report = metrics.per_class(cm)
    saved = _save_plots(out_dir, cm, result, images.images, ck, split_name) if out_dir is not None else []
    if json_out:
        return print_json(
            {
                "checkpoint": loaded.info(),
                "split": split_name,
                "images": result.total,
                "data_dir": str(data.root),
                "accuracy": result.accuracy,
                "loss": result.loss,
                "errors": result.total - result.correct,
                "classes": ck.classes,
                "per_class": report,
                "confusion_matrix": cm.tolist(),
                "plots": [str(p) for p in saved],
            }
        )
    ui.info(f"Checkpoint {loaded.path} ({loaded.source}): {ck.describe()}; data {data.root}")
    ui.info(
        f"[bold]{split_name}[/]: accuracy [bold]{ui.pct(result.accuracy)}[/] ({result.correct:,}/{result.total:,}), "
        f"loss {result.loss:.4f}, {result.total - result.correct:,} errors"
    )
    ui.console.print(ui.per_class_table(report, ck.classes))
    ui.console.print(ui.confusion_table(cm, ck.classes))
    if saved:
        ui.info("Saved " + ui.saved_paths(saved))


def _save_plots(out_dir: Path, cm: Any, result: Any, images: Any, ck: Any, split: str) -> list[Path]:
    from mnistcli import metrics, plots

    errors = result.total - result.correct
    title = f"{ck.model} on {split}: {100 * result.accuracy:.2f}% ({errors} errors)"
    worst = metrics.worst_mistakes(result.probabilities, result.labels, 40).tolist()
    confidence, predicted = result.probabilities.max(1)
    titles = plots.mistake_titles(
        worst, result.labels[worst].tolist(), predicted[worst].tolist(), confidence[worst].tolist(), ck.classes
    )
    return [
        plots.confusion_figure(cm, ck.classes, out_dir / "confusion.png", title=title),
        plots.image_grid(
            [images[i].numpy() for i in worst],
            out_dir / "mistakes.png",
            titles,
            colors=["firebrick"] * len(titles),
            suptitle="Most confident mistakes",
        ),
    ]

"""`mnistcli show-samples`: a labelled grid of dataset images as a PNG, and the split's label counts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mnistcli import ui
from mnistcli.commands.common import (
    DataDir,
    DatasetName,
    Device,
    DeviceName,
    NoDownload,
    SplitName,
    handles_errors,
    value,
)
from mnistcli.errors import OptionError


@handles_errors
def show_samples_command(
    split: Annotated[SplitName, typer.Option(help="Which images: val is the held-out part of train.")] = SplitName(
        "test"
    ),
    count: Annotated[int, typer.Option(help="How many images (ignored with --per-class).")] = 40,
    per_class: Annotated[
        Optional[int], typer.Option(help="This many images of each class, one row per class.", show_default=False)
    ] = None,
    seed: Annotated[int, typer.Option(help="Which images to pick.")] = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG to write.")] = Path("samples.png"),
    show: Annotated[bool, typer.Option("--show", help="Also open the grid in a window (needs a display).")] = False,
    checkpoint_path: Annotated[
        Optional[Path],
        typer.Option(
            "--checkpoint",
            "-c",
            help="Title each image with truth and this model's prediction; mistakes in red.",
            show_default=False,
        ),
    ] = None,
    errors_only: Annotated[bool, typer.Option("--errors-only", help="Only the images the model gets wrong.")] = False,
    dataset: Annotated[
        DatasetName, typer.Option(help="Dataset (with --checkpoint: the checkpoint's own).")
    ] = DatasetName("mnist"),
    device: Device = DeviceName("auto"),
    data_dir: DataDir = None,
    no_download: NoDownload = False,
) -> None:
    """A labelled grid of dataset images as a PNG, and the split's label counts."""
    import torch

    from mnistcli import checkpoint, data, devices, engine, inference, plots

    split_name = value(split)
    if count < 1 or (per_class is not None and per_class < 1):
        raise OptionError("--count and --per-class must be at least 1")
    if errors_only and checkpoint_path is None:
        raise OptionError("--errors-only needs --checkpoint")
    loaded = predicted = None
    if checkpoint_path is not None:
        loaded = checkpoint.load_model(checkpoint_path, devices.select_device(value(device)))
        ds = inference.dataset_of(loaded.checkpoint, data_dir, not no_download, inference.splits_for(split_name))
    else:  # "train" is all 60,000 training images, "val" the default held-out part
        val_size = data.DEFAULT_VAL_SIZE if split_name == "val" else 0
        splits = inference.splits_for(split_name)
        ds = data.load_dataset(value(dataset), data_dir, download_ok=not no_download, val_size=val_size, splits=splits)
    if loaded is not None:
        ui.info(f"Checkpoint {loaded.path} ({loaded.source}): {loaded.checkpoint.describe()}")
    ui.info(f"Data: {ds.spec.title} from {ds.root}")
    chosen = ds.split(split_name)
    if loaded is not None:
        predicted = engine.predict_probabilities(loaded.net, chosen.images, mean=chosen.mean, std=chosen.std).argmax(1)
    among = torch.nonzero(predicted != chosen.labels).flatten() if errors_only and predicted is not None else None
    picks = inference.pick_samples(
        chosen.labels, count=count, per_class=per_class, seed=seed, among=among, num_classes=len(ds.classes)
    )
    if len(picks):
        titles, colors = plots.sample_titles(
            picks.tolist(), chosen.labels.tolist(), ds.classes, predicted.tolist() if predicted is not None else None
        )
        what = "mistakes" if errors_only else "samples"
        model = f" (model {loaded.checkpoint.model}: true -> predicted)" if loaded is not None else ""
        images = [chosen.images[i].numpy() for i in picks.tolist()]
        plots.image_grid(
            images, output, titles, colors, ncols=per_class, suptitle=f"{ds.spec.title} {split_name} {what}{model}"
        )
        ui.info(f"Saved {len(picks)} images to {output}")
    else:
        ui.info("No images to show" + (" (the model makes no mistakes on this split)" if errors_only else ""))
    if among is not None:  # the mistakes shown, by their true class
        counts = torch.bincount(chosen.labels.cpu()[picks], minlength=len(ds.classes)).tolist()
        title = f"True labels of the {len(picks):,} mistakes shown ({len(among):,} in the {split_name} split)"
    else:
        counts = torch.bincount(chosen.labels.cpu(), minlength=len(ds.classes)).tolist()
        title = f"Labels in the {split_name} split ({len(chosen):,} images)"
    ui.console.print(ui.distribution_table(counts, ds.classes, title))
    if show and len(picks) and not plots.show(output):
        ui.warn(f"no display to open a window; the grid is in {output}")

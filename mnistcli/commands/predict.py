"""`mnistcli predict`: read the digit in people's own photos, scans and drawings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mnistcli import ui
from mnistcli.commands.common import (
    BareModel,
    CheckpointPath,
    Device,
    DeviceName,
    Json,
    handles_errors,
    print_json,
    value,
)
from mnistcli.errors import MnistCliError, OptionError


@handles_errors
def predict_command(
    images: Annotated[
        list[Path],
        typer.Argument(help="Image files (PNG, JPEG, BMP, GIF, WebP, TIFF) or folders of them.", show_default=False),
    ],
    checkpoint_path: CheckpointPath = None,
    top_k: Annotated[int, typer.Option(help="How many most likely digits to list.")] = 3,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Skip the clean-up: the images are already 28x28 MNIST-style (light on black)."),
    ] = False,
    json_out: Json = False,
    show: Annotated[
        bool, typer.Option("--show", help="Print the 28x28 input the network saw, in the terminal.")
    ] = False,
    save_inputs: Annotated[
        Optional[Path],
        typer.Option(help="Write the 28x28 inputs the network saw as PNGs into this folder.", show_default=False),
    ] = None,
    model: BareModel = None,
    device: Device = DeviceName("auto"),
) -> None:
    """Read the digit in people's own photos, scans and drawings."""
    from mnistcli import checkpoint, devices, inference, preprocess

    if top_k < 1:
        raise OptionError(f"--top-k must be at least 1, got {top_k}")
    loaded = checkpoint.load_model(checkpoint_path, devices.select_device(value(device)), value(model))
    files = preprocess.expand_inputs(images)
    if not files:
        raise MnistCliError("no image files found in " + ", ".join(str(p) for p in images))
    pictures = inference.read_pictures(files, [str(f) for f in files], raw, loaded.checkpoint.spec.object_size)
    predictions = inference.predict_inputs(loaded, pictures.inputs, pictures.names, top_k)
    rows = [p.to_dict() for p in predictions]
    if save_inputs is not None:
        save_inputs.mkdir(parents=True, exist_ok=True)
        for name, x in zip(pictures.names, pictures.inputs):
            preprocess.save_input(x, save_inputs / f"{Path(name).stem}.png")
    if json_out:
        print_json(
            {"checkpoint": loaded.info(), "predictions": rows, "errors": [f.to_dict() for f in pictures.failures]}
        )
    else:
        ui.info(f"Checkpoint {loaded.path} ({loaded.source}): {loaded.checkpoint.describe()}")
        if rows:
            ui.console.print(ui.predictions_table(rows, min(top_k, len(loaded.checkpoint.classes))))
        if show:
            for row, x in zip(rows, pictures.inputs):
                ui.console.print(ui.digit_preview(x, f"{row['file']}: {row['label']}"))
        if save_inputs is not None and pictures.inputs:
            ui.info(f"Inputs saved in {save_inputs}")
    for failure in pictures.failures:
        ui.error(failure.error)
    if pictures.failures:
        raise typer.Exit(1)

"""`mnistcli explain`: what the network does to one digit, as one PNG (and --json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mnistcli import ui
from mnistcli.commands import params
from mnistcli.commands.common import (
    CheckpointPath,
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
from mnistcli.errors import OptionError


@handles_errors
def explain_command(
    image: Annotated[
        Optional[Path],
        typer.Argument(help="A photo, scan or drawing of one digit (or --index).", show_default=False, metavar="IMAGE"),
    ] = None,
    index: Annotated[
        Optional[int],
        params.option(
            "--index",
            help="Explain this image of the dataset's --split instead (as mistakes.png numbers them).",
            metavar="N",
        ),
    ] = None,
    split: Annotated[
        SplitName,
        params.option("--split", help="The split --index counts in.", default="test", metavar="test|val|train"),
    ] = SplitName("test"),
    checkpoint_path: CheckpointPath = None,
    raw: Annotated[bool, params.option("--raw", help="The picture is already 28x28 MNIST-style: no clean-up.")] = False,
    output: Annotated[
        Path, params.option("--output", "-o", help="PNG to write.", default="explain.png", metavar="PNG")
    ] = Path("explain.png"),
    json_out: Json = False,
    device: Device = DeviceName("auto"),
    data_dir: DataDir = None,
    no_download: NoDownload = False,
) -> None:
    """What the network does to one digit: each stage's outputs, the first layer's filters, the pixels that decided."""
    from mnistcli import checkpoint, devices, explain, inference, plots

    if (image is None) == (index is None):
        raise OptionError("give an IMAGE or --index N (not both)")
    loaded = checkpoint.load_model(checkpoint_path, devices.select_device(value(device)))
    ck = loaded.checkpoint
    if index is not None:
        split_name = value(split)
        chosen = inference.dataset_of(ck, data_dir, not no_download, inference.splits_for(split_name)).split(split_name)
        if not 0 <= index < len(chosen):
            raise OptionError(f"--index must be 0 to {len(chosen) - 1} for the {split_name} split, got {index}")
        name, inputs = (
            f"{split_name} #{index} (label {ck.classes[int(chosen.labels[index])]})",
            [chosen.images[index].numpy()],
        )
    else:
        assert image is not None
        name = str(image)
        pictures = inference.read_pictures([image], [name], raw, ck.spec.object_size)
        if pictures.failures:
            raise pictures.failures[0].exception()
        inputs = pictures.inputs
    prediction = inference.predict_inputs(loaded, inputs, [name], top_k=3)[0]
    explained = explain.explain(loaded, prediction)
    title = f"{ck.model}: {name} read as {prediction.label} ({100 * prediction.confidence:.0f}%)"
    plots.explanation_figure(explained, ck.classes, output, title=title)
    if json_out:
        return print_json({"checkpoint": loaded.info(), **explained.to_dict(), "figure": str(output)})
    ui.info(f"Checkpoint {loaded.path} ({loaded.source}): {ck.describe()}")
    answer = f"{prediction.label} ({ui.pct(prediction.confidence, 1)})"
    ui.info(f"{name}: {answer}; {len(explained.stages)} stages; saved {output}")

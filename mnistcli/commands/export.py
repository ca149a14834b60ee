"""`mnistcli export`: an inference-only model file from a checkpoint (safetensors, or ONNX)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from mnistcli import ui
from mnistcli.commands.common import choices, handles_errors, value

FORMATS = ("safetensors", "onnx")
if TYPE_CHECKING:
    FormatName = str
else:
    FormatName = choices("FormatName", FORMATS)


@handles_errors
def export_command(
    ckpt: Annotated[Path, typer.Argument(help="Checkpoint to export (.pt, e.g. a run's best.pt).", show_default=False)],
    out: Annotated[Path, typer.Argument(help="File to write: model.safetensors or model.onnx.", show_default=False)],
    fmt: Annotated[
        Optional[FormatName],
        typer.Option("--format", help="File format.", show_default="onnx for a .onnx file, else safetensors"),
    ] = None,
) -> None:
    """Write an inference-only model: the weights to use and what is needed to use them, nothing else."""
    from mnistcli import checkpoint

    chosen = value(fmt) if fmt is not None else ("onnx" if out.suffix.lower() == ".onnx" else "safetensors")
    source = checkpoint.load(ckpt)
    if chosen == "onnx":
        from mnistcli import onnx_export

        onnx_export.write_onnx(source, out)
    else:
        checkpoint.write_inference_file(source, out)
    ui.info(f"Wrote {out} ({chosen}, {out.stat().st_size / 1024:,.0f} KB): {source.describe()}")

"""ONNX export (the optional extra `mnistcli[onnx]`), for runtimes without torch; the safetensors
export is `checkpoint.write_inference_file`.

The ONNX graph takes what `predict` feeds the network, 28x28 images with pixel values 0-255
(light digit on black), normalises them itself and gives class probabilities:
`pixels` float32 (batch, 28, 28) -> `probabilities` float32 (batch, classes), any batch size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistcli.errors import MissingExtra

if TYPE_CHECKING:
    from mnistcli.checkpoint import Checkpoint


def write_onnx(ckpt: Checkpoint, path: Path) -> None:
    """Export the network with a dynamic batch axis. The metadata is the safetensors export's (one schema:
    Checkpoint.metadata), with what the graph takes and gives, in the model's metadata_props."""
    try:
        import onnx  # noqa: F401 (the exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("onnx", "ONNX export") from exc
    from mnistcli import checkpoint

    program = _onnx_program(ckpt)
    meta = {**ckpt.inference_only().metadata(), "input": INPUT, "output": OUTPUT}
    program.model.metadata_props.update({"mnistcli": json.dumps(meta)})
    checkpoint.write_file(Path(path), program.model_proto.SerializeToString())


INPUT = "pixels: float32 (batch, 28, 28), 0-255, light digit on black"
OUTPUT = "probabilities: float32 (batch, classes)"


def probabilities_module(ckpt: Checkpoint) -> Any:
    """pixels (B, 28, 28) in 0-255 -> class probabilities (B, classes): the network with its input
    normalisation and its calibrated softmax, as one module."""
    import torch

    from mnistcli import checkpoint

    class Probabilities(torch.nn.Module):
        def __init__(self, net: torch.nn.Module, mean: float, std: float, temperature: float):
            super().__init__()
            self.net = net
            self.scale = 1.0 / (255.0 * std)
            self.shift = mean / std
            self.temperature = temperature

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            x = pixels.unsqueeze(1) * self.scale - self.shift  # (B, 1, 28, 28), as data.normalize makes it
            return (self.net(x) / self.temperature).softmax(dim=1)

    net = checkpoint.build_model(ckpt).to(memory_format=torch.contiguous_format)
    return Probabilities(net, ckpt.spec.mean, ckpt.spec.std, ckpt.temperature).eval()


def _onnx_program(ckpt: Checkpoint) -> Any:  # torch.onnx.ONNXProgram
    import warnings

    import torch

    module = probabilities_module(ckpt)
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():  # the exporter reports its progress as warnings and prints
        warnings.simplefilter("ignore")
        return torch.onnx.export(
            module,
            (torch.zeros(2, 28, 28),),
            dynamo=True,
            input_names=["pixels"],
            output_names=["probabilities"],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )

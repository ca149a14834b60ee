"""mnistcli: train, evaluate and use PyTorch networks for handwritten digits.

From Python (see mnistcli.api, and the README's "Python API"):

    import mnistcli
    model = mnistcli.load()                 # the bundled model, or load("runs/a/best.pt")
    print(model.predict("digit.jpg").digit)

`import mnistcli` imports no torch; that waits until a model is loaded or a run starts.
"""

__version__ = "0.2.0"

from typing import TYPE_CHECKING, Any

from mnistcli import errors
from mnistcli.api import Model, TrainResult, load, train
from mnistcli.errors import CheckpointError, DataError, ImageError, MnistCliError, OptionError
from mnistcli.predictions import Prediction, Ranked

if TYPE_CHECKING:
    from mnistcli.inference import Evaluation


def __getattr__(name: str) -> Any:
    """Evaluation comes with torch, so it is imported when it is first asked for."""
    if name == "Evaluation":
        from mnistcli.inference import Evaluation

        return Evaluation
    raise AttributeError(f"module 'mnistcli' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "DataError",
    "Evaluation",
    "ImageError",
    "MnistCliError",
    "Model",
    "OptionError",
    "Prediction",
    "Ranked",
    "TrainResult",
    "__version__",
    "errors",
    "load",
    "train",
]

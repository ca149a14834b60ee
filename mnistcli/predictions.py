"""What reading a picture gives: a `Prediction` (the answer, how sure, the runner-up, the top k), or a
`Failure` saying why the picture could not be read. Plain records (no torch), shared by `predict`,
`serve` and `Model.predict`, so that all three give the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Ranked:
    """One of the most likely classes of a picture."""

    digit: int  # the class index
    label: str  # its name ("7", or "Sneaker" for Fashion-MNIST)
    probability: float


@dataclass
class Prediction:
    """What the network reads in one picture: the answer, how sure, the runner-up and the top k."""

    file: str  # the picture's name: its path, or what a program called it
    digit: int
    label: str
    confidence: float  # the answer's probability
    unsure: bool  # the answer's probability over slightly changed copies under UNSURE_BELOW: "digit or runner_up?"
    runner_up: Optional[Ranked]
    top_k: list[Ranked]
    input: np.ndarray = field(repr=False, compare=False)  # the 28x28 uint8 input the network saw (H, W)

    def to_dict(self) -> dict[str, Any]:
        """As `mnistcli predict --json` prints it (without the input)."""
        return {
            "file": self.file,
            "digit": self.digit,
            "label": self.label,
            "confidence": self.confidence,
            "unsure": self.unsure,
            "runner_up": asdict(self.runner_up) if self.runner_up is not None else None,
            "top_k": [asdict(r) for r in self.top_k],
        }


@dataclass(frozen=True)
class Failure:
    """A picture that could not be read, and why."""

    file: str
    error: str
    too_large: bool = False  # over the size mnistcli decodes (serve answers 413)

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "error": self.error}

    def exception(self) -> Exception:
        """The ImageError (or ImageTooLarge) to raise for it."""
        from mnistcli.errors import ImageError, ImageTooLarge

        return ImageTooLarge(self.error) if self.too_large else ImageError(self.error)

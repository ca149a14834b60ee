"""Figures saved as PNG: training curves, sample grids, confusion matrix, mistakes.

Uses matplotlib's object API on the Agg canvas, so it works with no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from matplotlib.figure import Figure

SERIES = (("train", "tab:blue"), ("val", "tab:orange"), ("test", "tab:green"))


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def training_curves(history: Sequence[dict], path: Path, title: Optional[str] = None) -> Path:
    """Loss and accuracy per epoch for train, validation and test (as in the report's figures)."""
    fig = Figure(figsize=(11, 4.2))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    for split, color in SERIES:
        loss = [h.get(f"{split}_loss") for h in history]
        acc = [h.get(f"{split}_acc") for h in history]
        if all(v is None for v in acc):
            continue
        style = dict(color=color, marker="o", markersize=3, label=split)
        ax_loss.plot(epochs, loss, **style)
        ax_acc.plot(epochs, [100 * a if a is not None else None for a in acc], **style)
    ax_loss.set(xlabel="Epoch", ylabel="Loss (cross-entropy)", title="Loss")
    ax_loss.set_yscale("log")
    ax_acc.set(xlabel="Epoch", ylabel="Accuracy (%)", title="Accuracy")
    accs = [100 * h[f"{s}_acc"] for h in history for s, _ in SERIES if h.get(f"{s}_acc") is not None]
    if accs:
        ax_acc.set_ylim(max(0.0, min(accs) - 0.5), min(100.0, max(accs) + 0.3))
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend()
        if len(epochs) <= 25:
            ax.set_xticks(epochs)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)

"""Figures saved as PNG: training curves, sample grids, confusion matrix, mistakes.

Uses matplotlib's object API on the Agg canvas, so it works with no display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from matplotlib.figure import Figure

SERIES = (("train", "tab:blue"), ("val", "tab:orange"), ("test", "tab:green"))


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def training_curves(
    history: Sequence[dict], path: Path, title: Optional[str] = None, train_note: Optional[str] = None
) -> Path:
    """Loss and accuracy per epoch for train, validation and test (as in the report's figures).

    `train_note` says in the legend why the training figures differ from the others (they are
    averaged over the epoch while the weights change, on augmented images, with smoothed labels).
    """
    fig = Figure(figsize=(11, 4.2))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    for split, color in SERIES:
        loss = [h.get(f"{split}_loss") for h in history]
        acc = [h.get(f"{split}_acc") for h in history]
        if all(v is None for v in acc):
            continue
        label = f"{split} ({train_note})" if split == "train" and train_note else split
        style = {"color": color, "marker": "o", "markersize": 3, "label": label}
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


def image_grid(
    images: Sequence,  # uint8 (28, 28) arrays or tensors
    path: Path,
    titles: Optional[Sequence[str]] = None,
    colors: Optional[Sequence[str]] = None,
    ncols: Optional[int] = None,
    suptitle: Optional[str] = None,
) -> Path:
    """A grid of digit images with a title under each (e.g. label, or truth and prediction)."""
    n = len(images)
    ncols = ncols or min(10, max(1, n))
    nrows = max(1, -(-n // ncols))
    fig = Figure(figsize=(1.25 * ncols, 1.45 * nrows + (0.5 if suptitle else 0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        if titles:
            ax.set_title(titles[i], fontsize=8, color=(colors[i] if colors else "black"), pad=2)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_figure(cm, classes: Sequence[str], path: Path, title: str = "Confusion matrix") -> Path:
    """The confusion matrix as a heat map with counts; the diagonal is left out of the colour scale."""
    import numpy as np

    counts = np.asarray(cm)
    off = counts.copy()
    np.fill_diagonal(off, 0)
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    im = ax.imshow(off, cmap="Reds", vmin=0, vmax=max(1, off.max()))
    fig.colorbar(im, ax=ax, label="errors")
    n = len(classes)
    ax.set_xticks(range(n), classes, rotation=45 if max(len(c) for c in classes) > 2 else 0)
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="Predicted", ylabel="True", title=title)
    for t in range(n):
        for p in range(n):
            value = counts[t, p]
            if value:
                strong = t != p and value > 0.5 * off.max()
                ax.text(
                    p,
                    t,
                    str(value),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if strong else ("darkgreen" if t == p else "black"),
                )
    return save_figure(fig, path)


def show(path: Path) -> bool:
    """Open a saved PNG in a window when there is a display; False when there is none."""
    import os
    import sys

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import matplotlib.pyplot as plt
    from matplotlib.image import imread

    plt.figure()
    plt.imshow(imread(path))
    plt.axis("off")
    plt.show()
    return True

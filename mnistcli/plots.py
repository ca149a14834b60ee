"""Figures saved as PNG: training curves, sample grids, confusion matrix, mistakes.

Uses matplotlib's object API on the Agg canvas, so it works with no display.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mnistcli import files
from mnistcli.history import HistoryRow

SERIES = (("train", "tab:blue"), ("val", "tab:orange"), ("test", "tab:green"))
NAMES = {"train": "training", "val": "validation", "test": "test"}


def figure_png(fig: Figure, dpi: int = 120) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Write a figure as a PNG, atomically like every file mnistcli writes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(path, figure_png(fig, dpi))
    return path


def training_curves_png(
    history: Sequence[HistoryRow], title: str = "", train_note: str = "", best_epoch: Optional[int] = None
) -> bytes:
    """Loss and accuracy per epoch for training, validation and test (as in the report's figures 2.2-2.4).

    The accuracy axis is sized to the validation and test figures, the ones that matter; the first
    epochs' lower training accuracy runs off its foot rather than squashing them into a strip. The
    best epoch (the one best.pt holds) is marked. `train_note` says under the plots why the training
    figures differ from the others (measured during the epoch, on augmented images, ...).
    """
    fig = Figure(figsize=(11, 4.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h.epoch for h in history]
    for split, color in SERIES:
        loss = [getattr(h, f"{split}_loss") for h in history]
        acc = [getattr(h, f"{split}_acc") for h in history]
        if all(v is None for v in acc):
            continue
        style = {"color": color, "marker": "o", "markersize": 3, "label": NAMES[split]}
        ax_loss.plot(epochs, [v if v is not None else math.nan for v in loss], **style)
        ax_acc.plot(epochs, [100 * a if a is not None else math.nan for a in acc], **style)
    ax_loss.set(xlabel="Epoch", ylabel="Loss (cross-entropy)", title="Loss")
    _loss_scale(ax_loss)
    ax_acc.set(xlabel="Epoch", ylabel="Accuracy (%)", title="Accuracy")
    ax_acc.set_ylim(*_accuracy_limits(history))
    if best_epoch is not None:
        for ax in (ax_loss, ax_acc):
            ax.axvline(best_epoch, color="0.35", linestyle=":", linewidth=1.2, label=f"best epoch ({best_epoch})")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10))
    handles, labels = ax_acc.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, -0.02))
    if train_note:
        fig.text(
            0.5, -0.07, f"Training figures: {train_note}.", ha="center", va="top", fontsize=8, color="0.3", wrap=True
        )
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(bottom=0.2)
    return figure_png(fig)


def _loss_scale(ax: Any) -> None:
    """A log scale where the losses span more than a factor of 10, else a plain one (readable ticks)."""
    values = [y for line in ax.get_lines() for y in line.get_ydata() if y > 0 and math.isfinite(y)]
    if values and max(values) / min(values) > 10:
        ax.set_yscale("log")
        ax.set_ylabel(ax.get_ylabel() + ", log scale")


def _accuracy_limits(history: Sequence[HistoryRow]) -> tuple[float, float]:
    """From a little below the lowest validation or test accuracy to a little above the highest of all."""
    held_out = [100 * v for h in history for v in (h.val_acc, h.test_acc) if v is not None and not math.isnan(v)]
    every = held_out + [100 * h.train_acc for h in history if h.train_acc is not None and not math.isnan(h.train_acc)]
    if not held_out:
        return (0.0, 100.0) if not every else (max(0.0, min(every) - 1), min(100.0, max(every) + 0.5))
    low, high = min(held_out), max(every)
    margin = max(0.15, 0.15 * (high - low))
    return max(0.0, low - margin), min(100.0, high + margin)


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


def sample_titles(
    picks: Sequence[int], labels: Sequence[int], classes: Sequence[str], predicted: Optional[Sequence[int]] = None
) -> tuple[list[str], list[str]]:
    """Titles and colours of grid images: the label, or "truth -> prediction" in red for a mistake."""
    titles, colors = [], []
    for i in picks:
        truth = classes[int(labels[i])]
        guess = classes[int(predicted[i])] if predicted is not None else truth
        titles.append(truth if guess == truth else f"{truth} -> {guess}")
        colors.append("black" if guess == truth else "red")
    return titles, colors


def mistake_titles(
    indices: Sequence[int],
    labels: Sequence[int],
    predicted: Sequence[int],
    confidence: Sequence[float],
    classes: Sequence[str],
) -> list[str]:
    """ "#1234 true 4, pred 9 / 87%" for each image: its index in the split, so a user can look it up
    (`mnistcli show-samples`, or `explain --index`)."""
    return [
        f"#{i} true {classes[int(t)]}\npred {classes[int(p)]} {100 * float(c):.0f}%"
        for i, t, p, c in zip(indices, labels, predicted, confidence)
    ]


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


def reliability_figure(
    calibrated: Sequence[dict], raw: Sequence[dict], path: Path, title: str = "", temperature: float = 1.0
) -> Path:
    """A reliability diagram: accuracy against confidence, bin by bin, for the calibrated probabilities
    and the raw softmax; a perfectly calibrated model lies on the diagonal. Below: how many answers
    fall in each bin (most are sure and right)."""
    fig = Figure(figsize=(6, 6.4))
    ax, counts = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    for bins, label, color in (
        (raw, "raw softmax", "tab:gray"),
        (calibrated, f"calibrated (temperature {temperature:.3g})", "tab:blue"),
    ):
        shown = [b for b in bins if b["count"]]
        ax.plot([b["confidence"] for b in shown], [b["accuracy"] for b in shown], "o-", color=color, label=label)
    ax.set(ylabel="Accuracy of the answers", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", frameon=False)
    width = calibrated[0]["high"] - calibrated[0]["low"] if calibrated else 0.1
    counts.bar([b["low"] + width / 2 for b in calibrated], [b["count"] for b in calibrated], width=width * 0.9)
    counts.set_yscale("log")
    counts.set(xlabel="Confidence (the answer's probability)", ylabel="Answers")
    counts.grid(True, alpha=0.3)
    fig.tight_layout()
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


MAPS_PER_STAGE = 8  # feature maps shown per stage: the most active ones (explain.strongest_channels)


def explanation_figure(explanation: Any, classes: Sequence[str], path: Path, title: str = "") -> Path:
    """One picture of what the network does to a digit: the input it saw, the probabilities, the
    attribution of the answer and the runner-up; then each stage's outputs in order (its most active
    maps, or its units), and the first layer's filters or templates."""
    stages = [s for s in explanation.stages if s.kind != "batch norm"]  # shown with the ReLU after it
    has_bn = any(s.kind == "batch norm" for s in explanation.stages)
    image_stages = [s for s in stages if s.values.ndim == 3]
    unit_stages = [s for s in stages if s.values.ndim == 1]
    rows = 1 + len(image_stages) + len(unit_stages) + (1 if explanation.filters is not None else 0)
    fig = Figure(figsize=(11, 1.45 * rows + 0.8), layout="constrained")
    subfigures: Any = fig.subfigures(rows, 1, height_ratios=[1.6] + [1] * (rows - 1))
    parts = iter(np.atleast_1d(subfigures))
    _explanation_top(next(parts), explanation, classes)
    for stage in image_stages:
        label = "batch norm + ReLU" if stage.kind == "relu" and has_bn else stage.kind
        _maps_row(next(parts), stage.values, f"{stage.name.split()[0]}: {label}, {stage.shape}", "viridis")
    for stage in unit_stages:
        part = next(parts)
        part.suptitle(f"{stage.name.split()[0]}: {stage.kind}, {stage.shape[0]} units", x=0.01, ha="left", fontsize=8)
        ax = part.subplots()
        ax.bar(range(stage.shape[0]), stage.values, color="tab:purple")
        if stage.shape[0] == len(classes):
            ax.set_xticks(range(len(classes)), [c[:6] for c in classes], fontsize=7)
        ax.set_ylabel("logit" if stage.shape[0] == len(classes) else "activation", fontsize=7)
        ax.tick_params(labelsize=7)
    if explanation.filters is not None:
        templates = explanation.filters.shape[-1] == 28
        what = "the first layer's weights as 28x28 templates" if templates else "the first convolution's filters"
        _maps_row(next(parts), explanation.filters, what, "RdBu_r", diverging=True)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def _maps_row(part: Any, maps: np.ndarray, label: str, cmap: str, diverging: bool = False) -> None:
    """The most active of `maps` (C, H, W) in one row under `label`."""
    part.suptitle(label, x=0.01, ha="left", fontsize=8)
    from mnistcli.explain import strongest_channels

    strongest = strongest_channels(maps, MAPS_PER_STAGE)
    for ax, c in zip(part.subplots(1, MAPS_PER_STAGE), list(strongest) + [None] * MAPS_PER_STAGE):
        ax.set_axis_off()
        if c is None:
            continue
        m = maps[c]
        top = float(np.abs(m).max()) or 1.0
        ax.imshow(m, cmap=cmap, interpolation="nearest", **({"vmin": -top, "vmax": top} if diverging else {}))
        ax.text(0.02, 0.98, str(c), transform=ax.transAxes, fontsize=6, color="white", va="top")


def _explanation_top(part: Any, explanation: Any, classes: Sequence[str]) -> None:
    p = explanation.prediction
    axes = part.subplots(1, 4, width_ratios=[1, 1.6, 1, 1])
    axes[0].imshow(p.input, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes[0].set_axis_off()
    axes[0].set_title("the 28x28 input it saw", fontsize=8)
    colors = ["tab:blue" if i == p.digit else "0.6" for i in range(len(classes))]
    axes[1].bar(range(len(classes)), explanation.probabilities, color=colors)
    axes[1].set_xticks(range(len(classes)), [c[:6] for c in classes], fontsize=7)
    axes[1].set(ylim=(0, 1))
    axes[1].tick_params(labelsize=7)
    axes[1].set_title(f"probabilities: {p.label}, {100 * p.confidence:.1f}%", fontsize=8)
    attributions = list(explanation.attribution.items())
    for ax, (digit, a), which in zip(axes[2:], attributions, ("the answer", "the runner-up")):
        top = float(np.abs(a).max()) or 1.0
        ax.imshow(p.input, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.imshow(a, cmap="RdBu_r", vmin=-top, vmax=top, alpha=0.75, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"pixels for {classes[digit]} ({which})\nred for, blue against", fontsize=8)
    for ax in axes[2 + len(attributions) :]:
        ax.set_axis_off()
    part.supxlabel(f"pixel maps: {explanation.method}", fontsize=7, color="0.3")


def comparison_figure(runs: Sequence[Any], path: Path, title: str = "") -> Path:
    """Every run's test accuracy, test loss and training accuracy per epoch, one colour per run."""
    fig = Figure(figsize=(13, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (
        ("test_acc", "Test accuracy (%)", 100),
        ("test_loss", "Test loss", 1),
        ("train_acc", "Training accuracy (%)", 100),
    )
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        epochs = [r.epoch for r in run.history]
        for ax, (key, _, scale) in zip(axes, panels):
            values = [getattr(r, key) for r in run.history]
            ax.plot(
                epochs,
                [scale * v if v is not None else math.nan for v in values],
                "o-",
                ms=3,
                color=color,
                label=run.name,
            )
    for ax, (_, label, _) in zip(axes, panels):
        ax.set(xlabel="Epoch", ylabel=label, title=label.split(" (")[0])
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10))
    _loss_scale(axes[1])
    held_out = [100 * r.test_acc for run in runs for r in run.history if r.test_acc is not None]
    if held_out:  # from a little under the runs' lowest test accuracy after their first epoch
        later = [100 * r.test_acc for run in runs for r in run.history[1:] if r.test_acc is not None] or held_out
        axes[0].set_ylim(max(0.0, min(later) - 0.5), min(100.0, max(held_out) + 0.2))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5), frameon=False)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)

"""Classification metrics from labels and predictions (plain tensors in, plain values out)."""

from __future__ import annotations

import torch


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class(cm: torch.Tensor) -> list[dict[str, float]]:
    """Precision, recall, F1 and support of each class from a confusion matrix."""
    tp = cm.diag().double()
    predicted = cm.sum(0).double()
    support = cm.sum(1).double()
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    return [
        {
            "class": c,
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
        }
        for c in range(cm.shape[0])
    ]


def worst_mistakes(probabilities: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of up to k misclassified items, most confident mistakes first."""
    confidence, predicted = probabilities.max(1)
    wrong = torch.nonzero(predicted != labels).flatten()
    return wrong[confidence[wrong].argsort(descending=True)][:k]


def reliability(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> list[dict[str, float]]:
    """The answers grouped by their confidence into equal-width bins: each bin's mean confidence, its
    accuracy and how many answers fall in it (a reliability diagram's bars)."""
    confidence, predicted = probabilities.max(1)
    right = (predicted == labels).double()
    which = (confidence * bins).long().clamp(max=bins - 1)
    out = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": n,
                "confidence": float(confidence[inside].double().mean()) if n else float("nan"),
                "accuracy": float(right[inside].mean()) if n else float("nan"),
            }
        )
    return out


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): the mean gap between confidence and accuracy over equal-width confidence
    bins, weighted by how many answers each bin holds."""
    total = len(labels)
    if not total:
        return float("nan")
    return sum(
        b["count"] / total * abs(b["confidence"] - b["accuracy"])
        for b in reliability(probabilities, labels, bins)
        if b["count"]
    )


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T that makes softmax(logits / T) most likely on held-out images (temperature
    scaling, Guo et al. 2017): one number, so the answers' order and the accuracy stay as they are.

    The loss is convex in 1 / T, so a golden-section search finds its minimum (between T = 0.05 and
    20) without an optimiser (torch's would import torch._dynamo, seconds of start-up).
    """
    if not len(labels):
        return 1.0
    z, y = logits.detach().double(), labels.detach()

    def loss(beta: float) -> float:
        return float(torch.nn.functional.cross_entropy(z * beta, y))

    low, high = 1 / 20, 1 / 0.05
    ratio = (5**0.5 - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return 1 / ((low + high) / 2)

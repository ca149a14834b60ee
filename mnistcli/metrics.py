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

"""Metrics checked against scikit-learn on random labels with unequal classes, and by hand."""

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from mnistcli import metrics


def _random_case(seed: int, n: int = 500, classes: int = 10):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(classes, 0.7))  # unequal class sizes, some nearly empty
    labels = rng.choice(classes, size=n, p=weights)
    noise = rng.random(n) < 0.35  # a third of the predictions wrong, in a skewed way
    predictions = np.where(noise, rng.choice(classes, size=n, p=weights[::-1]), labels)
    return labels, predictions


@pytest.mark.parametrize("seed", range(5))
def test_confusion_matrix_matches_scikit_learn(seed):
    labels, predictions = _random_case(seed)
    cm = metrics.confusion_matrix(torch.from_numpy(labels), torch.from_numpy(predictions), 10)
    assert np.array_equal(cm.numpy(), sk_confusion(labels, predictions, labels=range(10)))


@pytest.mark.parametrize("seed", range(5))
def test_per_class_precision_recall_f1_match_scikit_learn(seed):
    labels, predictions = _random_case(seed)
    cm = metrics.confusion_matrix(torch.from_numpy(labels), torch.from_numpy(predictions), 10)
    rows = metrics.per_class(cm)
    p, r, f, support = precision_recall_fscore_support(labels, predictions, labels=range(10), zero_division=0)
    assert [row["class"] for row in rows] == list(range(10))
    assert np.allclose([row["precision"] for row in rows], p)
    assert np.allclose([row["recall"] for row in rows], r)
    assert np.allclose([row["f1"] for row in rows], f)
    assert [row["support"] for row in rows] == support.tolist()


def test_a_small_case_by_hand():
    # truth:      0 0 0 1 1 2
    # prediction: 0 1 1 1 2 2
    cm = metrics.confusion_matrix(torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 2, 2]), 3)
    assert cm.tolist() == [[1, 2, 0], [0, 1, 1], [0, 0, 1]]  # rows: true class, columns: predicted
    rows = metrics.per_class(cm)
    assert rows[0] == {"class": 0, "precision": 1.0, "recall": 1 / 3, "f1": 0.5, "support": 3}
    assert rows[1]["precision"] == pytest.approx(1 / 3) and rows[1]["recall"] == 0.5
    assert rows[2]["precision"] == 0.5 and rows[2]["recall"] == 1.0 and rows[2]["f1"] == pytest.approx(2 / 3)


def test_a_class_never_predicted_or_never_present_scores_zero_not_nan():
    cm = metrics.confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 0]), 3)
    rows = metrics.per_class(cm)
    assert rows[1] == {"class": 1, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert rows[2] == {"class": 2, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_worst_mistakes_are_the_most_confident_wrong_answers_first():
    probabilities = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3], [0.05, 0.95]])
    labels = torch.tensor([0, 0, 0, 1, 1])  # wrong: 1 (0.8), 2 (0.6), 3 (0.7)
    assert metrics.worst_mistakes(probabilities, labels, 5).tolist() == [1, 3, 2]
    assert metrics.worst_mistakes(probabilities, labels, 2).tolist() == [1, 3]


def test_ten_classes_by_default():
    assert metrics.confusion_matrix(torch.tensor([9, 0]), torch.tensor([9, 1])).shape == (10, 10)


def test_temperature_scaling_finds_the_temperature_that_made_the_labels():
    from mnistcli.metrics import expected_calibration_error, fit_temperature

    g = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(20000, 10, generator=g)
    labels = torch.distributions.Categorical(logits=logits / 2.5).sample()
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)
    raw, calibrated = logits.softmax(1), (logits / fit_temperature(logits, labels)).softmax(1)
    assert expected_calibration_error(calibrated, labels) < 0.02 < expected_calibration_error(raw, labels)


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy():
    from mnistcli.metrics import expected_calibration_error, reliability

    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 0, 0])  # sure answers right half the time, unsure ones always right
    bins = [b for b in reliability(probs, labels, bins=10) if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in bins] == [(2, 1.0), (2, 0.5)]
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)

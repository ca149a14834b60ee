"""The loops over batches: training an epoch, evaluating a split, predicting images. They report through
callbacks and never print."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from mnistcli.augment import views
from mnistcli.data import Split, iterate_batches, normalize, num_batches
from mnistcli.dataset_specs import MEAN, STD
from mnistcli.devices import eval_batch_size


@dataclass
class Stats:
    """Sums over a stretch of training batches."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0

    @property
    def loss(self) -> float:
        return self.loss_sum / self.seen if self.seen else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.seen if self.seen else float("nan")

    def add(self, other: Stats) -> None:
        self.loss_sum += other.loss_sum
        self.correct += other.correct
        self.seen += other.seen


@dataclass
class BatchEvent:
    """What a training callback sees: position, the epoch so far, and the closed log window if any."""

    batch: int  # batches done in this epoch, 1-based
    total: int
    epoch: Stats
    window: Optional[Stats] = None


def train_epoch(
    model: nn.Module,
    split: Split,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    order: Optional[torch.Tensor] = None,
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    start_batch: int = 0,
    stats: Optional[Stats] = None,
    log_every: int = 300,
    sync_every: int = 10,
    on_batch: Optional[Callable[[BatchEvent], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    after_step: Optional[Callable[[], None]] = None,
    autocast: Optional[torch.dtype] = None,
) -> tuple[Stats, int]:
    """One pass over `split` in `order` (as it is, without one), from batch `start_batch`; returns (epoch
    stats, batches done).

    Loss and hit counts are summed on the device and read back only every
    `sync_every` batches, so a GPU is not stalled by a sync per step.
    Stops early, after the current batch, when `should_stop()` turns true.
    """
    model.train()
    total = num_batches(len(order) if order is not None else len(split), batch_size)
    stats = stats if stats is not None else Stats()
    window = Stats()
    pending_loss = torch.zeros((), device=split.images.device)
    pending_correct = torch.zeros((), dtype=torch.int64, device=split.images.device)
    pending_seen = 0
    done = start_batch
    for batch, y in iterate_batches(split, batch_size, order=order, start=start_batch):
        x = augment(batch) if augment is not None else batch
        with torch.autocast(split.images.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if after_step is not None:
            after_step()
        pending_loss.add_(loss.detach(), alpha=y.shape[0])
        pending_correct.add_((logits.detach().argmax(1) == y).sum())
        pending_seen += y.shape[0]
        done += 1
        at_log = done % log_every == 0
        stop = done < total and should_stop is not None and should_stop()
        if at_log or stop or done % sync_every == 0 or done == total:
            chunk = Stats(float(pending_loss), int(pending_correct), pending_seen)
            pending_loss.zero_()
            pending_correct.zero_()
            pending_seen = 0
            stats.add(chunk)
            window.add(chunk)
            closed = None
            if at_log:
                closed, window = window, Stats()
            if on_batch is not None:
                on_batch(BatchEvent(done, total, stats, closed))
        if stop:
            break
    return stats, done


@dataclass
class EvalResult:
    loss: float  # the network's own mean cross-entropy (temperature 1), as training records it
    correct: int
    total: int
    logits: torch.Tensor  # (N, classes) on the CPU
    labels: torch.Tensor  # (N,)
    temperature: float = 1.0  # what the probabilities divide the logits by (calibration)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    @property
    def probabilities(self) -> torch.Tensor:
        return (self.logits / self.temperature).softmax(1)

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(1)


@torch.inference_mode()
def evaluate_split(
    model: nn.Module, split: Split, batch_size: Optional[int] = None, temperature: float = 1.0
) -> EvalResult:
    """Mean cross-entropy, accuracy and the logits over a whole split."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=split.images.device)
    outputs = []
    for x, y in iterate_batches(split, batch_size or eval_batch_size(split.images.device)):
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        outputs.append(logits.cpu())
    logits = torch.cat(outputs) if outputs else torch.zeros(0, 10)
    labels = split.labels.cpu()
    correct = int((logits.argmax(1) == labels).sum()) if len(labels) else 0
    n = len(labels)
    return EvalResult(float(loss_sum) / n if n else float("nan"), correct, n, logits, labels, temperature)


@torch.inference_mode()
def probabilities_over_views(
    model: nn.Module, images: torch.Tensor, mean: float = MEAN, std: float = STD, temperature: float = 1.0
) -> torch.Tensor:
    """(views, N, classes): the class probabilities of uint8 images (N, 28, 28) and of each of their
    slightly changed copies (augment.views), the pictures' own first."""
    copies = views(images)  # (V, N, 28, 28)
    probs = predict_probabilities(model, copies.flatten(0, 1), mean=mean, std=std, temperature=temperature)
    return probs.view(copies.shape[0], copies.shape[1], -1)


@torch.inference_mode()
def predict_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: Optional[int] = None,
    mean: float = MEAN,
    std: float = STD,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Class probabilities (N, classes) for uint8 images (N, 28, 28), normalised with the dataset's mean
    and std; the logits divided by the model's calibrated temperature."""
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or eval_batch_size(device)
    out = [
        (model(normalize(images[i : i + batch_size].to(device), mean, std)).float() / temperature).softmax(1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, 10)

"""The rich console: error lines, tables, and the live training display."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from rich import box
from rich.color import Color
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.style import Style
from rich.table import Table
from rich.text import Text

from mnistcli import settings

if TYPE_CHECKING:  # torch is imported only by the commands that need it, so --help is quick
    from mnistcli.engine import BatchEvent
    from mnistcli.history import HistoryRow
    from mnistcli.trainer import EpochEnd, StartInfo


def _console(stderr: bool = False) -> Console:
    """On a terminal, rich's own; off one (a pipe, a log, CI), lines are never wrapped, so that a file
    name or an epoch line stays whole and greppable (rich would wrap at 80 columns)."""
    shown = Console(stderr=stderr, highlight=False)
    if shown.is_terminal or os.environ.get("COLUMNS"):
        return shown
    return Console(stderr=stderr, highlight=False, width=10_000, soft_wrap=True)


console = _console()
err_console = _console(stderr=True)


def error(message: str) -> None:
    """One line on stderr (never wrapped, so scripts can grep it)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    console.print(message, soft_wrap=True)


def plural(n: int, word: str) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def pct(x: Optional[float], digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def num(x: Optional[float], digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def simple_table(
    title: Optional[str],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    text_columns: Sequence[int] = (0,),
    **kw,
) -> Table:
    """A table whose `text_columns` are left-aligned and the rest (numbers) right-aligned."""
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", **kw)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i in text_columns else "right")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    return table


def _log_table(show_header: bool, window: int) -> Table:
    """The rows printed every --log-every batches, one at a time above the live bar (so fixed widths).
    They average the last `window` batches, as the report's lines did; the bar shows the epoch so far."""
    table = Table(
        box=box.SIMPLE_HEAD if show_header else None, show_header=show_header, show_edge=False, pad_edge=False
    )
    for name, width in (("Epoch", 7), ("Batch", 7), (f"Loss (last {window})", 16), (f"Acc (last {window})", 16)):
        table.add_column(name, justify="right", width=width)
    return table


class TrainDisplay:
    """Draws a run (the hooks of trainer.fit): a live bar per epoch on a terminal, plain log lines otherwise."""

    def __init__(self, out: Console = console):
        self.out = out
        self.live = out.is_terminal and not out.is_dumb_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epoch loss {task.fields[loss]} acc {task.fields[acc]}"),
            TextColumn("{task.fields[speed]} img/s"),
            TimeRemainingColumn(),
            console=out,
            transient=True,
            disable=not self.live,
        )
        self.task: Optional[TaskID] = None
        self.header_shown = False
        self.epochs = 0
        self.batch_size = 0
        self.log_every = 0
        self.t0 = 0.0
        self.start_batch = 0

    def on_start(self, info: StartInfo) -> None:
        r = info.recipe
        self.epochs, self.batch_size, self.log_every = r.epochs, r.batch_size, info.log_every
        if info.resumed_from:
            where = f"epoch {info.start_epoch}" + (f", batch {info.start_batch}" if info.start_batch else "")
            self.out.print(f"Resuming [bold]{escape(info.resumed_from)}[/] at {where}", soft_wrap=True)
            for name, (old, new) in info.changed.items():
                self.out.print(f"  --{name.replace('_', '-')}: {old} -> {new}")
        self.out.print(
            f"Model [bold]{r.model}[/] ({info.parameters:,} parameters) on {info.device} ({info.precision}"
            + (f", {plural(info.threads, 'thread')})" if info.device.type == "cpu" else ")")
            + (f" x {info.processes} processes" if info.processes > 1 else "")
            + "; "
            f"data {escape(info.data_source)}: "
            f"{info.train_size:,} train, {info.val_size:,} val, {info.test_size:,} test",
            soft_wrap=True,
        )
        self.out.print(f"Recipe: {settings.summary(r)}", soft_wrap=True)
        if info.best_by == "test_acc":
            where = info.origins.get("val_size", "given")
            why = "--val-size 0" if where == "given" else f"val-size 0 from {where}"
            self.out.print(f"No validation split ({why}): best.pt is chosen by test accuracy.")
        if self.live:
            self.progress.start()

    def on_epoch_start(self, epoch: int, total_epochs: int, steps: int, start_batch: int) -> None:
        self.t0, self.start_batch = time.perf_counter(), start_batch
        if self.live:
            self.task = self.progress.add_task(
                f"epoch {epoch}/{total_epochs}", total=steps, completed=start_batch, loss="-", acc="-", speed="-"
            )

    def on_batch(self, epoch: int, event: BatchEvent) -> None:
        if self.live and self.task is not None:
            dt = time.perf_counter() - self.t0
            speed = (event.batch - self.start_batch) * self.batch_size / dt if dt > 0 else 0
            self.progress.update(
                self.task,
                completed=event.batch,
                loss=f"{event.epoch.loss:.4f}",
                acc=f"{100 * event.epoch.accuracy:.2f}%",
                speed=f"{speed:,.0f}",
            )
        if event.window is not None:
            table = _log_table(show_header=not self.header_shown, window=self.log_every)
            self.header_shown = True
            table.add_row(
                str(epoch), str(event.batch), f"{event.window.loss:.3f}", f"{100 * event.window.accuracy:.2f}%"
            )
            self.out.print(table)

    def on_evaluating(self, epoch: int) -> None:
        if self.live and self.task is not None:
            self.progress.update(self.task, description=f"epoch {epoch}/{self.epochs} evaluating")

    def on_epoch_end(self, end: EpochEnd) -> None:
        if self.live and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        r = end.row
        parts = [f"[bold]Epoch {r.epoch}/{self.epochs}[/]", f"train loss {r.train_loss:.4f} acc {pct(r.train_acc)}"]
        if r.val_acc is not None:
            parts.append(f"val {pct(r.val_acc)}")
        parts += [f"test {pct(r.test_acc)}", f"{r.seconds:.1f} s ({r.images_per_s:,.0f} img/s)"]
        saved = ", ".join(p.name for p in end.saved)
        parts.append(f"saved {saved}" + (" [green](new best)[/]" if end.is_best else ""))
        self.out.print(" | ".join(parts), soft_wrap=True)

    def notice(self, message: str) -> None:
        """A line printed above the live bar (safe to call from a signal handler)."""
        self.out.print(f"[yellow]{escape(message)}[/]", soft_wrap=True)

    def close(self) -> None:
        if self.live:
            self.progress.stop()


def history_table(history: list[HistoryRow], best_epoch: Optional[int]) -> Table:
    rows = [
        [
            f"{r.epoch}" + (" *" if r.epoch == best_epoch else ""),
            num(r.train_loss),
            pct(r.train_acc),
            pct(r.val_acc),
            pct(r.test_acc),
            f"{r.seconds:.1f}",
        ]
        for r in history
    ]
    return simple_table(
        "Summary (* best)", ["Epoch", "Train loss", "Train acc", "Val acc", "Test acc", "Seconds"], rows
    )


def model_table(rows: list[tuple[str, int, str]], default: str) -> Table:
    return simple_table(
        "Models",
        ["Name", "Parameters", "Description"],
        [(name + (" (default)" if name == default else ""), f"{n:,}", desc) for name, n, desc in rows],
        text_columns=(0, 2),
    )


def saved_paths(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def per_class_table(rows: list[dict], classes: Sequence[str]) -> Table:
    return simple_table(
        "Per class",
        ["Class", "Precision", "Recall", "F1", "Support"],
        [(classes[r["class"]], pct(r["precision"]), pct(r["recall"]), pct(r["f1"]), f"{r['support']:,}") for r in rows],
    )


def confusion_table(cm, classes: Sequence[str]) -> Table:
    """Rows are the true class, columns the predicted one; the diagonal in green, errors in red."""
    table = Table(title="Confusion matrix (rows: true, columns: predicted)", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("true \\ pred", justify="right")
    short = [c if len(c) <= 5 else c[:5] for c in classes]
    for c in short:
        table.add_column(c, justify="right")
    for t, row in enumerate(cm.tolist()):
        cells = []
        for p, v in enumerate(row):
            style = "green" if t == p else ("red" if v else "dim")
            cells.append(f"[{style}]{v}[/]")
        table.add_row(short[t], *cells)
    return table


def predictions_table(rows: list[dict], top_k: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("File", overflow="fold")
    table.add_column("Digit", justify="center", style="bold")
    table.add_column("Confidence", justify="right")
    if top_k > 1:
        table.add_column(f"Top {top_k}")
    for r in rows:
        answer = f"[yellow]{r['label']} or {r['runner_up']['label']}?[/]" if r["unsure"] else r["label"]
        cells = [escape(r["file"]), answer, pct(r["confidence"], 1)]
        if top_k > 1:
            cells.append("  ".join(f"{t['label']} {pct(t['probability'], 1)}" for t in r["top_k"]))
        table.add_row(*cells)
    return table


def digit_preview(image, title: str = "") -> Text:
    """A 28x28 uint8 image as text: half-block pixels in colour terminals, an ASCII ramp elsewhere."""
    rows = [list(map(int, r)) for r in image.tolist()]
    text = Text(f"{title}\n" if title else "")
    if console.is_terminal and console.color_system is not None:
        for top, bottom in zip(rows[0::2], rows[1::2]):
            for a, b in zip(top, bottom):
                text.append("▀", Style(color=Color.from_rgb(a, a, a), bgcolor=Color.from_rgb(b, b, b)))
            text.append("\n")
    else:
        ramp = " .:-=+*#%@"
        for row in rows:
            text.append("".join(ramp[min(9, v * 10 // 256)] * 2 for v in row).rstrip() + "\n")
    return text


def distribution_table(counts: Sequence[int], classes: Sequence[str], title: str) -> Group:
    """Counts and shares per class, under a title line of its own (longer than the narrow table)."""
    total = max(1, sum(counts))
    table = simple_table(
        None, ["Class", "Count", "Share"], [(c, f"{n:,}", pct(n / total, 1)) for c, n in zip(classes, counts)]
    )
    return Group(Text(title, style="italic"), table)


COMPARISON_COLUMNS = (
    "Run", "Model", "Parameters", "Recipe", "Epochs", "Seconds", "img/s", "Best val", "best.pt test", "Last test",
    "First at 99%",
)  # fmt: skip


def comparison_rows(runs: Sequence[Any]) -> list[list[str]]:
    return [
        [
            r.name,
            r.model,
            f"{r.parameters:,}",
            r.changes,
            f"{r.epochs_done}" + (f" of {r.epochs}" if r.epochs_done < r.epochs else ""),
            f"{r.seconds:.0f}",
            f"{r.images_per_s:,.0f}",
            pct(r.best_val),
            pct(r.best_test),
            pct(r.last_test),
            f"epoch {r.first_at_target}" if r.first_at_target is not None else "never",
        ]
        for r in runs
    ]


def comparison_table(runs: Sequence[Any]) -> Table:
    return simple_table("Runs compared", COMPARISON_COLUMNS, comparison_rows(runs), text_columns=(0, 1, 3, 10))


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table to paste into a report (GitHub-flavoured Markdown)."""
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)

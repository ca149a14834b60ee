"""mnistcli side by side with two baselines, in one invocation on the same machine.

Runs, in each of --repeats rounds:
  report loop  benchmarks/report_loop.py: the report's code as printed, --baseline-epochs epochs
  examples     benchmarks/examples_loop.py: pytorch/examples' mnist/main.py as published
               (Adadelta lr 1.0, StepLR 0.7, batch 64, its DataLoader), up to --examples-epochs
               epochs, stopping at 99.0%
  report       mnistcli train --recipe report (the report's CNN and recipe inside mnistcli)
  default      mnistcli train --epochs 1 (every other option at its default), --default-runs times
and prints images/s, seconds per epoch, seconds to 99.0% test accuracy (wall time of the whole
command, interpreter start-up included) and the ratios. Medians over the runs. A baseline that
never reaches 99.0% is timed to its end: its ratio is then a lower bound.

    python benchmarks/compare.py --data-dir ../shared/data/mnist --repeats 1 --default-runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.99


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def loop(script: str, epochs: int, args, *extra: str) -> dict:
    """A baseline script that prints one JSON line per epoch."""
    cmd = [sys.executable, f"benchmarks/{script}", "--epochs", str(epochs), "--data-dir", str(args.data_dir), *extra]
    wall, out = timed(cmd)
    rows = [json.loads(line) for line in out.strip().splitlines()]
    start_cost = wall - rows[-1]["elapsed"]  # interpreter, imports, data; and exit
    hit = next((e for e in rows if e["test_acc"] >= TARGET), None)
    return {
        "images_per_s": statistics.median(e["images_per_s"] for e in rows),
        "epoch_s": statistics.median(e["epoch_seconds"] for e in rows),
        "to_target_s": hit["elapsed"] + start_cost if hit else None,
        "whole_s": wall,
        "final_acc": rows[-1]["test_acc"],
        "accs": [e["test_acc"] for e in rows],
        "epochs": len(rows),
    }


def mnistcli(args, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        wall, _ = timed(
            [
                sys.executable,
                "-m",
                "mnistcli",
                "train",
                "--data-dir",
                str(args.data_dir),
                "--no-download",
                "--out-dir",
                out,
                "--seed",
                str(args.seed),
                *extra,
            ]
        )
        history = json.loads((Path(out) / "history.json").read_text())
    one_epoch_hit = len(history) == 1 and history[0]["test_acc"] >= TARGET
    return {
        "images_per_s": statistics.median(h["images_per_s"] for h in history),
        "epoch_s": statistics.median(h["seconds"] for h in history),
        "to_target_s": wall if one_epoch_hit else None,
        "whole_s": wall,
        "final_acc": history[-1]["test_acc"],
        "accs": [h["test_acc"] for h in history],
        "epochs": len(history),
    }


def med(runs: list[dict], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def target_time(runs: list[dict]) -> tuple[float, bool]:
    """Seconds to 99.0%, or the whole run's seconds when it never got there (then a lower bound)."""
    hit = med(runs, "to_target_s")
    return (hit, False) if hit is not None else (med(runs, "whole_s"), True)


def row(label: str, runs: list[dict]) -> str:
    seconds, never = target_time(runs)
    to_target = f"never ({seconds:.0f} s)" if never else f"{seconds:.1f}"
    return (
        f"{label:46s} {med(runs, 'images_per_s'):8.0f} {med(runs, 'epoch_s'):8.1f} {to_target:>14s} "
        f"{100 * med(runs, 'final_acc'):8.2f}%"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--default-runs", type=int, default=3, help="runs of mnistcli train --epochs 1 per round")
    ap.add_argument("--baseline-epochs", type=int, default=20)
    ap.add_argument("--examples-epochs", type=int, default=5)
    ap.add_argument("--report-epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    runs: dict[str, list[dict]] = {"baseline": [], "examples": [], "report": [], "default": []}
    for r in range(args.repeats):
        print(f"round {r + 1}/{args.repeats}", file=sys.stderr, flush=True)
        runs["baseline"].append(loop("report_loop.py", args.baseline_epochs, args, "--seed", str(args.seed)))
        runs["examples"].append(loop("examples_loop.py", args.examples_epochs, args, "--stop-at", str(TARGET)))
        runs["report"].append(mnistcli(args, ["--recipe", "report", "--epochs", str(args.report_epochs)]))
        runs["default"] += [mnistcli(args, ["--epochs", "1"]) for _ in range(args.default_runs)]

    print(f"\n{os.cpu_count()} CPUs, seed {args.seed}, medians of {args.repeats} round(s)\n")
    print(f"{'run':46s} {'img/s':>8s} {'s/epoch':>8s} {'s to 99.0%':>14s} {'test acc':>9s}")
    print(row(f"report loop (baseline), {runs['baseline'][0]['epochs']} epochs", runs["baseline"]))
    print(row(f"pytorch/examples mnist (baseline), {runs['examples'][0]['epochs']} epochs", runs["examples"]))
    print(row(f"mnistcli --recipe report, {args.report_epochs} epochs", runs["report"]))
    print(row(f"mnistcli train --epochs 1 (default), {len(runs['default'])} runs", runs["default"]))
    print("\nratios")
    speedup = med(runs["report"], "images_per_s") / med(runs["baseline"], "images_per_s")
    print(f"  report recipe images/s vs the report loop: {speedup:.1f}x")
    mine, mine_never = target_time(runs["default"])
    for key, name in (("baseline", "the report loop"), ("examples", "pytorch/examples")):
        theirs, never = target_time(runs[key])
        if mine_never:
            print(f"  time to 99.0% vs {name}: mnistcli did not reach 99.0% in one epoch")
        else:
            bound = "at least " if never else ""
            print(
                f"  time to 99.0%: {name} {'never, all of ' if never else ''}{theirs:.0f} s / mnistcli "
                f"{mine:.1f} s = {bound}{theirs / mine:.1f}x sooner"
            )
    print("\nper-epoch test accuracy:")
    for key in ("baseline", "examples", "report"):
        print(f"  {key:9s} " + " ".join(f"{100 * a:.2f}" for a in runs[key][0]["accs"]))
    print("  default   " + " ".join(f"{100 * r['final_acc']:.2f}" for r in runs["default"]))


if __name__ == "__main__":
    main()

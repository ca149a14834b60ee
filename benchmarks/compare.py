"""mnistcli side by side with the report's loop, in one invocation on the same machine.

Runs, alternating over --repeats rounds:
  baseline   benchmarks/report_loop.py (the report's code as printed), --baseline-epochs epochs
  report     mnistcli train --recipe report  (the report's CNN and recipe inside mnistcli)
  default    mnistcli train --epochs 1       (every other option at its default)
and prints images/s, seconds per epoch, seconds to 99.0% test accuracy (wall time of the
whole command), final accuracy, and the ratios. Medians over the rounds.

    python benchmarks/compare.py --data-dir ../shared/data/mnist --repeats 1
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


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def baseline(args) -> dict:
    t0 = time.perf_counter()
    wall, out = timed(
        [
            sys.executable,
            "benchmarks/report_loop.py",
            "--epochs",
            str(args.baseline_epochs),
            "--data-dir",
            str(args.data_dir),
            "--seed",
            str(args.seed),
        ]
    )
    start_cost = wall - json.loads(out.strip().splitlines()[-1])["elapsed"]  # interpreter + imports
    epochs = [json.loads(line) for line in out.strip().splitlines()]
    hit = next((e for e in epochs if e["test_acc"] >= TARGET), None)
    return {
        "images_per_s": statistics.median(e["images_per_s"] for e in epochs),
        "epoch_s": statistics.median(e["epoch_seconds"] for e in epochs),
        "to_target_s": (hit["elapsed"] + start_cost) if hit else None,
        "whole_s": time.perf_counter() - t0,
        "final_acc": epochs[-1]["test_acc"],
        "accs": [e["test_acc"] for e in epochs],
        "epochs": len(epochs),
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
    return {
        "images_per_s": statistics.median(h["images_per_s"] for h in history),
        "epoch_s": statistics.median(h["seconds"] for h in history),
        "whole_s": wall,
        "final_acc": history[-1]["test_acc"],
        "accs": [h["test_acc"] for h in history],
        "epochs": len(history),
    }


def med(runs: list[dict], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--baseline-epochs", type=int, default=20)
    ap.add_argument("--report-epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    runs: dict[str, list[dict]] = {"baseline": [], "report": [], "default": []}
    for r in range(args.repeats):
        print(f"round {r + 1}/{args.repeats}", file=sys.stderr, flush=True)
        runs["baseline"].append(baseline(args))
        runs["report"].append(mnistcli(args, ["--recipe", "report", "--epochs", str(args.report_epochs)]))
        runs["default"].append(mnistcli(args, ["--epochs", "1"]))
    for run in runs["report"] + runs["default"]:
        hit = run["final_acc"] >= TARGET and run["epochs"] == 1
        run["to_target_s"] = run["whole_s"] if hit else None

    base = runs["baseline"]
    b_ips, b_epoch, b_target = med(base, "images_per_s"), med(base, "epoch_s"), med(base, "to_target_s")
    b_whole = med(base, "whole_s")
    never = b_target is None
    ref = b_whole if never else b_target  # the baseline's 20 epochs when it never gets there
    print(f"\n{os.cpu_count()} CPUs, seed {args.seed}, medians of {args.repeats} round(s)\n")
    print(f"{'run':44s} {'img/s':>8s} {'s/epoch':>8s} {'s to 99.0%':>11s} {'test acc':>9s}")
    label = f"report loop (baseline), {base[0]['epochs']} epochs"
    print(
        f"{label:44s} {b_ips:8.0f} {b_epoch:8.1f} "
        f"{(f'never ({b_whole:.0f} s)') if never else (f'{b_target:.1f}'):>11s} {100 * med(base, 'final_acc'):8.2f}%"
    )
    for key, label in (
        ("report", f"mnistcli --recipe report, {args.report_epochs} epochs"),
        ("default", "mnistcli train --epochs 1 (default recipe)"),
    ):
        rr = runs[key]
        target = med(rr, "to_target_s")
        print(
            f"{label:44s} {med(rr, 'images_per_s'):8.0f} {med(rr, 'epoch_s'):8.1f} "
            f"{(f'{target:.1f}') if target else '-':>11s} {100 * med(rr, 'final_acc'):8.2f}%"
        )
    print("\nratios")
    print(f"  report recipe images/s vs baseline: {med(runs['report'], 'images_per_s') / b_ips:.1f}x")
    d_target = med(runs["default"], "to_target_s")
    if d_target:
        print(
            f"  time to 99.0%: baseline {'never, all epochs: ' if never else ''}{ref:.0f} s / "
            f"mnistcli {d_target:.1f} s = {ref / d_target:.1f}x shorter"
        )
    print("\nper-epoch test accuracy, baseline vs mnistcli --recipe report:")
    print("  baseline: " + " ".join(f"{100 * a:.2f}" for a in base[0]["accs"]))
    print("  mnistcli: " + " ".join(f"{100 * a:.2f}" for a in runs["report"][0]["accs"]))


if __name__ == "__main__":
    main()

"""Where the seconds of `mnistcli train --epochs 1` go: the whole command, phase by phase.

Runs the command --repeats times, each in a fresh process (`--child`), with timers around the
pieces of the run (nothing else is changed), and prints the median of each phase next to the
whole command's wall time as seen from outside. `--importtime` also prints the slowest imports
(`python -X importtime`).

    python benchmarks/profile_train.py --data-dir ../shared/data/mnist --repeats 5
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()  # as early as this process can tell
ROOT = Path(__file__).resolve().parents[1]
# phase name -> (module, attribute) of the function timed
TIMED = {
    "read the data": ("mnistcli.data", "load_dataset"),
    "build the optimiser": ("mnistcli.trainer", "make_optimizer"),
    "train the epoch": ("mnistcli.trainer", "train_one_epoch"),
    "evaluate val and test": ("mnistcli.trainer", "evaluate_and_record"),
    "write checkpoints": ("mnistcli.checkpoint", "write_checkpoint"),
    "write history, draw curves.png": ("mnistcli.saver", "CheckpointSaver.write_history"),
}


def child(argv: list[str], report: Path) -> None:
    """Run the command in this process with the timers in place; write the phases to `report`."""
    import importlib

    t = time.perf_counter()
    import torch  # noqa: F401

    phases = {"import torch": time.perf_counter() - t}
    t = time.perf_counter()
    from mnistcli import cli

    phases["import mnistcli (cli, typer, rich)"] = time.perf_counter() - t
    for name, (module, attr) in TIMED.items():
        owner = importlib.import_module(module)
        *path, leaf = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, leaf, _timed(getattr(owner, leaf), name, phases))
    sys.argv = ["mnistcli", *argv]
    try:
        cli.app(prog_name="mnistcli")
    except SystemExit:
        pass
    phases["until exit"] = time.perf_counter() - T0
    report.write_text(json.dumps(phases))
    if hasattr(cli, "exit_code"):  # as cli.main() ends the command, where it does
        sys.stdout.flush()
        os._exit(0)


def _timed(fn, name, phases):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t

    return wrapper


def measure(args) -> tuple[float, dict[str, float], float]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "phases.json"
        argv = [
            "train",
            "--epochs",
            "1",
            "--data-dir",
            str(args.data_dir),
            "--no-download",
            "--out-dir",
            tmp,
            "--seed",
            "0",
        ]
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child", str(report), *argv], check=True, capture_output=True)
        wall = time.perf_counter() - t
        history = json.loads((Path(tmp) / "history.json").read_text())
        return wall, json.loads(report.read_text()), history[0]["test_acc"]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child(sys.argv[3:], Path(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--importtime", action="store_true", help="also list the slowest imports")
    args = ap.parse_args()
    runs = [measure(args) for _ in range(args.repeats)]
    wall = statistics.median(w for w, _, _ in runs)
    names = list(runs[0][1])
    print(f"mnistcli train --epochs 1, {args.repeats} runs, medians (test accuracy {runs[0][2]:.2%})\n")
    print(f"{'phase':40s} {'seconds':>8s}")
    for name in names:
        if name != "until exit":
            print(f"{name:40s} {statistics.median(r[name] for _, r, _ in runs):8.2f}")
    inside = statistics.median(r["until exit"] for _, r, _ in runs)
    timed = sum(statistics.median(r[n] for _, r, _ in runs) for n in names if n != "until exit")
    print(f"{'everything else in the process':40s} {inside - timed:8.2f}")
    print(f"{'starting and ending the interpreter':40s} {wall - inside:8.2f}")
    print(f"{'whole command (wall, from outside)':40s} {wall:8.2f}")
    epoch = statistics.median(r["train the epoch"] for _, r, _ in runs)
    print(f"{'whole command minus the epoch':40s} {wall - epoch:8.2f}")
    if args.importtime:
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mnistcli.trainer, mnistcli.plots"],
                             capture_output=True, text=True).stderr  # fmt: skip
        rows = [line.split("|") for line in out.splitlines() if line.startswith("import time:") and "|" in line]
        rows = [(int(r[1]), r[2].rstrip()) for r in rows[1:] if r[1].strip().isdigit()]
        print("\nslowest imports (cumulative microseconds):")
        for us, name in sorted(rows, reverse=True)[:12]:
            print(f"  {us / 1e6:6.2f} s {name}")


if __name__ == "__main__":
    main()

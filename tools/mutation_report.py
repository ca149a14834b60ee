"""Mutation score per module from `mutmut results --all true`, less the equivalent mutants listed in
tools/mutation-equivalent.txt (one per line: `mutant-name  # why it cannot change behaviour`)."""

from __future__ import annotations

import re
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

EQUIVALENT = Path(__file__).with_name("mutation-equivalent.txt")


def main() -> None:
    out = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    names = (line.split("#")[0].strip() for line in EQUIVALENT.read_text().splitlines())
    equivalent = {name for name in names if name}
    by_module: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for name, status in re.findall(r"^\s*(\S+): (\S+)$", out, re.M):
        module = name.split(".x_")[0]
        if name in equivalent:
            by_module[module]["equivalent"] += 1
            continue
        killed = status in ("killed", "timeout", "segfault")
        by_module[module]["killed" if killed else "survived"] += 1
        if not killed:
            survivors.append(f"{name}: {status}")
    print(f"{'module':28s} {'killed':>7s} {'survived':>9s} {'equivalent':>11s} {'score':>7s}")
    for module, c in sorted(by_module.items()):
        scored = c["killed"] + c["survived"]
        score = 100 * c["killed"] / scored if scored else 100.0
        print(f"{module:28s} {c['killed']:7d} {c['survived']:9d} {c['equivalent']:11d} {score:6.1f}%")
    if survivors:
        print("\nsurviving (not judged equivalent):\n  " + "\n  ".join(survivors))


if __name__ == "__main__":
    main()

"""Mutation score per module from `mutmut results --all true`, less the equivalent mutants listed in
tools/mutation-equivalent.txt (one per line: `mutant-name  # why it cannot change behaviour`).

    python tools/mutation_report.py                 # every mutant mutmut has run
    python tools/mutation_report.py --only NAME...  # these mutants
    python tools/mutation_report.py --sample 40     # print 40 names per module, drawn with a fixed seed
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

EQUIVALENT = Path(__file__).with_name("mutation-equivalent.txt")


def statuses() -> dict[str, str]:
    out = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"^\s*(\S+): (.+?)\s*$", out, re.M))


def module_of(name: str) -> str:
    return re.split(r"\.x[_ǁ]", name)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", default=None)
    ap.add_argument("--sample", type=int, default=None)
    args = ap.parse_args()
    found = statuses()
    if args.sample:
        by_module = defaultdict(list)
        for name in sorted(found):
            by_module[module_of(name)].append(name)
        rng = random.Random(0)
        for names in by_module.values():
            print("\n".join(rng.sample(names, min(args.sample, len(names)))))
        return
    names = (line.split("#")[0].strip() for line in EQUIVALENT.read_text().splitlines())
    equivalent = {name for name in names if name}
    chosen = {n: s for n, s in found.items() if args.only is None or n in set(args.only)}
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for name, status in chosen.items():
        module = module_of(name)
        if name in equivalent:
            counts[module]["equivalent"] += 1
        elif status in ("killed", "timeout", "segfault"):
            counts[module]["killed"] += 1
        else:
            counts[module]["survived"] += 1
            survivors.append(f"{name}: {status}")
    print(f"{'module':24s} {'killed':>7s} {'survived':>9s} {'equivalent':>11s} {'score':>7s}")
    for module, c in sorted(counts.items()):
        scored = c["killed"] + c["survived"]
        score = 100 * c["killed"] / scored if scored else 100.0
        print(f"{module:24s} {c['killed']:7d} {c['survived']:9d} {c['equivalent']:11d} {score:6.1f}%")
    if survivors:
        print("\nsurviving (not judged equivalent):\n  " + "\n  ".join(sorted(survivors)))


if __name__ == "__main__":
    main()

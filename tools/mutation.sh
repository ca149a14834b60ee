#!/usr/bin/env bash
# Mutation testing of the modules whose promises the suite must pin (configured in pyproject.toml,
# [tool.mutmut]); not part of CI. Prints the score per module, leaving out the mutants judged
# equivalent in tools/mutation-equivalent.txt (with the reason for each).
#
#   tools/mutation.sh                 # every mutant (about 3,700: many hours on 2 cores)
#   tools/mutation.sh --sample 40     # 40 mutants drawn at random (seeded) from each module
#   tools/mutation.sh "mnistcli.metrics*"   # mutmut's own name patterns
set -euo pipefail
cd "$(dirname "$0")/.."
# The session fixtures (a small dataset, a small trained run) are built once, by the unmutated code.
export MNISTCLI_TEST_FIXTURE_CACHE="$PWD/mutants/.fixture-cache"
if [ "${1:-}" = "--sample" ]; then
    mutmut run "no-such-mutant" >/dev/null 2>&1 || true  # generate the mutants and the test map
    mapfile -t names < <(python tools/mutation_report.py --sample "$2")
    mutmut run "${names[@]}" || true
    python tools/mutation_report.py --only "${names[@]}"
    exit 0
fi
if [ "$#" -eq 0 ]; then rm -rf mutants; fi
mutmut run "$@" || true
python tools/mutation_report.py

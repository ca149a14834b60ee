#!/usr/bin/env bash
# Mutation testing of the modules whose promises the suite must pin (configured in pyproject.toml,
# [tool.mutmut]); not part of CI: about an hour on 2 cores. Prints the score per module, leaving
# out the mutants judged equivalent in tools/mutation-equivalent.txt (with the reason for each).
#
#   tools/mutation.sh                        # everything, from scratch
#   tools/mutation.sh "mnistcli.metrics*"    # one module (mutmut's name patterns)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then rm -rf mutants; fi
# The session fixtures (a small dataset, a small trained run) are built once, by the unmutated code.
export MNISTCLI_TEST_FIXTURE_CACHE="$PWD/mutants/.fixture-cache"
mutmut run "$@" || true
python tools/mutation_report.py

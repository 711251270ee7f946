#!/usr/bin/env bash
# Run every figure against the simulated server and update benchmarks/README.md.
# About 20 minutes on 2 cores; ends with the targets summary. Extra arguments (e.g. --base-url URL --model NAME) go to every
# script; bench_straggler.py also needs --slow-url with --base-url.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
for figure in overhead load burst straggler ttft nbatch; do
  echo "== $figure"
  "$PY" "benchmarks/bench_$figure.py" "$@"
done
"$PY" -m benchmarks.harness.summary "$@"

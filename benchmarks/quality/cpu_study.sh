#!/usr/bin/env bash
# The quality study on this machine's CPU: the embedded Qwen2.5-Coder-1.5B-Instruct, GSM8K, every
# strategy over the same 5 candidates, with `polyfuse eval` and nothing else. Three steps, each
# stopping at its deadline (HH:MM today, or anything `date -d` reads); every step resumes when the
# script is run again with the same OUT.
#
#   1. until STUDY_UNTIL: 5 candidates at T=0.8 per question (preset `study`), graded, with
#      single, best-of-n, vote, usc and fuse over them;
#   2. single T=0 (preset `greedy`) on exactly the questions step 1 finished;
#   3. only with MOA_UNTIL: Mixture-of-Agents replayed over step 1's own candidates (its second
#      layer asks the model again; nothing else is resampled), at most MOA_N questions;
#   then the tables of docs/quality.md (study_tables.py).
#
# Usage: DATA=../shared/data/eval/gsm8k/test.jsonl STUDY_UNTIL=02:30 bash benchmarks/quality/cpu_study.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/polyfuse-cpu-study}
DATA=${DATA:?the GSM8K test.jsonl}
CONFIG=benchmarks/quality/cpu_presets.toml
TITLE="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M) on the CPU, GSM8K"
mkdir -p "$OUT"

seconds_until() { echo $(( $(date -d "$1" +%s) - $(date +%s) )); }
eval_() { "$PY" -m polyfuse.cli eval "$@" --config "$CONFIG" --no-progress; }

# 1. the pool and the strategies over it. At the deadline SIGINT, like one Ctrl-C: no new
#    question starts, the ROWS_IN_FLIGHT in flight finish and are reported (the eval exits 130).
#    SIGKILL 15 minutes later as a backstop; the eval's store is crash-safe, so even that loses
#    only the questions still in flight.
left=$(seconds_until "${STUDY_UNTIL:?HH:MM}")
if [ "$left" -gt 0 ]; then
  timeout -s INT -k 900 "$left" "$PY" -m polyfuse.cli eval "$DATA" --dataset gsm8k --config "$CONFIG" \
    --preset study --strategies single,best-of-n,vote,usc,fuse --limit "${STUDY_N:-500}" \
    --max-rows-in-flight "${ROWS_IN_FLIGHT:-3}" --output "$OUT/study" --no-progress --title "$TITLE"
fi
eval_ "$DATA" --dataset gsm8k --preset study --strategies single,best-of-n,vote,usc,fuse \
  --limit 0 --output "$OUT/study" --title "$TITLE"

# 2. the greedy answer to the same questions
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
from polyfuse.eval import read_eval_generations
out = Path(sys.argv[1])
entries = read_eval_generations(out / "study" / "generations.jsonl")
with (out / "done_rows.jsonl").open("w", encoding="utf-8") as handle:
    for entry in entries:
        handle.write(json.dumps(entry.row) + "\n")
print(f"{len(entries)} questions finished by the study")
EOF
eval_ "$OUT/done_rows.jsonl" --preset greedy --strategies single --output "$OUT/greedy" \
  --title "$TITLE, single T=0"

# 3. MoA over the study's own candidates
replays=()
if [ -n "${MOA_UNTIL:-}" ]; then
  left=$(seconds_until "$MOA_UNTIL")
  if [ "$left" -gt 0 ]; then
    timeout -s INT -k 900 "$left" "$PY" -m polyfuse.cli eval "$OUT/study" --replay --preset study \
      --config "$CONFIG" --strategies single,vote,moa --limit "${MOA_N:-500}" \
      --max-rows-in-flight "${ROWS_IN_FLIGHT:-3}" \
      --output "$OUT/moa" --no-progress --title "$TITLE, MoA on the same candidates"
  fi
  eval_ "$OUT/study" --replay --preset study --strategies single,vote,moa --limit 0 \
    --output "$OUT/moa" --title "$TITLE, MoA on the same candidates"
  replays=(--replay "$OUT/moa")
fi

"$PY" benchmarks/quality/study_tables.py --study "$OUT/study" --greedy "$OUT/greedy" \
  "${replays[@]}" | tee "$OUT/tables.md"

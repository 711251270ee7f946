#!/usr/bin/env bash
# ON THE GPU MACHINE: wait up to WAIT_S seconds (or until the study is done), then print its
# timeline, the rows each eval has written, the servers' last lines and the GPU's state.
set -uo pipefail
for _ in $(seq 1 "${WAIT_S:-0}"); do [ -f /tmp/pf-out/DONE ] && break; sleep 1; done
cat /tmp/pf-out/timeline.txt 2>/dev/null
for d in /tmp/eval-*; do [ -d "$d" ] && echo "$d: $(cat "$d"/*.jsonl 2>/dev/null | wc -l) lines"; done
tail -n 3 /tmp/pf-out/study.log /tmp/pf-out/eval-*.log 2>/dev/null | tail -n 40
tail -n 2 /tmp/pf-out/serve-*.log 2>/dev/null | cut -c1-200
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null

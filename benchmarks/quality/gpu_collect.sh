#!/usr/bin/env bash
# ON THE GPU MACHINE, the last call: wait until the study is done or WAIT_S seconds passed, stop
# what still runs (rows already written stay: `polyfuse eval` resumes from them), and return one
# archive in $OUT (the device returns at most 8 files).
set -uo pipefail
for _ in $(seq 1 "${WAIT_S:-0}"); do [ -f /tmp/pf-out/DONE ] && break; sleep 1; done
pkill -TERM -f "polyfuse.cli eval" 2>/dev/null; sleep 3; pkill -KILL -f "polyfuse.cli eval" 2>/dev/null
cat /tmp/pf-out/timeline.txt
final="${OUT:-/tmp/pf-final}"; mkdir -p "$final"
tar czf "$final/study.tgz" -C /tmp pf-out $(cd /tmp && ls -d eval-* 2>/dev/null)
ls -l "$final"

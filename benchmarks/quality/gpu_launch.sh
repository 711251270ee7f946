#!/usr/bin/env bash
# ON THE GPU MACHINE, in the call that carries the last chunk with the wheels and the data:
#   bash benchmarks/quality/gpu_receive.sh && STUDY_SECONDS=1200 bash benchmarks/quality/gpu_launch.sh
# Starts gpu_study.sh in its own process session, so it outlives this call and runs on while
# the machine is held (a call's processes are killed when it returns; a new session's are not).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p /tmp/pf-out
export STUDY_DEADLINE=$(( $(date +%s) + ${STUDY_SECONDS:?seconds the study may run} ))
setsid nohup bash benchmarks/quality/gpu_study.sh > /tmp/pf-out/study.log 2>&1 < /dev/null &
sleep "${LAUNCH_WATCH_S:-20}"
cat /tmp/pf-out/study.log

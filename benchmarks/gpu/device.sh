#!/usr/bin/env bash
# The whole GPU benchmark on a fresh GPU machine, from the repo root:
#   bash benchmarks/gpu/device.sh [extra arguments for benchmarks.gpu.run]
# Results go to $OUT (the device tool's output folder) or benchmarks/gpu/results/latest.
# Needs python3 with torch + transformers (+ tokenizers, matplotlib); the missing wheels are
# installed from .gpu/wheels when that folder exists (see fetch_wheels.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-benchmarks/gpu/results/latest}"
model_dir="${MODEL_DIR:-/tmp/polyfuse-llama-0.9b}"
wheels="${WHEELS:-.gpu/wheels}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_UPDATE_CHECK=1
if [ -d "$wheels" ]; then
  python3 -m pip install -q --no-index --find-links "$wheels" --disable-pip-version-check \
    fastapi uvicorn httptools 'openai<3' 'pydantic>=2' langchain-core langchain-openai \
    llama-index-core llama-index-llms-openai-like
fi
export PYTHONPATH="$PWD/core:$PWD/integrations/langchain:$PWD/integrations/llamaindex:$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,utilization.gpu --format=csv || echo 'no nvidia-smi'
python3 -c 'import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__, torch.cuda.is_available())'
python3 -m benchmarks.gpu.model --out "$model_dir" ${MODEL_ARGS:-} 2>/dev/null | tail -1 > "$out/model.json"
cat "$out/model.json"
python3 -m benchmarks.gpu.run --model-dir "$model_dir" --model-info "$out/model.json" \
  --out "$out" "$@"

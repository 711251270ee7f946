#!/usr/bin/env bash
# Run HERE (the 2-core machine), in the root of the checkout the device tool sends (/work/main):
#   bash benchmarks/quality/gpu_prepare.sh [GSM8K/MBPP/MT-Bench data root]
# Builds the ignored folder .gpu-localmodel/: the wheels the GPU machine lacks, the eval data,
# and the model cut into chunks small enough for one device call each (a call carries at most
# 64 MiB with the working tree). See README.md for the calls that follow.
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${1:-/work/shared/data/eval}"
dest=.gpu-localmodel
chunk_mib="${CHUNK_MIB:-58}"
mkdir -p "$dest/wheels" "$dest/data" "$dest/chunks" .git/info
grep -qx '/.gpu-localmodel/' .git/info/exclude 2>/dev/null || echo '/.gpu-localmodel/' >> .git/info/exclude

# 1. wheels: transformers' GGUF reader (gguf), transformers serve's server stack, polyfuse's
#    pydantic (the image has torch, transformers, numpy, httpx, typer, rich, matplotlib)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$dest/wheels" \
  gguf==0.19.0 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 \
  typing-inspection==0.4.5 fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 \
  openai==2.54.0 jiter==0.19.0 distro==1.9.0 sniffio==1.3.1 opentelemetry-api==1.45.2 \
  importlib-metadata==10.2.0 httptools==0.9.0
du -sh "$dest/wheels"

# 2. data (read by polyfuse eval's loaders; never committed)
cp "$data/gsm8k/test.jsonl" "$dest/data/gsm8k.jsonl"
# MBPP's test split is task_ids 11..510 (the paper's split; the file holds all 974 tasks)
python3 -c 'import json,sys
for line in open(sys.argv[1]):
    if line.strip() and 11 <= json.loads(line)["task_id"] <= 510: sys.stdout.write(line)' \
  "$data/mbpp/mbpp.jsonl" > "$dest/data/mbpp_test.jsonl"
mkdir -p "$dest/data/mt_bench" && cp -r "$data/mt_bench/." "$dest/data/mt_bench/"

# 3. the model, fetched and verified by polyfuse, cut into chunks
gguf="$(${PY:-python3} -c 'from polyfuse.local import model_gguf; print(model_gguf("qwen2.5-coder-1.5b", show_progress=True))')"
rm -f "$dest/chunks/"*
split -b "${chunk_mib}m" -d -a 2 "$gguf" "$dest/chunks/qwen."
ls "$dest/chunks" | wc -l | xargs echo "chunks:"
du -sh "$dest"

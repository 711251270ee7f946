#!/usr/bin/env bash
# Download the wheels that the GPU machine lacks into .gpu/wheels (run here, in the repo root).
# The machine has no network: the folder travels with the working tree (`carry: [".gpu"]`).
set -euo pipefail
cd "$(dirname "$0")/../.."
dest="${1:-.gpu/wheels}"
mkdir -p "$dest"
grep -v '^#' benchmarks/gpu/wheels.txt | xargs python3 -m pip download -q --no-deps \
  --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest"
du -sh "$dest"

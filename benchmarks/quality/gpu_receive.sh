#!/usr/bin/env bash
# ON THE GPU MACHINE, once per carried chunk (carry: [".gpu-localmodel/chunks/qwen.NN"]):
# moves the chunk out of the working tree into /tmp/pf-model, which stays only while the machine
# is warm (30 s after a call: send the next call at once).
set -euo pipefail
mkdir -p /tmp/pf-model
mv .gpu-localmodel/chunks/qwen.* /tmp/pf-model/
echo "$(ls /tmp/pf-model | wc -l) chunks, $(du -sm /tmp/pf-model | cut -f1) MiB"

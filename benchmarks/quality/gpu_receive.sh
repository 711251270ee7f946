#!/usr/bin/env bash
# Run ON THE GPU MACHINE, once per carried chunk (carry: [".gpu-localmodel/chunks/qwen.NN"]):
# moves the chunk out of the working tree into /tmp/pf-model, which stays while the machine is
# warm (30 s after a call: send the next call at once).
set -euo pipefail
mkdir -p /tmp/pf-model
mv .gpu-localmodel/chunks/qwen.* /tmp/pf-model/
ls /tmp/pf-model | tr '\n' ' '; echo; du -sh /tmp/pf-model

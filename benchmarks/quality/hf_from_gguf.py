"""Turn the embedded model's GGUF into a transformers checkpoint that ``transformers serve`` loads.

transformers reads GGUF files itself (``from_pretrained(..., gguf_file=...)``, which needs the
``gguf`` package) and dequantizes the Q4_K_M weights; ``transformers serve`` only takes a model
folder, so this saves that model (bf16 safetensors), its tokenizer and the chat template
(taken from the GGUF's metadata) into one. The GPU recipe runs it once per machine.

Usage::

    python3 benchmarks/quality/hf_from_gguf.py /tmp/pf-model/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \\
        /tmp/pf-model/hf
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    folder, name = str(args.gguf.parent), args.gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=getattr(torch, args.dtype)
    )
    if not getattr(tokenizer, "chat_template", None):
        raise SystemExit(f"{name} carries no chat template; transformers serve needs one")
    # the weights are dequantized in memory, but the model still says "GGUF-quantized", which
    # save_pretrained refuses ("... is not serializable"): save it as the plain model it now is
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(
        json.dumps(
            {
                "gguf": str(args.gguf),
                "out": str(args.out),
                "parameters": sum(p.numel() for p in model.parameters()),
                "dtype": args.dtype,
                "eos_token": tokenizer.eos_token,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

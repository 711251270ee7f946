"""Decode and prefill speed of an embedded model on this machine (one request at a time).

Usage::

    python benchmarks/quality/local_speed.py --model qwen2.5-coder-1.5b --threads 1 2 --runs 3

Prints one JSON line per run: llama.cpp's own timings (``predicted_per_second`` is the decode
speed, ``prompt_per_second`` the prefill speed), the tokens generated, the wall time, and the
1-minute load average before the run (this machine may be shared: a load above the core count
means other processes compete for the cores, and llama.cpp's spinning threads slow down a lot).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import httpx

from polyfuse.local import LOCAL_MODELS, LocalModel

PROMPT = "Write a Python function that checks whether a string is a palindrome, with a docstring."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b", choices=list(LOCAL_MODELS))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    for threads in args.threads:
        with LocalModel(model=args.model, slots=1, ctx_per_slot=2048, threads=threads) as local:
            for run in range(args.runs):
                load = os.getloadavg()[0]
                started = time.monotonic()
                answer = httpx.post(
                    f"{local.base_url}/chat/completions",
                    json={
                        "messages": [{"role": "user", "content": PROMPT}],
                        "max_tokens": args.max_tokens,
                        "temperature": 0,
                    },
                    timeout=900,
                ).json()
                timings = answer.get("timings", {})
                print(
                    json.dumps(
                        {
                            "model": args.model,
                            "threads": threads,
                            "run": run,
                            "load_1min_before": round(load, 2),
                            "cpus": os.cpu_count(),
                            "completion_tokens": answer["usage"]["completion_tokens"],
                            "decode_tok_s": round(timings.get("predicted_per_second", 0.0), 2),
                            "prefill_tok_s": round(timings.get("prompt_per_second", 0.0), 2),
                            "wall_s": round(time.monotonic() - started, 2),
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()

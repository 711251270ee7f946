"""One request with ``n`` against N separate requests: what the server does with ``n``, and
what N prefills of the same prompt cost compared with one.

``transformers serve`` ignores ``n`` (one choice comes back), so a fusion client must send N
requests. What ``n`` would save on a server that honours it is the repeated prefill of the
shared prompt; this measures that cost directly with prefill-only requests (``max_tokens=1``)
on a long prompt:

* one request;
* N concurrent requests with the same prompt (the server may share prefix blocks);
* N concurrent requests with N different prompts of the same length (no sharing possible);
* one request with ``n=N`` (how many choices come back, and how long it takes).

Each trial uses fresh random words, so no trial reuses an earlier one's cached prefix.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

import httpx

__all__ = ["measure_n_vs_separate", "random_prompt"]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def random_prompt(words: int, seed: int) -> str:
    """``words`` random lowercase words (about 1-2 tokens each with the benchmark tokenizer)."""
    rng = random.Random(seed)
    return " ".join("".join(rng.choices(_LETTERS, k=rng.randint(3, 8))) for _ in range(words))


async def _post(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/chat/completions", json=body)
    response.raise_for_status()
    return response.json()


async def _timed(coro: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await coro
    return time.perf_counter() - started, result


async def measure_n_vs_separate(
    base_url: str,
    model: str,
    *,
    n: int,
    prompt_words: int,
    trials: int = 3,
    seed: int = 1000,
) -> dict[str, Any]:
    """Prefill-only timings of one request, N separate ones and one with ``n=N``."""
    async with httpx.AsyncClient(
        base_url=base_url, timeout=httpx.Timeout(600.0, connect=10.0)
    ) as client:

        def body(text: str, **extra: Any) -> dict[str, Any]:
            return {
                "model": model,
                "messages": [{"role": "user", "content": text}],
                "max_tokens": 1,
                **extra,
            }

        rows: dict[str, list[float]] = {"one": [], "n_same": [], "n_distinct": [], "one_with_n": []}
        prompt_tokens: list[int] = []
        choices_with_n: list[int] = []
        counter = seed
        # one untimed request at this length first (allocations, graph capture for the shape)
        await _post(client, body(random_prompt(prompt_words, counter)))
        for _ in range(trials):
            counter += 1
            t, reply = await _timed(_post(client, body(random_prompt(prompt_words, counter))))
            rows["one"].append(t)
            prompt_tokens.append((reply.get("usage") or {}).get("prompt_tokens", 0))
            counter += 1
            same = body(random_prompt(prompt_words, counter))
            t, _ = await _timed(asyncio.gather(*(_post(client, same) for _ in range(n))))
            rows["n_same"].append(t)
            distinct = []
            for _ in range(n):
                counter += 1
                distinct.append(body(random_prompt(prompt_words, counter)))
            t, _ = await _timed(asyncio.gather(*(_post(client, b) for b in distinct)))
            rows["n_distinct"].append(t)
            counter += 1
            t, reply = await _timed(_post(client, body(random_prompt(prompt_words, counter), n=n)))
            rows["one_with_n"].append(t)
            choices_with_n.append(len(reply.get("choices") or []))
    medians = {k: statistics.median(v) for k, v in rows.items()}
    tokens = statistics.median(prompt_tokens) if prompt_tokens else 0
    return {
        "n": n,
        "prompt_tokens": tokens,
        "trials": trials,
        "median_s": {k: round(v, 4) for k, v in medians.items()},
        "all_s": {k: [round(x, 4) for x in v] for k, v in rows.items()},
        "choices_returned_for_n": choices_with_n,
        "n_same_over_one": round(medians["n_same"] / medians["one"], 3),
        "n_distinct_over_one": round(medians["n_distinct"] / medians["one"], 3),
        "prefill_tokens_per_s_one": round(tokens / medians["one"], 1),
        "prefill_tokens_per_s_n_distinct": round(n * tokens / medians["n_distinct"], 1),
    }

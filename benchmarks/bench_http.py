"""Client CPU per request of ``OpenAIEndpoint`` alone (no fusion), against the simulated server.

The server runs in its own process (:class:`benchmarks.harness.simserver.SimServers`, zero
latency), so the CPU measured here is this process's: the endpoint, its HTTP layer and asyncio.
Used to choose the HTTP framing library (see ``core/polyfuse/backends/_http.py``)::

    .venv/bin/python benchmarks/bench_http.py --requests 3000 --concurrency 1 8 64

Prints CPU microseconds per request, non-streaming and streaming, for each concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness.simserver import ServerSpec, SimServers

from polyfuse import OpenAIEndpoint
from polyfuse.messages import ChatRequest, SamplingParams


async def _measure(url: str, requests: int, concurrency: int, stream: bool) -> float:
    endpoint = OpenAIEndpoint(url, "sim-model", max_concurrency=max(concurrency, 1))
    request = ChatRequest.from_wire([{"role": "user", "content": "hello"}], SamplingParams())

    async def one() -> None:
        if stream:
            async for _ in endpoint.stream(request):
                pass
        else:
            await endpoint.complete(request)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    await asyncio.gather(*(one() for _ in range(concurrency)))  # warm the pool
    started = time.process_time()
    share = requests // concurrency
    await asyncio.gather(*(worker(share) for _ in range(concurrency)))
    cpu = time.process_time() - started
    await endpoint.aclose()
    return cpu / (share * concurrency) * 1e6


def main() -> None:
    """Parse the options, run the measurements, print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    spec = ServerSpec(ttft_s=0.0, tokens_per_s=None, output_tokens=64)
    with SimServers([spec]) as servers:
        url = servers.base_urls[0]
        for stream in (False, True):
            for concurrency in args.concurrency:
                best = min(
                    asyncio.run(_measure(url, args.requests, concurrency, stream))
                    for _ in range(args.repeat)
                )
                kind = "stream" if stream else "complete"
                print(f"{kind:8s} concurrency {concurrency:4d}: {best:7.1f} µs CPU per request")


if __name__ == "__main__":
    main()

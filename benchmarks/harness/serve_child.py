"""The simulated server's process: ``python -m benchmarks.harness.serve_child '<JSON specs>'``.

Serves one :class:`polyfuse.testing.FakeOpenAIServer` per :class:`ServerSpec` with uvicorn, all
in one event loop, prints ``{"ports": [...]}`` once every server listens, and stops when its
standard input closes (see :class:`benchmarks.harness.simserver.SimServers`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from benchmarks.harness.simserver import ServerSpec

__all__ = ["main"]


async def _serve(specs: list[dict[str, Any]]) -> None:
    import uvicorn

    from polyfuse.testing import FakeOpenAIServer, LatencyModel

    servers: list[uvicorn.Server] = []
    for raw in specs:
        spec = ServerSpec(**raw)
        app = FakeOpenAIServer(
            model=spec.model,
            latency=LatencyModel(
                ttft_s=spec.ttft_s,
                tokens_per_s=spec.tokens_per_s,
                jitter=spec.jitter,
                capacity=spec.capacity,
                straggler_every=spec.straggler_every,
                straggler_factor=spec.straggler_factor,
                output_tokens=spec.output_tokens,
            ),
            seed=spec.seed,
            record=False,
            stream_chunk_size=spec.stream_chunk_size,
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_level="warning",
            access_log=False,
            backlog=4096,
            timeout_keep_alive=60,
        )
        servers.append(uvicorn.Server(config))
    tasks = [asyncio.ensure_future(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            for t in tasks:
                if t.done():
                    t.result()
            raise RuntimeError("a simulated server stopped during startup")
        await asyncio.sleep(0.01)
    ports = [s.servers[0].sockets[0].getsockname()[1] for s in servers]
    print(json.dumps({"ports": ports}), flush=True)
    # Run until the parent closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for s in servers:
        s.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the server process: ``serve_child '<JSON list of ServerSpec fields>'``."""
    args = sys.argv[1:] if argv is None else argv
    specs = json.loads(args[0]) if args else [{}]
    asyncio.run(_serve(specs))


if __name__ == "__main__":
    main()

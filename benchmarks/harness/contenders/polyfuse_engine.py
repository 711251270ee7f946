"""polyfuse itself: ``Fusion(Pool, Fuse(fusor), QuorumPolicy)`` over ``OpenAIEndpoint``."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from polyfuse import Fuse, FusedToken, Fusion, OpenAIEndpoint, Pool, QuorumPolicy

from .base import Contender

__all__ = ["PolyfuseContender", "PolyfuseFanoutContender"]


class PolyfuseContender(Contender):
    """polyfuse with its defaults: one ``n``-batched request per endpoint where the server
    honours ``n`` (learned on the first call), else N concurrent requests."""

    name: ClassVar[str] = "polyfuse"
    label: ClassVar[str] = "polyfuse"
    waits_for_all: ClassVar[bool] = False
    fan_out: ClassVar[bool] = False

    async def open(self) -> None:
        w = self.workload
        supports_n = False if self.fan_out else w.supports_n
        endpoints: dict[str, OpenAIEndpoint] = {}
        for url in (*w.candidate_urls, w.fusor_url):
            if url not in endpoints:
                endpoints[url] = OpenAIEndpoint(
                    url,
                    w.model,
                    api_key=w.api_key,
                    supports_n=supports_n,
                    max_concurrency=w.max_connections,
                    max_retries=0,
                )
        members = [endpoints[url] for url in w.candidate_urls]
        if w.one_endpoint:
            pool = Pool.repeat(members[0], w.n)
        else:
            pool = Pool.panel(members)
        policy = QuorumPolicy(quorum=w.quorum) if w.quorum is not None else QuorumPolicy()
        self.fusion = Fusion(pool, Fuse(endpoints[w.fusor_url]), policy)
        self.params = {"temperature": w.temperature, "max_tokens": w.max_tokens}

    async def fuse(self) -> str:
        result = await self.fusion.arun(self.workload.prompt, **self.params)
        return result.content

    async def fuse_stream(self, on_first_token: Callable[[], None]) -> str:
        parts: list[str] = []
        async for event in self.fusion.astream(self.workload.prompt, **self.params):
            if isinstance(event, FusedToken):
                if not parts:
                    on_first_token()
                parts.append(event.delta)
        return "".join(parts)

    async def aclose(self) -> None:
        await self.fusion.aclose()


class PolyfuseFanoutContender(PolyfuseContender):
    """polyfuse told that the server ignores ``n`` (``supports_n=False``): N requests, like
    every peer sends; the like-for-like comparison."""

    name: ClassVar[str] = "polyfuse-fanout"
    label: ClassVar[str] = "polyfuse (fan-out)"
    fan_out: ClassVar[bool] = True

"""What a careful user writes by hand: ``asyncio.gather`` over the official ``AsyncOpenAI``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from .base import Contender, ContenderUnavailable

__all__ = ["OpenAIGatherContender", "OpenAINContender"]


def _client(base_url: str, api_key: str, max_connections: int) -> Any:
    try:
        import httpx
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ContenderUnavailable(f"{exc}; pip install openai") from None
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return AsyncOpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        http_client=DefaultAsyncHttpxClient(limits=limits),
    )


class OpenAIGatherContender(Contender):
    """N ``chat.completions.create`` calls in ``asyncio.gather``, then one fusor call, all on
    one pooled ``AsyncOpenAI`` client per endpoint (sized to the concurrency)."""

    name: ClassVar[str] = "openai-gather"
    label: ClassVar[str] = "AsyncOpenAI + gather"

    async def open(self) -> None:
        w = self.workload
        self.clients: dict[str, Any] = {}
        for url in (*w.candidate_urls, w.fusor_url):
            if url not in self.clients:
                self.clients[url] = _client(url, w.api_key, w.max_connections)

    async def _candidate(self, url: str) -> str:
        w = self.workload
        response = await self.clients[url].chat.completions.create(
            model=w.model,
            messages=[{"role": "user", "content": w.prompt}],
            temperature=w.temperature,
            max_tokens=w.max_tokens,
        )
        return response.choices[0].message.content or ""

    async def _candidates(self) -> list[str]:
        return list(
            await asyncio.gather(*(self._candidate(u) for u in self.workload.candidate_urls))
        )

    async def fuse(self) -> str:
        w = self.workload
        drafts = await self._candidates()
        response = await self.clients[w.fusor_url].chat.completions.create(
            model=w.model, messages=w.fusor_messages(drafts), max_tokens=w.max_tokens
        )
        return response.choices[0].message.content or ""

    async def fuse_stream(self, on_first_token: Callable[[], None]) -> str:
        w = self.workload
        drafts = await self._candidates()
        stream = await self.clients[w.fusor_url].chat.completions.create(
            model=w.model, messages=w.fusor_messages(drafts), max_tokens=w.max_tokens, stream=True
        )
        parts: list[str] = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                if not parts:
                    on_first_token()
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts)

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.close()


class OpenAINContender(OpenAIGatherContender):
    """The same, with one ``n=N`` request for the candidates (one endpoint only)."""

    name: ClassVar[str] = "openai-n"
    label: ClassVar[str] = "AsyncOpenAI, n=N"

    async def _candidates(self) -> list[str]:
        w = self.workload
        if not w.one_endpoint:
            raise ValueError("openai-n needs every candidate on one endpoint")
        response = await self.clients[w.candidate_urls[0]].chat.completions.create(
            model=w.model,
            messages=[{"role": "user", "content": w.prompt}],
            temperature=w.temperature,
            max_tokens=w.max_tokens,
            n=w.n,
        )
        return [c.message.content or "" for c in response.choices]

"""LlamaIndex: ``OpenAILike.achat`` candidates in ``asyncio.gather``, then ``TreeSummarize``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from .base import Contender, ContenderUnavailable

__all__ = ["LlamaIndexContender"]


class LlamaIndexContender(Contender):
    """N ``OpenAILike.achat`` calls gathered, then ``TreeSummarize(llm=fusor)`` over the
    candidates' texts (its default prompt; with short candidates one summarize call)."""

    name: ClassVar[str] = "llamaindex"
    label: ClassVar[str] = "LlamaIndex TreeSummarize"

    async def open(self) -> None:
        try:
            import httpx
            from llama_index.core.llms import ChatMessage
            from llama_index.core.response_synthesizers import TreeSummarize
            from llama_index.llms.openai_like import OpenAILike
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ContenderUnavailable(
                f"{exc}; pip install llama-index-core llama-index-llms-openai-like"
            ) from None
        w = self.workload
        self._http: list[httpx.AsyncClient] = []

        def llm(url: str, **kwargs: Any) -> OpenAILike:
            limit = w.max_connections
            client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                timeout=httpx.Timeout(600.0, connect=10.0),
            )
            self._http.append(client)
            return OpenAILike(
                model=w.model,
                api_base=url,
                api_key=w.api_key,
                is_chat_model=True,
                context_window=32768,
                max_tokens=w.max_tokens,
                max_retries=0,
                async_http_client=client,
                **kwargs,
            )

        llms: dict[str, OpenAILike] = {}
        for url in w.candidate_urls:
            if url not in llms:
                llms[url] = llm(url, temperature=w.temperature)
        self.members = [llms[url] for url in w.candidate_urls]
        self.fusor = llm(w.fusor_url)
        self.message = [ChatMessage(role="user", content=w.prompt)]
        self.summarizer = TreeSummarize(llm=self.fusor, use_async=True)
        self.streaming = TreeSummarize(llm=self.fusor, use_async=True, streaming=True)

    async def _candidates(self) -> list[str]:
        replies = await asyncio.gather(*(m.achat(self.message) for m in self.members))
        return [r.message.content or "" for r in replies]

    async def fuse(self) -> str:
        texts = await self._candidates()
        response = await self.summarizer.aget_response(self.workload.prompt, texts)
        return str(response)

    async def fuse_stream(self, on_first_token: Callable[[], None]) -> str:
        texts = await self._candidates()
        response = await self.streaming.aget_response(self.workload.prompt, texts)
        parts: list[str] = []
        async for piece in response:
            if piece:
                if not parts:
                    on_first_token()
                parts.append(piece)
        return "".join(parts)

    async def aclose(self) -> None:
        for client in self._http:
            await client.aclose()

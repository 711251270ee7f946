"""LangChain: ``RunnableParallel`` over ``ChatOpenAI`` branches, then a fusor chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from .base import Contender, ContenderUnavailable

__all__ = ["LangChainContender"]


class LangChainContender(Contender):
    """``RunnableParallel(c0=llm, ..., c{N-1}=llm) | drafts | ChatPromptTemplate | fusor |
    StrOutputParser()``: the LCEL way, one ``ChatOpenAI`` per endpoint (pooled, sized to the
    concurrency)."""

    name: ClassVar[str] = "langchain"
    label: ClassVar[str] = "LangChain RunnableParallel"

    async def open(self) -> None:
        try:
            import httpx
            from langchain_core.output_parsers import StrOutputParser
            from langchain_core.prompts import ChatPromptTemplate
            from langchain_core.runnables import RunnableLambda, RunnableParallel
            from langchain_openai import ChatOpenAI
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ContenderUnavailable(f"{exc}; pip install langchain-openai") from None
        w = self.workload
        self._http: list[httpx.AsyncClient] = []

        def chat(url: str, **kwargs: Any) -> ChatOpenAI:
            limit = w.max_connections
            client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                timeout=httpx.Timeout(600.0, connect=10.0),
            )
            self._http.append(client)
            return ChatOpenAI(
                base_url=url,
                model=w.model,
                api_key=w.api_key,
                max_retries=0,
                max_tokens=w.max_tokens,
                http_async_client=client,
                **kwargs,
            )

        llms: dict[str, ChatOpenAI] = {}
        for url in w.candidate_urls:
            if url not in llms:
                llms[url] = chat(url, temperature=w.temperature)
        fusor = chat(w.fusor_url)
        branches = {f"c{i}": llms[url] for i, url in enumerate(w.candidate_urls)}
        prompt = ChatPromptTemplate.from_messages(
            [("system", w.fusor_system), ("user", "{fusor_user}")]
        )

        def drafts(outputs: dict[str, Any]) -> dict[str, str]:
            texts = [str(outputs[f"c{i}"].content) for i in range(w.n)]
            return {"fusor_user": w.fusor_user(texts)}

        self.chain = RunnableParallel(branches) | RunnableLambda(drafts) | prompt | fusor
        self.chain = self.chain | StrOutputParser()

    async def fuse(self) -> str:
        return str(await self.chain.ainvoke(self.workload.prompt))

    async def fuse_stream(self, on_first_token: Callable[[], None]) -> str:
        parts: list[str] = []
        async for piece in self.chain.astream(self.workload.prompt):
            if piece:
                if not parts:
                    on_first_token()
                parts.append(piece)
        return "".join(parts)

    async def aclose(self) -> None:
        for client in self._http:
            await client.aclose()

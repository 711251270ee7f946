"""``LlamaIndexBackend``: any LlamaIndex LLM as a polyfuse backend (pool member or fusor)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse
from llama_index.core.llms import LLM, CustomLLM

from polyfuse import (
    Backend,
    BackendError,
    ChatRequest,
    Completion,
    InvalidRequestError,
    PolyfuseError,
    StreamDelta,
    ToolCall,
    Usage,
)

from ._convert import from_polyfuse_messages, polyfuse_tool_calls

__all__ = ["LlamaIndexBackend", "as_backend"]


class LlamaIndexBackend:
    """Wraps a LlamaIndex :class:`~llama_index.core.llms.LLM` so polyfuse can sample from it.

    The LLM can then be a member of a :class:`polyfuse.Pool` or the fusor of a
    :class:`polyfuse.Fuse`. Each candidate is one ``achat`` call (``astream_chat`` when
    polyfuse streams), so the LLM's own retries, clients and instrumentation apply. A
    ``CustomLLM`` that implements only the sync methods (whose inherited async methods would
    block the event loop, so N candidates would run one after another) is called in worker
    threads instead, so its candidates still run concurrently.

    Args:
        llm: the LlamaIndex LLM to call.
        name: a label for results and logs (default: the LLM's model name).
        forward_params: pass the request's sampling parameters (``temperature``,
            ``max_tokens``, ``tools``, ...) to the LLM's chat methods as keyword arguments.
            OpenAI-style LLMs honour them; turn this off for an LLM that rejects keywords it
            does not know.

    Errors the LLM raises become :class:`polyfuse.BackendError` (the original is the
    ``__cause__``), so a failing draft is recorded instead of aborting the fusion.
    """

    supports_n: bool | None = False
    """One ``achat`` call returns one answer, so polyfuse fans out N calls."""

    def __init__(self, llm: LLM, *, name: str | None = None, forward_params: bool = True) -> None:
        if not isinstance(llm, LLM):
            raise InvalidRequestError(
                f"LlamaIndexBackend wraps a LlamaIndex LLM (got {type(llm).__name__})"
            )
        self.llm = llm
        self.forward_params = forward_params
        self.threaded = not _has_native_async(llm)
        self._model = _model_name(llm)
        self._name = name or self._model

    @property
    def name(self) -> str:
        """The label used in results and logs."""
        return self._name

    @property
    def model(self) -> str:
        """The wrapped LLM's model name (its class name when it reports none)."""
        return self._model

    def __repr__(self) -> str:
        return f"LlamaIndexBackend({type(self.llm).__name__}, name={self.name!r})"

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        return request.params.to_body() if self.forward_params else {}

    async def complete(self, request: ChatRequest, *, n: int = 1) -> list[Completion]:
        """One answer to ``request`` (``n`` is ignored: ``supports_n`` is False)."""
        messages = from_polyfuse_messages(request.messages)
        started = time.perf_counter()
        try:
            if self.threaded:
                response = await asyncio.to_thread(self.llm.chat, messages, **self._kwargs(request))
            else:
                response = await self.llm.achat(messages, **self._kwargs(request))
        except PolyfuseError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        calls = polyfuse_tool_calls(response.message)
        return [
            Completion(
                content=response.message.content or (None if calls else ""),
                tool_calls=calls,
                finish_reason=_finish_reason(response, calls),
                usage=_usage(response),
                model=self._model,
                latency_s=time.perf_counter() - started,
            )
        ]

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """Stream one answer; closing the iterator closes the LLM's stream."""
        messages = from_polyfuse_messages(request.messages)
        last: ChatResponse | None = None
        chunks = self._chunks(messages, self._kwargs(request))
        try:
            async for chunk in chunks:
                last = chunk
                if chunk.delta:
                    yield StreamDelta(content=chunk.delta)
        except PolyfuseError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        if last is None:
            yield StreamDelta(finish_reason="stop", usage=Usage.missing(), model=self._model)
            return
        calls = polyfuse_tool_calls(last.message)
        yield StreamDelta(
            tool_calls=[
                {"index": i, "id": c.id, "function": c.function.model_dump()}
                for i, c in enumerate(calls or [])
            ]
            or None,
            finish_reason=_finish_reason(last, calls),
            usage=_usage(last),
            model=self._model,
        )

    async def _chunks(
        self, messages: list[ChatMessage], kwargs: dict[str, Any]
    ) -> AsyncIterator[ChatResponse]:
        """The LLM's stream chunks; the LLM's stream is closed when this iterator is."""
        if not self.threaded:
            chunks = await self.llm.astream_chat(messages, **kwargs)
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
            return
        generator = await asyncio.to_thread(self.llm.stream_chat, messages, **kwargs)
        try:
            while (chunk := await asyncio.to_thread(next, generator, None)) is not None:
                yield chunk
        finally:
            await asyncio.to_thread(generator.close)

    async def aclose(self) -> None:
        """Nothing to release: the wrapped LLM owns its clients."""

    def _error(self, exc: Exception) -> BackendError:
        return BackendError(f"{type(exc).__name__}: {exc}", endpoint=self.name)


def as_backend(model: LLM | Backend) -> Backend:
    """A polyfuse backend for ``model``: a backend as is, a LlamaIndex LLM wrapped.

    Raises:
        InvalidRequestError: ``model`` is neither.
    """
    if isinstance(model, LLM):
        return LlamaIndexBackend(model)
    if isinstance(model, Backend):
        return model
    raise InvalidRequestError(
        f"expected a LlamaIndex LLM or a polyfuse Backend, got {type(model).__name__}; "
        "e.g. polyfuse.OpenAIEndpoint(base_url, model) or any llama_index LLM"
    )


def _has_native_async(llm: LLM) -> bool:
    """False for a CustomLLM whose async methods are CustomLLM's sync-calling defaults."""
    if not isinstance(llm, CustomLLM):
        return True
    names = ("achat", "acomplete", "astream_chat", "astream_complete")
    return any(_defined_in(type(llm), name) is not CustomLLM for name in names)


def _defined_in(cls: type, name: str) -> type | None:
    return next((klass for klass in cls.__mro__ if name in vars(klass)), None)


def _model_name(llm: LLM) -> str:
    name = llm.metadata.model_name
    return name if name and name != "unknown" else llm.class_name()


def _raw_field(raw: Any, key: str) -> Any:
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        return raw.get(key)
    return getattr(raw, key, None)


def _usage(response: ChatResponse) -> Usage:
    extra = response.additional_kwargs
    if any(k in extra for k in ("prompt_tokens", "completion_tokens", "total_tokens")):
        return Usage.from_openai(extra)
    raw_usage = _raw_field(response.raw, "usage")
    if raw_usage is not None and not isinstance(raw_usage, Mapping):
        dump = getattr(raw_usage, "model_dump", None)
        raw_usage = dump() if callable(dump) else None
    if isinstance(raw_usage, Mapping) and raw_usage:
        return Usage.from_openai(raw_usage)
    return Usage.missing()


def _finish_reason(response: ChatResponse, calls: list[ToolCall] | None) -> str:
    choices = _raw_field(response.raw, "choices")
    if isinstance(choices, (list, tuple)) and choices:
        reason = _raw_field(choices[0], "finish_reason")
        if isinstance(reason, str) and reason:
            return reason
    return "tool_calls" if calls else "stop"

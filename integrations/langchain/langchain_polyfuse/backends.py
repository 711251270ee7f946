"""``LangChainBackend``: any LangChain chat model as a polyfuse backend (pool member or fusor)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_messages
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel

from polyfuse import (
    APIConnectionError,
    APITimeoutError,
    BackendError,
    ChatRequest,
    Completion,
    InvalidRequestError,
    PolyfuseError,
    ProtocolError,
    SamplingParams,
    StreamDelta,
    ToolCall,
    ToolCallFunction,
)
from polyfuse.errors import status_error_for

from ._convert import usage_from_metadata

__all__ = ["LangChainBackend", "backend_error", "model_name"]

logger = logging.getLogger("polyfuse")

# Sampling parameters and the model fields that carry them, in order of preference.
_FIELD_NAMES: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "max_tokens": ("max_tokens", "max_output_tokens", "num_predict", "max_new_tokens"),
    "top_p": ("top_p",),
    "seed": ("seed",),
    "presence_penalty": ("presence_penalty",),
    "frequency_penalty": ("frequency_penalty",),
}
_FINISH_KEYS = ("finish_reason", "stop_reason", "done_reason")
_FINISH_NAMES = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
_DEFAULT_TAGS = ("polyfuse", "nostream")
_ANY_OBJECT: dict[str, Any] = {
    "title": "json_object",
    "description": "Any JSON object.",
    "type": "object",
}


class LangChainBackend:
    """Wraps a LangChain chat model so a polyfuse pool or aggregator can call it.

    Requests are translated for the wrapped model: messages become LangChain messages; ``tools``
    and ``tool_choice`` go through the model's ``bind_tools``; a ``response_format`` goes
    through its ``with_structured_output`` (the answer is returned as JSON text); ``stop`` is
    passed per call. Other sampling parameters (``temperature``, ``max_tokens``, ``top_p``,
    ``seed``, penalties) are applied through the model's own field of that name (``max_tokens``
    also maps to ``max_output_tokens``/``num_predict``/``max_new_tokens``); a parameter the model
    has no field for is left to the model's own configuration. Timeouts and retries are the
    wrapped model's own.

    Every call runs with the callbacks given by :meth:`with_callbacks` (``ChatFusion`` passes
    its run's child callbacks, so the calls appear as child runs in tracing), tagged ``polyfuse``
    and ``nostream`` (LangGraph's ``stream_mode="messages"`` then shows only the fused answer).

    Args:
        model: the LangChain chat model.
        name: a label for results and logs (default: the model's name).
        tags: tags added to every call's run.
    """

    supports_n: bool | None = False

    def __init__(
        self,
        model: BaseChatModel,
        *,
        name: str | None = None,
        tags: Sequence[str] = _DEFAULT_TAGS,
    ) -> None:
        if not isinstance(model, BaseChatModel):
            raise InvalidRequestError(
                f"LangChainBackend wraps a LangChain chat model (BaseChatModel), got "
                f"{type(model).__name__}; pass the model itself, e.g. ChatOpenAI(model=...), "
                "not a chain or a model with bound tools"
            )
        self.chat_model = model
        self._model = model_name(model)
        self._name = name or self._model
        self._tags = list(tags)
        self._callbacks: Callbacks = None
        self._variants: dict[tuple[tuple[str, Any], ...], BaseChatModel] = {}

    @property
    def name(self) -> str:
        """The label used in results and logs."""
        return self._name

    @property
    def model(self) -> str:
        """The wrapped model's name."""
        return self._model

    def __repr__(self) -> str:
        return f"LangChainBackend({type(self.chat_model).__name__}, model={self._model!r})"

    @property
    def supports_tools(self) -> bool:
        """Whether the wrapped model implements ``bind_tools``."""
        return type(self.chat_model).bind_tools is not BaseChatModel.bind_tools

    def with_callbacks(self, callbacks: Callbacks) -> LangChainBackend:
        """A view of this backend whose calls run with ``callbacks`` (e.g. a parent run's child
        callback manager). The view shares the wrapped model; the original is unchanged."""
        view = copy.copy(self)
        view._callbacks = callbacks
        return view

    async def aclose(self) -> None:
        """Nothing to release: the wrapped model owns its clients."""

    # ------------------------------------------------------------------ calls

    async def complete(self, request: ChatRequest, *, n: int = 1) -> list[Completion]:
        """Answer ``request`` once (LangChain models return one choice; the pool fans out)."""
        runnable, kwargs, structured = self._prepare(request.params)
        messages = _messages(request)
        started = time.perf_counter()
        try:
            output = await runnable.ainvoke(messages, config=self._config(), **kwargs)
        except PolyfuseError:
            raise
        except Exception as exc:
            raise backend_error(exc, endpoint=self.name) from exc
        message = self._message(output, structured)
        return [self._completion(message, structured, time.perf_counter() - started)]

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """Stream one answer through the model's ``astream``; closing the iterator closes it.

        Structured-output requests are answered in one piece (the JSON is validated first).
        """
        if request.params.response_format is not None:
            completion = (await self.complete(request))[0]
            yield _delta(completion)
            return
        runnable, kwargs, _ = self._prepare(request.params)
        usage: UsageMetadata | None = None
        finish: str | None = None
        model: str | None = None
        saw_tools = False
        chunks = runnable.astream(_messages(request), config=self._config(), **kwargs)
        try:
            async for chunk in chunks:
                if not isinstance(chunk, AIMessageChunk):
                    raise ProtocolError(
                        f"streamed a {type(chunk).__name__}, expected AIMessageChunk",
                        endpoint=self.name,
                    )
                if chunk.usage_metadata:
                    usage = add_usage(usage, chunk.usage_metadata)
                finish = _finish_reason(chunk.response_metadata) or finish
                model = chunk.response_metadata.get("model_name") or model
                pieces = _tool_pieces(chunk)
                saw_tools = saw_tools or bool(pieces)
                text = chunk.text
                if text or pieces:
                    yield StreamDelta(content=text or None, tool_calls=pieces or None)
        except PolyfuseError:
            raise
        except Exception as exc:
            raise backend_error(exc, endpoint=self.name) from exc
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        yield StreamDelta(
            finish_reason=finish or ("tool_calls" if saw_tools else "stop"),
            usage=usage_from_metadata(usage),
            model=model or self._model,
        )

    # ------------------------------------------------------------------ request translation

    def _config(self) -> RunnableConfig:
        config: RunnableConfig = {"tags": list(self._tags)}
        if self._callbacks is not None:
            config["callbacks"] = self._callbacks
        return config

    def _prepare(self, params: SamplingParams) -> tuple[Runnable[Any, Any], dict[str, Any], bool]:
        """The runnable to call, its call kwargs, and whether it returns structured output."""
        model = self._configured(params)
        kwargs: dict[str, Any] = {}
        if params.stop:
            kwargs["stop"] = [params.stop] if isinstance(params.stop, str) else list(params.stop)
        if params.response_format is not None:
            return self._structured(model, params.response_format), kwargs, True
        if params.tools and params.tool_choice != "none":
            return self._with_tools(model, params.tools, params.tool_choice), kwargs, False
        return model, kwargs, False

    def _configured(self, params: SamplingParams) -> BaseChatModel:
        fields = type(self.chat_model).model_fields
        update: dict[str, Any] = {}
        for param, names in _FIELD_NAMES.items():
            value = getattr(params, param)
            if value is None:
                continue
            target = next((n for n in names if n in fields), None)
            if target is None:
                logger.debug("%s has no field for %s; left to the model", self.name, param)
                continue
            update[target] = value
        if not update:
            return self.chat_model
        key = tuple(sorted(update.items()))
        variant = self._variants.get(key)
        if variant is None:
            variant = self.chat_model.model_copy(update=update)
            if len(self._variants) >= 16:
                self._variants.pop(next(iter(self._variants)))
            self._variants[key] = variant
        return variant

    def _with_tools(
        self, model: BaseChatModel, tools: list[dict[str, Any]], choice: str | dict[str, Any] | None
    ) -> Runnable[Any, Any]:
        tool_choice: str | None
        if isinstance(choice, dict):
            tool_choice = (choice.get("function") or {}).get("name")
        elif choice == "required":
            tool_choice = "any"
        else:
            tool_choice = choice
        try:
            if tool_choice is None:
                return model.bind_tools(tools)
            return model.bind_tools(tools, tool_choice=tool_choice)
        except NotImplementedError:
            raise InvalidRequestError(
                f"{self.name} ({type(model).__name__}) does not support tool calling; "
                "use candidates that implement bind_tools, or do not bind tools"
            ) from None

    def _structured(
        self, model: BaseChatModel, response_format: dict[str, Any]
    ) -> Runnable[Any, Any]:
        kind = response_format.get("type")
        try:
            if kind == "json_schema":
                spec = response_format.get("json_schema") or {}
                schema = dict(spec.get("schema") or {"type": "object"})
                schema.setdefault("title", spec.get("name") or "response")
                if spec.get("description"):
                    schema.setdefault("description", spec["description"])
                return model.with_structured_output(schema, method="json_schema", include_raw=True)
            if kind == "json_object":
                return model.with_structured_output(
                    _ANY_OBJECT, method="json_mode", include_raw=True
                )
        except (NotImplementedError, ValueError, TypeError) as exc:
            raise InvalidRequestError(
                f"{self.name} ({type(model).__name__}) cannot produce {kind} output: {exc}"
            ) from exc
        raise InvalidRequestError(
            f"response_format type {kind!r} is not supported for LangChain models; "
            "use 'json_schema' or 'json_object'"
        )

    # ------------------------------------------------------------------ answer translation

    def _message(self, output: Any, structured: bool) -> AIMessage:
        raw = output.get("raw") if structured and isinstance(output, dict) else output
        if not isinstance(raw, AIMessage):
            raise ProtocolError(
                f"returned a {type(raw).__name__}, expected an AIMessage", endpoint=self.name
            )
        if not structured:
            return raw
        parsed = output.get("parsed")
        if parsed is None:
            if raw.text.strip():
                return raw
            error = output.get("parsing_error")
            raise ProtocolError(
                f"no structured answer could be parsed: {error}", endpoint=self.name
            )
        if isinstance(parsed, BaseModel):
            text = parsed.model_dump_json()
        else:
            text = json.dumps(parsed, ensure_ascii=False)
        return raw.model_copy(update={"content": text, "tool_calls": [], "invalid_tool_calls": []})

    def _completion(self, message: AIMessage, structured: bool, latency_s: float) -> Completion:
        calls: list[ToolCall] = [
            ToolCall(
                id=call.get("id") or f"call_{i}",
                function=ToolCallFunction(
                    name=call["name"], arguments=json.dumps(call["args"], ensure_ascii=False)
                ),
            )
            for i, call in enumerate(message.tool_calls)
        ]
        calls.extend(
            ToolCall(
                id=bad.get("id") or f"call_invalid_{i}",
                function=ToolCallFunction(
                    name=bad.get("name") or "", arguments=bad.get("args") or ""
                ),
            )
            for i, bad in enumerate(message.invalid_tool_calls)
        )
        finish = _finish_reason(message.response_metadata)
        if finish is None:
            finish = "tool_calls" if calls else "stop"
        text = message.text
        return Completion(
            content=text if (text or not calls) else None,
            tool_calls=calls or None,
            finish_reason=finish,
            usage=usage_from_metadata(message.usage_metadata),
            model=message.response_metadata.get("model_name") or self._model,
            latency_s=latency_s,
        )


def model_name(model: BaseChatModel) -> str:
    """The name a LangChain chat model reports for itself (``model_name``, ``model``, its type)."""
    for attr in ("model_name", "model", "model_id", "deployment_name"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return model._llm_type


def _messages(request: ChatRequest) -> list[BaseMessage]:
    return convert_to_messages(request.wire_messages)


def _finish_reason(metadata: dict[str, Any]) -> str | None:
    for key in _FINISH_KEYS:
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return _FINISH_NAMES.get(value, value)
    return None


def _tool_pieces(chunk: AIMessageChunk) -> list[dict[str, Any]]:
    pieces: list[dict[str, Any]] = []
    for position, piece in enumerate(chunk.tool_call_chunks):
        index = piece.get("index")
        function: dict[str, Any] = {"arguments": piece.get("args") or ""}
        if piece.get("name"):
            function["name"] = piece["name"]
        item: dict[str, Any] = {
            "index": index if isinstance(index, int) else position,
            "function": function,
        }
        if piece.get("id"):
            item["id"] = piece["id"]
        pieces.append(item)
    return pieces


def _delta(completion: Completion) -> StreamDelta:
    return StreamDelta(
        content=completion.content,
        tool_calls=[
            {"index": i, "id": c.id, "function": c.function.model_dump()}
            for i, c in enumerate(completion.tool_calls or ())
        ]
        or None,
        finish_reason=completion.finish_reason,
        usage=completion.usage,
        model=completion.model,
    )


def backend_error(exc: BaseException, *, endpoint: str) -> BackendError:
    """The polyfuse error that best describes a framework or SDK exception.

    An exception with an HTTP ``status_code`` (OpenAI, Anthropic, httpx and most SDKs) maps to
    the matching :class:`~polyfuse.errors.APIStatusError`; timeouts to ``APITimeoutError``;
    connection failures to ``APIConnectionError``; anything else to ``BackendError``.
    """
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    text = str(exc) or type(exc).__name__
    if isinstance(status, int) and not isinstance(status, bool):
        return status_error_for(status, text, endpoint=endpoint)
    names = [cls.__name__.lower() for cls in type(exc).__mro__]
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or any("timeout" in n for n in names):
        return APITimeoutError(f"timed out ({type(exc).__name__}: {text})", endpoint=endpoint)
    if isinstance(exc, ConnectionError) or any("connect" in n for n in names):
        return APIConnectionError(f"{type(exc).__name__}: {text}", endpoint=endpoint)
    return BackendError(f"{type(exc).__name__}: {text}", endpoint=endpoint)

"""``OpenAIEndpoint``: an OpenAI-compatible chat-completions server, over lean HTTP/1.1."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .._validation import describe_validation_error
from ..errors import (
    APIConnectionError,
    APITimeoutError,
    BackendError,
    InvalidRequestError,
    ProtocolError,
    status_error_for,
)
from ..messages import ChatRequest, SamplingParams
from ._http import Channel, Reply, Timeouts, TransportError, open_channel, split_url
from ._wire import error_message, parse_response, parse_sse_data, retry_after_seconds
from .base import Completion, StreamDelta

__all__ = ["EndpointConfig", "OpenAIEndpoint"]

logger = logging.getLogger("polyfuse")
T = TypeVar("T")


class EndpointConfig(BaseModel):
    """Settings of one OpenAI-compatible endpoint (validated; see :class:`OpenAIEndpoint`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    model: str = Field(min_length=1)
    api_key: SecretStr | None = None
    name: str | None = None
    supports_n: bool | None = None
    max_concurrency: int = Field(default=64, ge=1)
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float | None = Field(default=300.0, gt=0)
    total_timeout: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=2, ge=0)
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=20.0, ge=0)
    max_retry_after: float = Field(default=60.0, ge=0)
    stream_usage: bool = True
    headers: dict[str, str] = Field(default_factory=dict)
    params: SamplingParams = SamplingParams()

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        try:
            parsed = split_url(url)
        except (ValueError, TypeError):
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"{value!r} is not an http(s) URL; pass the server's base URL, "
                "e.g. 'http://127.0.0.1:8000/v1'"
            )
        if url.endswith("/chat/completions"):
            url = url[: -len("/chat/completions")]
        return url


@dataclass(slots=True)
class _LoopState:
    channel: Channel
    semaphore: asyncio.Semaphore


class OpenAIEndpoint:
    """A chat model behind an OpenAI-compatible ``/chat/completions`` API.

    Works with vLLM, SGLang, llama.cpp, Ollama, TGI, ``transformers serve`` and hosted APIs.
    Holds one pool of keep-alive connections per event loop (a pool never crosses loops; see
    ``_http.py`` for why it is not httpx's client, which is used where a proxy applies),
    bounds concurrent requests with ``max_concurrency``, retries 429/5xx/connection failures
    with exponential backoff and jitter (honouring ``Retry-After``), and raises
    :mod:`polyfuse.errors` types.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name sent in each request.
        api_key: sent as a bearer token; stored as :class:`~pydantic.SecretStr`, never logged.
        name: a label for results and logs (default: the model name).
        supports_n: whether one request with ``n`` returns ``n`` choices; ``None`` learns it.
        max_concurrency: requests in flight at once to this endpoint (per event loop).
        connect_timeout / read_timeout / total_timeout: seconds; ``total_timeout`` bounds each
            attempt end to end.
        max_retries: retries after the first attempt for retryable failures.
        params: default sampling parameters for this endpoint (e.g. its temperature).
    """

    def __init__(self, base_url: str, model: str, **settings: Any) -> None:
        if isinstance(settings.get("params"), Mapping):
            settings["params"] = SamplingParams.model_validate(settings["params"])
        try:
            self.config = EndpointConfig(base_url=base_url, model=model, **settings)
        except ValidationError as exc:
            details = describe_validation_error(exc)
            raise InvalidRequestError(f"invalid endpoint settings: {details}") from None
        self.supports_n: bool | None = self.config.supports_n
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._url = self.config.base_url + "/chat/completions"
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update(self.config.headers)
        if self.config.api_key is not None:
            headers["authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        self._headers = headers
        self._timeouts = Timeouts(
            connect=self.config.connect_timeout,
            read=self.config.read_timeout,
            write=self.config.read_timeout,
        )

    @property
    def name(self) -> str:
        """The label used in results and logs."""
        return self.config.name or self.config.model

    @property
    def model(self) -> str:
        """The model name sent to the server."""
        return self.config.model

    @property
    def base_url(self) -> str:
        """The API root."""
        return self.config.base_url

    def __repr__(self) -> str:
        return (
            f"OpenAIEndpoint(base_url={self.base_url!r}, model={self.model!r}, name={self.name!r})"
        )

    def with_options(self, **changes: Any) -> OpenAIEndpoint:
        """A copy with some settings changed (the copy has its own connection pools)."""
        data = self.config.model_dump()
        if self.config.api_key is not None:
            data["api_key"] = self.config.api_key
        data.update(changes)
        base_url = data.pop("base_url")
        model = data.pop("model")
        return OpenAIEndpoint(base_url, model, **data)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            limit = self.config.max_concurrency
            channel = open_channel(self._url, self._headers, self._timeouts, limit)
            state = _LoopState(channel=channel, semaphore=asyncio.Semaphore(limit))
            self._states[loop] = state
        return state

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        state = self._states.pop(loop, None)
        if state is not None:
            await state.channel.aclose()

    # ------------------------------------------------------------------ requests

    def _body(self, request: ChatRequest, *, n: int, stream: bool) -> bytes:
        params = self.config.params.merged(request.params) if self._has_defaults else request.params
        head: dict[str, Any] = {"model": self.config.model}
        head.update(params.to_body())
        if n != 1:
            head["n"] = n
        if stream:
            head["stream"] = True
            if self.config.stream_usage:
                head["stream_options"] = {"include_usage": True}
        encoded = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
        return (encoded[:-1] + ',"messages":' + request.messages_json + "}").encode()

    @property
    def _has_defaults(self) -> bool:
        return bool(self.config.params.model_fields_set)

    async def complete(self, request: ChatRequest, *, n: int = 1) -> list[Completion]:
        """Send one request asking for ``n`` choices; return the choices the server gave."""
        body = self._body(request, n=n, stream=False)
        state = self._state()
        async with state.semaphore:
            # The retry loop is inline (not a helper taking a callback) on purpose: every
            # coroutine frame between here and the socket is held by each request in flight.
            number = 0
            while True:
                try:
                    return await self._post(state.channel, body, n)
                except BackendError as exc:
                    await self._pause_before_retry(exc, number)
                    number += 1

    async def _post(self, channel: Channel, body: bytes, n: int) -> list[Completion]:
        started = time.perf_counter()
        try:
            exchange = _exchange(channel, body)
            if self.config.total_timeout is not None:
                reply, content = await self._bounded(exchange)
            else:
                reply, content = await exchange
        except TransportError as exc:
            raise _transport_error(exc, self.name) from None
        if reply.status >= 400:
            raise self._status_error(reply, content)
        return parse_response(
            content, n=n, endpoint=self.name, latency_s=time.perf_counter() - started
        )

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        total = self.config.total_timeout
        if total is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, total)
        except asyncio.TimeoutError:
            raise APITimeoutError(
                f"no complete answer within total_timeout={total}s", endpoint=self.name
            ) from None

    def _status_error(self, reply: Reply, body: bytes) -> BackendError:
        message, decoded = error_message(body, reply.status)
        return status_error_for(
            reply.status,
            message,
            endpoint=self.name,
            body=decoded,
            retry_after=retry_after_seconds(reply.header("retry-after")),
        )

    async def _pause_before_retry(self, exc: BackendError, number: int) -> None:
        """Sleep before retry ``number + 1`` after attempt ``number`` failed with ``exc``;
        re-raise ``exc`` when it is not retryable or the retries are spent."""
        retries = self.config.max_retries
        if not exc.retryable or number >= retries:
            raise exc
        delay = self._backoff(number, getattr(exc, "retry_after", None))
        if delay is None:
            raise exc
        logger.info(
            "%s: %s; retry %d/%d in %.2fs",
            self.name,
            type(exc).__name__,
            number + 1,
            retries,
            delay,
        )
        await asyncio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float | None:
        if retry_after is not None:
            if retry_after > self.config.max_retry_after:
                return None  # the server asks for longer than we are willing to wait
            return retry_after
        ceiling = min(self.config.backoff_max, self.config.backoff_base * (2**attempt))
        return ceiling * (0.5 + random.random() / 2)

    # ------------------------------------------------------------------ streaming

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """Stream one answer. Closing the iterator closes the HTTP stream (the server stops).

        Connection failures and retryable statuses are retried until the first event arrives;
        after that, errors propagate.
        """
        body = self._body(request, n=1, stream=True)
        state = self._state()
        async with state.semaphore:
            for number in range(self.config.max_retries + 1):
                delivered = False
                try:
                    async for delta in self._stream_once(state.channel, body):
                        delivered = True
                        yield delta
                    return
                except BackendError as exc:
                    if delivered or not exc.retryable or number >= self.config.max_retries:
                        raise
                    delay = self._backoff(number, getattr(exc, "retry_after", None))
                    if delay is None:
                        raise
                    await asyncio.sleep(delay)

    async def _stream_once(self, channel: Channel, body: bytes) -> AsyncIterator[StreamDelta]:
        saw_done = False
        saw_finish = False
        try:
            reply = await channel.post(body)
            try:
                if reply.status >= 400:
                    raise self._status_error(reply, await reply.read())
                content_type = reply.header("content-type") or ""
                if "text/event-stream" not in content_type:
                    raise ProtocolError(
                        f"expected an SSE stream, got content-type {content_type!r}",
                        endpoint=self.name,
                    )
                async for line in reply.lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event names
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        saw_done = True
                        break
                    delta = parse_sse_data(payload, endpoint=self.name)
                    if delta is not None:
                        if delta.finish_reason:
                            saw_finish = True
                        yield delta
            finally:
                await reply.aclose()
        except TransportError as exc:
            raise _transport_error(exc, self.name) from None
        if not saw_done and not saw_finish:
            raise ProtocolError("the stream ended before the answer finished", endpoint=self.name)


async def _exchange(channel: Channel, body: bytes) -> tuple[Reply, bytes]:
    """POST ``body`` and read the whole response."""
    reply = await channel.post(body)
    try:
        return reply, await reply.read()
    finally:
        await reply.aclose()


def _transport_error(exc: TransportError, endpoint: str) -> BackendError:
    """The polyfuse error for a failure below HTTP statuses."""
    if exc.timeout:
        return APITimeoutError(f"timed out ({exc.kind})", endpoint=endpoint)
    text = str(exc)
    message = f"{exc.kind}: {text}" if text else exc.kind
    return APIConnectionError(message, endpoint=endpoint)

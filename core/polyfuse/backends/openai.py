"""``OpenAIEndpoint``: an OpenAI-compatible chat-completions server, over lean HTTP/1.1."""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .._validation import describe_validation_error
from ..errors import APITimeoutError, BackendError, InvalidRequestError, ProtocolError
from ..messages import ChatRequest, SamplingParams
from ._http import Channel, Reply, Timeouts, TransportError, check_header, split_url
from ._policy import RetryPolicy, backend_error, status_error
from ._tls import CertTypes, VerifyTypes
from ._wire import parse_response, parse_sse_data
from .base import Completion, StreamDelta

if TYPE_CHECKING:
    from ..transport import Transport

__all__ = ["EndpointConfig", "OpenAIEndpoint", "TimeoutLike"]

T = TypeVar("T")
_UNSET: Any = object()  # an argument left out (told apart from an explicit None)


class TimeoutLike(Protocol):
    """Per-phase timeouts, as ``httpx.Timeout`` holds them (seconds, None for no limit)."""

    @property
    def connect(self) -> float | None: ...

    @property
    def read(self) -> float | None: ...

    @property
    def write(self) -> float | None: ...


class EndpointConfig(BaseModel):
    """Settings of one OpenAI-compatible endpoint (validated; see :class:`OpenAIEndpoint`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    model: str = Field(min_length=1)
    api_key: SecretStr | None = None
    name: str | None = None
    supports_n: bool | None = None
    max_concurrency: int = Field(default=64, ge=1)
    connect_timeout: float | None = Field(default=10.0, gt=0)
    read_timeout: float | None = Field(default=300.0, gt=0)
    write_timeout: float | None = Field(default=None, gt=0)
    total_timeout: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=2, ge=0)
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=20.0, ge=0)
    max_retry_after: float = Field(default=60.0, ge=0)
    stream_usage: bool = True
    trust_env: bool = True
    headers: dict[str, str] = Field(default_factory=dict)
    params: SamplingParams = SamplingParams()

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            check_header(name, text)
        return value

    @field_validator("api_key")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            if any(c in secret for c in "\r\n\0") or not secret.isascii():
                raise ValueError(
                    "the API key contains a line break, NUL or non-ASCII character; "
                    "copy it again without surrounding text"
                )
        return value

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
    :mod:`polyfuse.transport`), bounds concurrent requests with ``max_concurrency``, retries
    429/5xx/connection failures with exponential backoff and jitter (honouring
    ``Retry-After``), and raises :mod:`polyfuse.errors` types.

    **Retry rule:** a request that reached a connection is sent again only as one of
    ``max_retries`` (each retry is logged, waits a backoff, and is counted in
    ``Completion.retries`` / the candidate's ``retries``); an idle keep-alive connection that
    the server had already closed is found out before anything is written on it and replaced.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name sent in each request.
        api_key: sent as a bearer token; stored as :class:`~pydantic.SecretStr`, never logged.
        name: a label for results and logs (default: the model name).
        supports_n: whether one request with ``n`` returns ``n`` choices; ``None`` learns it.
        max_concurrency: requests in flight at once to this endpoint (per event loop).
        timeout: httpx's meaning: one number of seconds for connecting, writing and each read,
            ``None`` for no limits, or an object with ``connect``/``read``/``write`` attributes
            (such as ``httpx.Timeout``). The ``*_timeout`` arguments below, when given, win.
        connect_timeout: seconds to connect (default 10).
        read_timeout: seconds between two reads of the answer (default 300).
        write_timeout: seconds to write the request (default: ``read_timeout``).
        total_timeout: bounds each attempt end to end (default: none).
        max_retries: retries after the first attempt for retryable failures (default 2).
        backoff_base / backoff_max: the exponential backoff's first step and ceiling, seconds.
        max_retry_after: the longest ``Retry-After`` honoured; a longer one gives up at once.
        stream_usage: ask streams for a final usage chunk (``stream_options``).
        headers: extra request headers (no line breaks: header injection is refused).
        params: default sampling parameters for this endpoint (e.g. its temperature).
        verify: TLS verification: ``True`` (certifi's CA bundle, or ``SSL_CERT_FILE`` /
            ``SSL_CERT_DIR``), ``False``, a CA bundle file or directory, or an
            :class:`ssl.SSLContext`.
        cert: a client certificate: a PEM file with certificate and key, ``(certfile,
            keyfile)`` or ``(certfile, keyfile, password)``.
        trust_env: honour ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` and
            ``SSL_CERT_FILE``/``SSL_CERT_DIR``, as httpx does.
        transport: where requests go (default :class:`polyfuse.transport.HTTPTransport` with
            ``verify``/``cert``/``trust_env``); :class:`polyfuse.transport.MockTransport`
            answers from a function in tests.

    Raises:
        InvalidRequestError: a setting is invalid (the message names it).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | SecretStr | None = None,
        name: str | None = None,
        supports_n: bool | None = None,
        max_concurrency: int = 64,
        timeout: float | TimeoutLike | None = _UNSET,
        connect_timeout: float | None = _UNSET,
        read_timeout: float | None = _UNSET,
        write_timeout: float | None = _UNSET,
        total_timeout: float | None = None,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        max_retry_after: float = 60.0,
        stream_usage: bool = True,
        headers: Mapping[str, str] | None = None,
        params: SamplingParams | Mapping[str, Any] | None = None,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        transport: Transport | None = None,
    ) -> None:
        timeouts = _timeouts_from(timeout)
        for key, value in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("write_timeout", write_timeout),
        ):
            if value is not _UNSET:
                timeouts[key] = value
        settings: dict[str, Any] = {
            "api_key": api_key,
            "name": name,
            "supports_n": supports_n,
            "max_concurrency": max_concurrency,
            "total_timeout": total_timeout,
            "max_retries": max_retries,
            "backoff_base": backoff_base,
            "backoff_max": backoff_max,
            "max_retry_after": max_retry_after,
            "stream_usage": stream_usage,
            "trust_env": trust_env,
            "headers": dict(headers or {}),
            **timeouts,
        }
        if params is not None:
            settings["params"] = (
                SamplingParams.model_validate(params) if isinstance(params, Mapping) else params
            )
        try:
            self.config = EndpointConfig(base_url=base_url, model=model, **settings)
        except ValidationError as exc:
            details = describe_validation_error(exc)
            raise InvalidRequestError(f"invalid endpoint settings: {details}") from None
        self.supports_n: bool | None = self.config.supports_n
        self._verify = verify
        self._cert = cert
        if transport is None:
            from ..transport import HTTPTransport

            transport = HTTPTransport(
                verify=verify,
                cert=cert,
                trust_env=self.config.trust_env,
                max_connections=self.config.max_concurrency,
            )
        elif verify is not True or cert is not None:
            raise InvalidRequestError(
                "pass verify= and cert= to the transport, not to OpenAIEndpoint, "
                "when you give transport="
            )
        self.transport: Transport = transport
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._url = self.config.base_url + "/chat/completions"
        request_headers = {"content-type": "application/json", "accept": "application/json"}
        request_headers.update(self.config.headers)
        if self.config.api_key is not None:
            request_headers["authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        self._headers = request_headers
        read = self.config.read_timeout
        write = self.config.write_timeout
        self._timeouts = Timeouts(
            connect=self.config.connect_timeout, read=read, write=write if write else read
        )
        self._policy = RetryPolicy(
            max_retries=self.config.max_retries,
            backoff_base=self.config.backoff_base,
            backoff_max=self.config.backoff_max,
            max_retry_after=self.config.max_retry_after,
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
        """A copy with some settings changed (the copy has its own connection pools; it shares
        this endpoint's transport unless ``transport``, ``verify`` or ``cert`` is changed)."""
        data = self.config.model_dump()
        if self.config.api_key is not None:
            data["api_key"] = self.config.api_key
        if "timeout" in changes:
            for key in ("connect_timeout", "read_timeout", "write_timeout"):
                data.pop(key)
        if not ({"transport", "verify", "cert", "trust_env"} & changes.keys()):
            data["transport"] = self.transport
        elif "transport" not in changes:
            data["verify"] = self._verify
            data["cert"] = self._cert
        data.update(changes)
        base_url = data.pop("base_url")
        model = data.pop("model")
        return OpenAIEndpoint(base_url, model, **data)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            limit = self.config.max_concurrency
            channel = self.transport.open("POST", self._url, self._headers, self._timeouts)
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
        """Send one request asking for ``n`` choices; return the choices the server gave.

        Each returned completion's ``retries`` says how many times the request was sent again;
        an error raised after retries carries the count in its ``retries`` attribute.
        """
        body = self._body(request, n=n, stream=False)
        state = self._state()
        async with state.semaphore:
            # The retry loop is inline (not a helper taking a callback) on purpose: every
            # coroutine frame between here and the socket is held by each request in flight.
            number = 0
            while True:
                try:
                    completions = await self._post(state.channel, body, n)
                except BackendError as exc:
                    delay = self._policy.delay(exc, number)
                    if delay is None:
                        exc.retries = number
                        raise
                    self._policy.log(self.name, exc, number, delay)
                    await asyncio.sleep(delay)
                    number += 1
                    continue
                if number:
                    for completion in completions:
                        completion.retries = number
                return completions

    async def _post(self, channel: Channel, body: bytes, n: int) -> list[Completion]:
        started = time.perf_counter()
        try:
            exchange = _exchange(channel, body)
            if self.config.total_timeout is not None:
                reply, content = await self._bounded(exchange)
            else:
                reply, content = await exchange
        except TransportError as exc:
            raise backend_error(exc, self.name) from None
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

    def _status_error(self, reply: Reply, body: bytes | bytearray) -> BackendError:
        return status_error(reply.status, body, reply.header("retry-after"), self.name)

    # ------------------------------------------------------------------ streaming

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """Stream one answer. Closing the iterator closes the HTTP stream (the server stops).

        Connection failures and retryable statuses are retried (as counted retries) until the
        first event arrives; after that, errors propagate. The first delta's ``retries`` says
        how many times the request was sent again.
        """
        body = self._body(request, n=1, stream=True)
        state = self._state()
        async with state.semaphore:
            number = 0
            while True:
                delivered = False
                try:
                    async for delta in self._stream_once(state.channel, body):
                        if not delivered:
                            delivered = True
                            delta.retries = number
                        yield delta
                    return
                except BackendError as exc:
                    delay = None if delivered else self._policy.delay(exc, number)
                    if delay is None:
                        exc.retries = number
                        raise
                    self._policy.log(self.name, exc, number, delay)
                    await asyncio.sleep(delay)
                    number += 1

    async def _stream_once(self, channel: Channel, body: bytes) -> AsyncIterator[StreamDelta]:
        saw_done = False
        saw_finish = False
        try:
            reply = await channel.send(body)
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
            raise backend_error(exc, self.name) from None
        if not saw_done and not saw_finish:
            raise ProtocolError("the stream ended before the answer finished", endpoint=self.name)


async def _exchange(channel: Channel, body: bytes) -> tuple[Reply, bytes | bytearray]:
    """Send ``body`` and read the whole response."""
    reply = await channel.send(body)
    try:
        return reply, await reply.read()
    finally:
        await reply.aclose()


def _timeouts_from(timeout: Any) -> dict[str, float | None]:
    """``connect_timeout``/``read_timeout``/``write_timeout`` from httpx-style ``timeout=``."""
    if timeout is _UNSET:
        return {}
    if timeout is None or isinstance(timeout, (int, float)):
        value = None if timeout is None else float(timeout)
        return {"connect_timeout": value, "read_timeout": value, "write_timeout": value}
    if all(hasattr(timeout, name) for name in ("connect", "read", "write")):
        return {
            "connect_timeout": timeout.connect,
            "read_timeout": timeout.read,
            "write_timeout": timeout.write,
        }
    raise InvalidRequestError(
        f"timeout={timeout!r} is not a number of seconds, None, or an object with "
        "connect/read/write (such as httpx.Timeout)"
    )

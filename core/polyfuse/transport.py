"""One transport for every HTTP call polyfuse makes, with one retry and error policy.

:class:`HTTPTransport` is the default: polyfuse's lean HTTP/1.1 pool (``httptools`` framing,
see ``polyfuse/backends/_http.py``), TLS with httpx's meaning of ``verify`` and ``cert``, and
the environment's proxies (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) and CA
settings (``SSL_CERT_FILE``, ``SSL_CERT_DIR``) honoured as httpx honours them. Pass another
:class:`Transport` with ``transport=`` to :class:`~polyfuse.OpenAIEndpoint` (and to the other
HTTP users: the reward-model scorer, the LlamaIndex embedding, the routing
``OpenAIEmbedder``, :func:`~polyfuse.probe_endpoint` through its endpoint) to route calls elsewhere; :class:`MockTransport` answers from a function,
as ``httpx.MockTransport`` does::

    from polyfuse.transport import MockTransport, Response

    def handler(request):
        return Response(200, json={"choices": [...]})

    endpoint = OpenAIEndpoint("http://test/v1", "m", transport=MockTransport(handler))

**Retry rule** (every caller): a request whose bytes were handed to a connection is sent again
only as one of ``max_retries`` retries (counted in the result, logged, after a backoff); the one
exception is an idle keep-alive connection that the server had already closed, which is found
out before anything is written on it and replaced at once (nothing was sent).
"""

from __future__ import annotations

import asyncio
import inspect
import json as jsonlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .backends._http import Channel, Reply, Timeouts, TransportError, check_header, open_channel
from .backends._policy import RetryPolicy, backend_error, status_error
from .backends._tls import CertTypes, VerifyTypes, ssl_context
from .errors import BackendError, InvalidRequestError, ProtocolError

if TYPE_CHECKING:
    import ssl

__all__ = [
    "CertTypes",
    "Channel",
    "HTTPTransport",
    "JSONCaller",
    "MockTransport",
    "Reply",
    "Request",
    "Response",
    "RetryPolicy",
    "Timeouts",
    "Transport",
    "TransportError",
    "VerifyTypes",
    "backend_error",
    "request_json",
    "status_error",
]


class Transport(Protocol):
    """Opens channels: each sends requests with one method, URL and set of headers.

    A channel belongs to the event loop that uses it first; callers open one per loop.
    """

    def open(
        self, method: str, url: str, headers: Mapping[str, str], timeouts: Timeouts
    ) -> Channel:
        """A channel for ``method`` ``url`` with ``headers``."""
        ...

    async def aclose(self) -> None:
        """Release what the transport holds (channels close themselves with ``aclose``)."""
        ...


class HTTPTransport:
    """The default transport: polyfuse's lean HTTP/1.1 pool (httpx's client where a proxy
    applies).

    Args:
        verify: ``True`` (default CA bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), ``False``,
            a CA bundle file or directory, or an :class:`ssl.SSLContext`.
        cert: a client certificate: a PEM file with certificate and key, ``(certfile,
            keyfile)`` or ``(certfile, keyfile, password)``.
        trust_env: read proxies and CA settings from the environment, as httpx does.
        max_connections: idle keep-alive connections kept per channel.
        keepalive_expiry: seconds an idle connection is kept.

    Raises:
        InvalidRequestError: a CA bundle or certificate cannot be read.
    """

    def __init__(
        self,
        *,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        max_connections: int = 64,
        keepalive_expiry: float = 4.0,
    ) -> None:
        self.verify = verify
        self.cert = cert
        self.trust_env = trust_env
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._context: ssl.SSLContext | None = None
        if verify is not True or cert is not None:
            self._context = self._tls()  # fail at construction on an unreadable file

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                self._context = ssl_context(self.verify, self.cert, trust_env=self.trust_env)
            except ValueError as exc:
                raise InvalidRequestError(str(exc)) from None
        return self._context

    def open(
        self, method: str, url: str, headers: Mapping[str, str], timeouts: Timeouts
    ) -> Channel:
        context = self._tls() if url.lower().startswith("https:") else None
        try:
            return open_channel(
                url,
                headers,
                timeouts,
                self.max_connections,
                method=method,
                ssl_context=context,
                trust_env=self.trust_env,
                keepalive_expiry=self.keepalive_expiry,
            )
        except ValueError as exc:  # a header or URL that would split the request
            raise InvalidRequestError(str(exc)) from None

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"HTTPTransport(verify={self.verify!r}, trust_env={self.trust_env!r})"


# ------------------------------------------------------------------------------ mock


@dataclass(slots=True)
class Request:
    """What a :class:`MockTransport` handler receives."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return jsonlib.loads(self.content)


@dataclass(slots=True)
class Response:
    """An answer made by hand (for :class:`MockTransport`): a status, headers and a body.

    Pass ``json=`` to send a JSON body, or ``content=`` for raw bytes (e.g. an SSE stream).
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""
    json: Any = None

    def __post_init__(self) -> None:
        if self.json is not None:
            self.content = jsonlib.dumps(self.json).encode()
            self.headers.setdefault("content-type", "application/json")
        self.headers = {name.lower(): value for name, value in self.headers.items()}

    def header(self, name: str) -> str | None:
        """The value of a header (case-insensitive), or None."""
        return self.headers.get(name.lower())

    async def read(self) -> bytes:
        """The body."""
        return self.content

    async def lines(self) -> AsyncIterator[str]:
        """The body as text lines."""
        for line in self.content.decode("utf-8", errors="replace").splitlines():
            yield line

    async def aclose(self) -> None:
        """Nothing to release."""


Handler = Callable[[Request], "Response | Awaitable[Response]"]


class MockTransport:
    """A transport that answers every request with ``handler(request)`` (sync or async), as
    ``httpx.MockTransport`` does; raise :class:`TransportError` from it to simulate a network
    failure (e.g. ``TransportError("ConnectError", "refused")``)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def open(
        self, method: str, url: str, headers: Mapping[str, str], timeouts: Timeouts
    ) -> Channel:
        for name, value in headers.items():
            try:
                check_header(name, value)
            except ValueError as exc:
                raise InvalidRequestError(str(exc)) from None
        return _MockChannel(self.handler, method, url, dict(headers))

    async def aclose(self) -> None:
        return None


class _MockChannel:
    def __init__(self, handler: Handler, method: str, url: str, headers: dict[str, str]) -> None:
        self._handler = handler
        self._method = method
        self._url = url
        self._headers = headers

    async def send(self, body: bytes) -> Reply:
        answer = self._handler(Request(self._method, self._url, dict(self._headers), body))
        if inspect.isawaitable(answer):
            answer = await answer
        return answer

    async def aclose(self) -> None:
        return None


# ------------------------------------------------------------------------------ policy


class JSONCaller:
    """Sends JSON requests to one URL with the retry policy; one channel per event loop.

    Used by every polyfuse HTTP call that is not a chat completion (reward scorer, embeddings,
    the local model's health check).

    Args:
        transport: where requests go.
        method / url: the request line.
        endpoint: the label used in errors and logs.
        headers: extra request headers (an API key as ``authorization``).
        timeouts: connect, write and per-read seconds.
        policy: the retry policy.

    Raises:
        InvalidRequestError: a header holds a line break.
    """

    def __init__(
        self,
        transport: Transport,
        method: str,
        url: str,
        *,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.transport = transport
        self.method = method
        self.url = url
        self.endpoint = endpoint
        self.policy = policy or RetryPolicy()
        self._timeouts = timeouts or _DEFAULT_TIMEOUTS
        merged = {"accept": "application/json", "content-type": "application/json"}
        merged.update(headers or {})
        for name, value in merged.items():
            try:
                check_header(name, value)
            except ValueError as exc:
                raise InvalidRequestError(str(exc)) from None
        self._headers = merged
        self._channels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Channel] = (
            weakref.WeakKeyDictionary()
        )

    def _channel(self) -> Channel:
        loop = asyncio.get_running_loop()
        channel = self._channels.get(loop)
        if channel is None:
            channel = self.transport.open(self.method, self.url, self._headers, self._timeouts)
            self._channels[loop] = channel
        return channel

    async def __call__(self, json: Any = None) -> Any:
        """Send ``json`` (None: no body) and return the decoded JSON answer.

        Raises:
            APIStatusError (and subclasses): the server answered with an HTTP error.
            APIConnectionError / APITimeoutError: the server could not be reached in time.
            ProtocolError: the answer is not JSON.
        """
        body = b"" if json is None else jsonlib.dumps(json).encode()
        channel = self._channel()
        attempt = 0
        while True:
            try:
                return await _exchange_json(channel, body, self.endpoint)
            except BackendError as exc:
                delay = self.policy.delay(exc, attempt)
                if delay is None:
                    exc.retries = attempt
                    raise
                self.policy.log(self.endpoint, exc, attempt, delay)
                await asyncio.sleep(delay)
                attempt += 1

    async def aclose(self) -> None:
        """Close the running loop's channel."""
        channel = self._channels.pop(asyncio.get_running_loop(), None)
        if channel is not None:
            await channel.aclose()


async def request_json(
    transport: Transport,
    method: str,
    url: str,
    *,
    endpoint: str,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    timeouts: Timeouts | None = None,
    policy: RetryPolicy | None = None,
) -> Any:
    """One JSON request with the retry policy (a :class:`JSONCaller` used once)."""
    caller = JSONCaller(
        transport, method, url, endpoint=endpoint, headers=headers, timeouts=timeouts, policy=policy
    )
    try:
        return await caller(json)
    finally:
        await caller.aclose()


_DEFAULT_TIMEOUTS = Timeouts(connect=10.0, read=60.0, write=60.0)


async def _exchange_json(channel: Channel, body: bytes, endpoint: str) -> Any:
    try:
        reply = await channel.send(body)
        try:
            content = await reply.read()
        finally:
            await reply.aclose()
    except TransportError as exc:
        raise backend_error(exc, endpoint) from None
    if reply.status >= 400:
        raise status_error(reply.status, content, reply.header("retry-after"), endpoint)
    try:
        return jsonlib.loads(content)
    except ValueError:
        raise ProtocolError(
            f"the answer is not JSON: {bytes(content[:200])!r}", endpoint=endpoint
        ) from None

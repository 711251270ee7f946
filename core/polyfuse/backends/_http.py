"""The HTTP layer of every call polyfuse makes: a lean HTTP/1.1 pool, framed by ``httptools``.

Why not httpx's client for every request: a POST through ``httpx.AsyncClient`` costs about
300 µs of CPU on this machine's cores (URL parsing, header models, cookie extraction, httpcore's
pool), and httpcore's pool scans, and polls, every pooled connection for every request, so with
hundreds of requests in flight choosing a connection dominates client CPU. On a small machine
that CPU *is* the throughput (``benchmarks/README.md``).

Why ``httptools`` for the framing: it is llhttp (Node.js's parser, the one uvicorn uses),
maintained, strict (chunk sizes, Content-Length, header syntax) and written in C, so a response
is framed by one ``feed_data`` call per network read and a few Python callbacks. Measured with
``benchmarks/bench_http.py`` (simulated server in its own process, zero latency; CPU of the
client process per ``complete()``/``stream()`` call, best of 3 runs of 2,000-3,000 requests, on
2 cores shared with other work, so runs of the same code differ by up to ±30 %)::

                                   concurrency 1   concurrency 64
    hand-written framing, JSON     142-233 µs      79-93 µs
    httptools framing, JSON        145-289 µs      79-105 µs
    hand-written framing, SSE      571-762 µs      532-605 µs
    httptools framing, SSE         597-698 µs      528-582 µs

so the parser costs no measurable CPU (an SSE answer of 64 events is dominated by the JSON of
each event). The alternatives were ruled out by what they cost per request: h11 (pure Python,
under httpx) frames a response with a dozen Python-level events, and ``aiohttp``'s client
builds a session, cookie jar and multidict headers per request; httpx's client itself costs
about 300 µs per POST.

:class:`LeanChannel` is polyfuse's own small pool over asyncio protocols: a pre-encoded request
head per channel, idle keep-alive connections in a LIFO list, timeouts as loop timers.
:class:`HttpxChannel` is the same interface over ``httpx.AsyncClient``, used where an environment
proxy applies (``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` minus ``NO_PROXY``, as httpx reads
them). Both raise :class:`TransportError`, named the way httpx names its errors
(``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError``, ...).

**Retry rule.** A channel never sends a request twice. An idle keep-alive connection is checked
just before it is reused: if the server has closed it (end of stream or a reset already on the
socket, or bytes nobody asked for), it is dropped and the next one, or a new connection, carries
the request. Once a request's bytes were handed to a connection, any failure is raised to the
caller; :class:`~polyfuse.backends.openai.OpenAIEndpoint` re-sends it only as one of its
``max_retries`` (counted in the result, logged, with backoff).

httpx is imported only when it is used (a proxy): importing it costs about 20 MB of resident
memory, more than the lean client uses with 2,500 requests in flight.
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import SplitResult, urlsplit

import httptools

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = [
    "Channel",
    "HttpxChannel",
    "LeanChannel",
    "Reply",
    "Timeouts",
    "TransportError",
    "check_header",
    "environment_proxy",
    "lean_allowed",
    "open_channel",
    "split_url",
]

_HIGH_WATER = 1 << 20
_INCOMPLETE_BODY = "peer closed connection without sending complete message body"
_NO_RESPONSE = "Server disconnected without sending a response."


class TransportError(Exception):
    """A failure below HTTP status codes: connecting, writing, reading, or a malformed response.

    ``kind`` names it as httpx does: ``ConnectError``, ``ConnectTimeout``, ``WriteError``,
    ``WriteTimeout``, ``ReadError``, ``ReadTimeout``, ``RemoteProtocolError``, ...
    """

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def timeout(self) -> bool:
        """Whether a time limit ran out."""
        return self.kind.endswith("Timeout")


def split_url(url: str) -> SplitResult:
    """``urlsplit`` that also checks the port; ``ValueError`` when the URL is malformed."""
    parts = urlsplit(url)
    _ = parts.port  # raises ValueError for a port that is not a number in range
    return parts


def check_header(name: str, value: str) -> None:
    """``ValueError`` when a header could split the request (CR, LF or NUL) or is not latin-1."""
    for text, what in ((name, "name"), (value, "value")):
        if "\r" in text or "\n" in text or "\0" in text:
            raise ValueError(
                f"the header {what} {name!r} contains a line break or NUL; remove it "
                "(a header value must be one line)"
            )
    if not name or ":" in name or " " in name:
        raise ValueError(f"{name!r} is not a valid header name")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"the value of header {name!r} is not latin-1 text") from None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed to connect, to write the request, and between two reads (None: none)."""

    connect: float | None
    read: float | None
    write: float | None


class Reply(Protocol):
    """A response whose head has arrived; the body is read with :meth:`read` or :meth:`lines`."""

    status: int

    def header(self, name: str) -> str | None:
        """The value of a response header (case-insensitive), or None."""
        ...

    async def read(self) -> bytes | bytearray:
        """The whole body (the lean channel returns its receive buffer, not a copy)."""
        ...

    def lines(self) -> AsyncIterator[str]:
        """The body as text lines, without line endings (for server-sent events)."""
        ...

    async def aclose(self) -> None:
        """Release the connection (reused only when the body was read in full)."""
        ...


class Channel(Protocol):
    """Sends requests with one method, URL and set of headers; one channel per event loop."""

    async def send(self, body: bytes) -> Reply:
        """Send ``body``; return once the response head has arrived."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


# ------------------------------------------------------------------------------ proxies


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, as httpx reads it: ``HTTP_PROXY`` for
    ``http://``, ``HTTPS_PROXY`` for ``https://``, else ``ALL_PROXY``; none when ``NO_PROXY``
    exempts the host (``*``, the host, a parent domain or ``.domain``). Lower-case names win."""
    parsed = split_url(url)
    proxy = _env(f"{parsed.scheme}_proxy") or _env("all_proxy")
    if not proxy or _bypassed(parsed.hostname or "", _env("no_proxy")):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def lean_allowed(url: str, *, trust_env: bool = True) -> bool:
    """Whether :class:`LeanChannel` can serve ``url``: http(s) with no environment proxy that
    applies to its host."""
    parsed = split_url(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    return not trust_env or environment_proxy(url) is None


def _env(name: str) -> str:
    return os.environ.get(name) or os.environ.get(name.upper()) or ""


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts ``host``: ``*``, the host itself, or a parent domain."""
    if no_proxy.strip() == "*":
        return True
    host = host.lower()
    for entry in no_proxy.split(","):
        name = entry.strip().lower()
        if "://" in name:
            name = name.split("://", 1)[1]
        name = name.lstrip(".").rstrip("/")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def open_channel(
    url: str,
    headers: Mapping[str, str],
    timeouts: Timeouts,
    max_connections: int,
    *,
    method: str = "POST",
    ssl_context: ssl.SSLContext | None = None,
    trust_env: bool = True,
    keepalive_expiry: float = 4.0,
) -> Channel:
    """The channel for ``url``: lean unless an environment proxy applies."""
    if lean_allowed(url, trust_env=trust_env):
        return LeanChannel(
            url,
            headers,
            timeouts,
            method=method,
            max_keepalive=max_connections,
            keepalive_expiry=keepalive_expiry,
            ssl_context=ssl_context,
        )
    return HttpxChannel(
        url,
        headers,
        timeouts,
        max_connections,
        method=method,
        ssl_context=ssl_context,
        trust_env=trust_env,
    )


# ------------------------------------------------------------------------------ httpx


class _HttpxReply:
    __slots__ = ("_response", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    async def read(self) -> bytes | bytearray:
        import httpx

        try:
            return await self._response.aread()
        except httpx.TransportError as exc:
            raise _translated(exc) from exc

    async def lines(self) -> AsyncIterator[str]:
        import httpx

        try:
            async for line in self._response.aiter_lines():
                yield line
        except httpx.TransportError as exc:
            raise _translated(exc) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


def _translated(exc: Exception) -> TransportError:
    return TransportError(type(exc).__name__, str(exc))


class HttpxChannel:
    """:class:`Channel` over ``httpx.AsyncClient`` (used where an environment proxy applies)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        max_connections: int,
        *,
        method: str = "POST",
        ssl_context: ssl.SSLContext | None = None,
        trust_env: bool = True,
    ) -> None:
        import httpx

        for name, value in headers.items():
            check_header(name, value)
        self._url = url
        self._method = method
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=timeouts.connect, read=timeouts.read, write=timeouts.write, pool=None
            ),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers=dict(headers),
            verify=ssl_context if ssl_context is not None else True,
            trust_env=trust_env,
        )

    async def send(self, body: bytes) -> Reply:
        import httpx

        content = body if body or self._method not in ("GET", "HEAD") else None
        request = self._client.build_request(self._method, self._url, content=content)
        try:
            return _HttpxReply(await self._client.send(request, stream=True))
        except httpx.TransportError as exc:
            raise _translated(exc) from exc

    async def aclose(self) -> None:
        await self._client.aclose()


# ------------------------------------------------------------------------------ lean


class _Timeout(Exception):
    """A timer fired while waiting for the peer."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_Timeout())


def _poller(transport: asyncio.BaseTransport) -> Callable[[], bool] | None:
    """A check of whether the connection's socket has something to read now (data, end of
    stream, or an error); None where the transport has no socket to look at."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        fd: int = sock.fileno()
    except OSError:
        return None
    if not hasattr(select, "poll"):  # pragma: no cover - Windows
        return lambda: bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return lambda: bool(poller.poll(0))


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; ``httptools`` frames what arrives into a status, headers and
    body bytes, and readers wait on :meth:`more` for the next step."""

    __slots__ = (
        "body",
        "busy",
        "closed",
        "drain",
        "error",
        "framed",
        "head_done",
        "headers",
        "idle_since",
        "keep_alive",
        "loop",
        "message_done",
        "parser",
        "pausing",
        "readable",
        "reading_paused",
        "status",
        "transport",
        "waiter",
        "writing_paused",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.readable: Callable[[], bool] | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.drain: asyncio.Future[None] | None = None
        self.closed = False
        self.error: TransportError | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.idle_since = 0.0
        self.busy = False
        self.pausing = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.head_done = False
        self.message_done = False
        self.framed = False
        self.keep_alive = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports (Ray actors, uvicorn apps) implement asyncio.Transport's methods
        # without subclassing it, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        self.readable = _poller(transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # Bytes nobody asked for (a late answer, a server's goodbye): unusable.
            self.closed = True
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.error = TransportError("RemoteProtocolError", "unexpected protocol upgrade")
        except httptools.HttpParserError as exc:
            self.error = TransportError("RemoteProtocolError", f"malformed response: {exc}")
        if self.error is not None:
            self.closed = True
            self.close()
        self._wake()

    def eof_received(self) -> bool:
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()
        drain = self.drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _ended(self) -> None:
        self.closed = True
        if self.head_done and not self.message_done and not self.framed:
            self.message_done = True  # a body framed by the end of the connection
            self.keep_alive = False
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        drain = self.drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or name == b"transfer-encoding":
            self.framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.headers = []  # an interim response (100 Continue, 103): the real one follows
            return
        self.status = status
        self.head_done = True
        if status in (204, 304):
            self.framed = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.body += body
        if self.pausing and not self.reading_paused and len(self.body) > _HIGH_WATER:
            transport = self.transport
            if transport is not None:
                transport.pause_reading()
                self.reading_paused = True

    def on_message_complete(self) -> None:
        if not self.head_done:
            return  # the end of an interim response
        self.message_done = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # -- use

    def begin(self) -> None:
        """Prepare for the next response."""
        self.busy = True
        self.pausing = False
        if self.body:
            self.body = bytearray()
        self.status = 0
        self.headers = []
        self.head_done = False
        self.message_done = False
        self.framed = False
        self.keep_alive = False

    def reusable(self, now: float, expiry: float) -> bool:
        """Whether an idle connection can carry the next request: open, not expired, and with
        nothing on its socket (a server that closed it has left an end of stream or a reset
        there, which the event loop may not have read yet)."""
        transport = self.transport
        if (
            transport is None
            or self.closed
            or transport.is_closing()
            or now - self.idle_since >= expiry
        ):
            return False
        readable = self.readable
        if readable is None:
            return True
        try:
            return not readable()
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    async def write(self, data: bytes, timeout: float | None) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        transport.write(data)
        if self.writing_paused:
            self.drain = self._timed(timeout)
            await self.drain

    def more(self, timeout: float | None) -> asyncio.Future[None]:
        """A future that is done when the parser has made progress (or the stream ended).

        Readers await it directly rather than through a helper coroutine: every frame between a
        request and its socket is held by each request in flight. A reader that waits for more
        always lets the socket be read again.
        """
        if self.reading_paused:
            self.reading_paused = False
            transport = self.transport
            if transport is not None:
                transport.resume_reading()
        waiter = self.waiter = self._timed(timeout)
        return waiter

    def _timed(self, timeout: float | None) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        if timeout is not None:
            handle = self.loop.call_later(timeout, _expire, future)
            future.add_done_callback(lambda _: handle.cancel())
        return future


def _encode_head(method: str, url: str, headers: Mapping[str, str]) -> tuple[bytes, bool]:
    """The request head up to the body's length, and whether it is sent over TLS."""
    parsed = split_url(url)
    host_name = parsed.hostname or ""
    host = host_name.encode("idna") if not host_name.isascii() else host_name.encode()
    if b":" in host:
        host = b"[" + host + b"]"  # IPv6 literal
    if parsed.port is not None:
        host += b":%d" % parsed.port
    target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    if any(c in target for c in "\r\n \0"):
        raise ValueError(f"the URL path {target!r} contains a space or line break")
    lines = [method.encode("ascii") + b" " + target.encode("ascii") + b" HTTP/1.1"]
    lines.append(b"Host: " + host)
    for name, value in headers.items():
        check_header(name, value)
        if name.lower() not in ("host", "content-length", "transfer-encoding"):
            lines.append(f"{name}: {value}".encode("latin-1"))
    return b"\r\n".join(lines) + b"\r\nContent-Length: ", parsed.scheme == "https"


class LeanChannel:
    """:class:`Channel` over HTTP/1.1 framed by ``httptools``, with keep-alive reuse.

    Args:
        url: the full URL requests are sent to.
        headers: request headers sent with every request (Host and Content-Length are added).
        timeouts: connect, write and per-read timeouts.
        method: the HTTP method of every request.
        max_keepalive: idle connections kept for reuse.
        keepalive_expiry: seconds an idle connection is kept; below common server keep-alive
            timeouts (uvicorn's is 5 s), so that a reused connection is rarely stale.
        ssl_context: the TLS settings for ``https`` URLs (default: the system's verification
            with certifi's CA bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``).

    Raises:
        ValueError: a header name or value, or the URL, would split the request.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        *,
        method: str = "POST",
        max_keepalive: int = 64,
        keepalive_expiry: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parsed = split_url(url)
        self._head, self._https = _encode_head(method, url, headers)
        self._host = parsed.hostname or ""
        self._port = parsed.port or (443 if self._https else 80)
        self._timeouts = timeouts
        self._max_keepalive = max_keepalive
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: list[_Connection] = []
        self._closed = False

    async def send(self, body: bytes) -> Reply:
        if self._closed:
            raise TransportError("ConnectError", "the connection pool is closed")
        payload = b"%b%d\r\n\r\n%b" % (self._head, len(body), body)
        now = time.monotonic()
        idle = self._idle
        conn: _Connection | None = None
        while idle:
            candidate = idle.pop()
            if candidate.reusable(now, self._expiry):
                conn = candidate
                break
            candidate.close()  # closed by the server, or expired: nothing was sent on it
        if conn is None:
            conn = await self._connect()
        return await self._exchange(conn, payload)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if self._https:
            if self._ssl_context is None:
                from ._tls import ssl_context

                self._ssl_context = ssl_context()
            context = self._ssl_context
        connecting = loop.create_connection(
            lambda: _Connection(loop),
            self._host,
            self._port,
            ssl=context,
            server_hostname=self._host if context is not None else None,
        )
        try:
            if sys.version_info >= (3, 11):
                # asyncio.timeout needs no extra task (wait_for makes one per connection,
                # which is felt when hundreds of connections open at once).
                async with asyncio.timeout(self._timeouts.connect):
                    _, conn = await connecting
            else:  # pragma: no cover - Python 3.10
                _, conn = await asyncio.wait_for(connecting, self._timeouts.connect)
        except asyncio.TimeoutError:
            raise TransportError(
                "ConnectTimeout", f"connecting to {self._host}:{self._port} timed out"
            ) from None
        except OSError as exc:  # ssl.SSLError included
            reason = str(exc) or type(exc).__name__
            raise TransportError(
                "ConnectError", f"cannot connect to {self._host}:{self._port}: {reason}"
            ) from exc
        return conn

    async def _exchange(self, conn: _Connection, payload: bytes) -> Reply:
        timeouts = self._timeouts
        conn.begin()
        try:
            try:
                await conn.write(payload, timeouts.write)
            except _Timeout:
                raise TransportError("WriteTimeout", "writing the request timed out") from None
            except OSError as exc:
                raise TransportError("WriteError", str(exc) or type(exc).__name__) from None
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                if conn.closed:
                    raise TransportError("RemoteProtocolError", _NO_RESPONSE)
                try:
                    await conn.more(timeouts.read)
                except _Timeout:
                    raise TransportError(
                        "ReadTimeout", "timed out waiting for the response"
                    ) from None
            return _LeanReply(self, conn, timeouts.read)
        except BaseException:
            conn.close()
            raise

    def _release(self, conn: _Connection) -> None:
        conn.busy = False
        if (
            self._closed
            or len(self._idle) >= self._max_keepalive
            or conn.closed
            or not conn.keep_alive
        ):
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def aclose(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class _LeanReply:
    """A response read from a :class:`_Connection`."""

    __slots__ = ("_channel", "_conn", "_done", "_timeout", "status")

    def __init__(self, channel: LeanChannel, conn: _Connection, timeout: float | None) -> None:
        self._channel = channel
        self._conn = conn
        self._timeout = timeout
        self._done = False
        self.status = conn.status

    def header(self, name: str) -> str | None:
        key = name.lower().encode("latin-1")
        values = [value for header, value in self._conn.headers if header == key]
        if not values:
            return None
        return b", ".join(values).decode("latin-1")

    async def _wait(self) -> None:
        """Wait for the parser to make progress; raise on a malformed or cut-off body."""
        conn = self._conn
        if conn.error is not None:
            raise conn.error
        if conn.closed:
            raise TransportError("RemoteProtocolError", _INCOMPLETE_BODY)
        try:
            await conn.more(self._timeout)
        except _Timeout:
            raise TransportError("ReadTimeout", "timed out reading the response") from None

    async def read(self) -> bytes | bytearray:
        conn = self._conn
        try:
            while not conn.message_done:
                await self._wait()
            body = conn.body
            conn.body = bytearray()
            return body  # the buffer itself, not a copy: memory stays at one body
        finally:
            await self.aclose()

    async def lines(self) -> AsyncIterator[str]:
        conn = self._conn
        conn.pausing = True  # a slow reader holds at most about _HIGH_WATER beyond one line
        while True:
            buffer = conn.body
            end = buffer.rfind(b"\n")
            if end >= 0:
                block = bytes(buffer[:end])
                del buffer[: end + 1]
                for line in block.split(b"\n"):
                    yield (line[:-1] if line.endswith(b"\r") else line).decode(
                        "utf-8", errors="replace"
                    )
                continue
            if conn.message_done:
                if buffer:
                    tail = bytes(buffer)
                    buffer.clear()
                    yield tail.rstrip(b"\r").decode("utf-8", errors="replace")
                return
            await self._wait()

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        conn = self._conn
        if not conn.message_done and not conn.closed and conn.error is None:
            # The reader stopped early (an SSE stream read up to [DONE]): the terminating chunk
            # may be on the socket already; one turn of the loop saves the connection when it is.
            await asyncio.sleep(0)
        if conn.message_done and conn.error is None:
            conn.body.clear()
            self._channel._release(conn)
        else:
            conn.close()

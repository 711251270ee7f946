"""The HTTP layer of :class:`~polyfuse.backends.openai.OpenAIEndpoint`: lean HTTP/1.1 by default.

Why not httpx's client for every request: a POST through ``httpx.AsyncClient`` costs about
300 µs of CPU on this machine's cores (URL parsing, header models, cookie extraction, httpcore's
pool), against about 50 µs for the same bytes written and read by hand; and httpcore's pool
scans, and polls, every pooled connection for every request, so with hundreds of requests in
flight choosing a connection dominates client CPU. On a small machine that CPU *is* the
throughput (``benchmarks/README.md``).

:class:`LeanChannel` speaks HTTP/1.1 over asyncio protocols: a pre-encoded request head per
endpoint, idle keep-alive connections in a LIFO list, responses framed with a few ``bytes``
operations, timeouts as loop timers. :class:`HttpxChannel` is the same interface over
``httpx.AsyncClient``; :func:`open_channel` picks it where an environment proxy applies (httpx
honours proxies, the lean client does not). Both raise :class:`TransportError`, named the way
httpx names its errors (``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError``, ...).

httpx is imported only when it is used (a proxy, an ``https`` endpoint's CA bundle): importing
it costs about 20 MB of resident memory, more than the lean client uses with 2,500 requests
in flight.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import SplitResult, urlsplit

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
    "lean_allowed",
    "open_channel",
    "split_url",
]

_MAX_HEAD = 64 * 1024
_HIGH_WATER = 1 << 20
_LOW_WATER = 1 << 18
_INCOMPLETE_BODY = "peer closed connection without sending complete message body"


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

    async def read(self) -> bytes:
        """The whole body."""
        ...

    def lines(self) -> AsyncIterator[str]:
        """The body as text lines, without line endings (for server-sent events)."""
        ...

    async def aclose(self) -> None:
        """Release the connection (reused only when the body was read in full)."""
        ...


class Channel(Protocol):
    """POSTs to one endpoint URL; one channel per endpoint and event loop."""

    async def post(self, body: bytes) -> Reply:
        """Send a JSON body; return once the response head has arrived."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


def lean_allowed(url: str, *, trust_env: bool = True) -> bool:
    """Whether :class:`LeanChannel` can serve ``url``: http(s) with no environment proxy that
    applies to its host."""
    parsed = split_url(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    if not trust_env:
        return True
    if not (_env(f"{parsed.scheme}_proxy") or _env("all_proxy")):
        return True
    return _bypassed(parsed.hostname, _env("no_proxy"))


def _env(name: str) -> str:
    return os.environ.get(name) or os.environ.get(name.upper()) or ""


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts ``host``: ``*``, the host itself, or a parent domain (the
    rules of ``urllib.request.proxy_bypass_environment``, which is not imported for this)."""
    if no_proxy.strip() == "*":
        return True
    host = host.lower()
    for entry in no_proxy.split(","):
        name = entry.strip().lower().lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def open_channel(
    url: str, headers: Mapping[str, str], timeouts: Timeouts, max_connections: int
) -> Channel:
    """The channel for ``url``: lean unless an environment proxy applies."""
    if lean_allowed(url):
        return LeanChannel(url, headers, timeouts, max_keepalive=max_connections)
    return HttpxChannel(url, headers, timeouts, max_connections)


# ------------------------------------------------------------------------------ httpx


class _HttpxReply:
    __slots__ = ("_response", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    async def read(self) -> bytes:
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
    """:class:`Channel` over ``httpx.AsyncClient`` (used where a proxy applies)."""

    def __init__(
        self, url: str, headers: Mapping[str, str], timeouts: Timeouts, max_connections: int
    ) -> None:
        import httpx

        self._url = url
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=timeouts.connect, read=timeouts.read, write=timeouts.write, pool=None
            ),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers=dict(headers),
        )

    async def post(self, body: bytes) -> Reply:
        import httpx

        request = self._client.build_request("POST", self._url, content=body)
        try:
            return _HttpxReply(await self._client.send(request, stream=True))
        except httpx.TransportError as exc:
            raise _translated(exc) from exc

    async def aclose(self) -> None:
        await self._client.aclose()


# ------------------------------------------------------------------------------ lean


class _Timeout(Exception):
    """A timer fired while waiting for the peer."""


class _Incomplete(Exception):
    """The peer closed the connection in the middle of a message."""


class _Stale(Exception):
    """A reused keep-alive connection was closed by the server before any response byte."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_Timeout())


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: a receive buffer and a way to wait for more bytes."""

    __slots__ = (
        "buffer",
        "drain",
        "eof",
        "idle_since",
        "loop",
        "reading_paused",
        "reused",
        "transport",
        "waiter",
        "writing_paused",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.drain: asyncio.Future[None] | None = None
        self.eof = False
        self.reading_paused = False
        self.writing_paused = False
        self.idle_since = 0.0
        self.reused = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports (Ray actors, uvicorn apps) implement asyncio.Transport's methods
        # without subclassing it, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and not self.reading_paused and self.transport:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()
        drain = self.drain
        if drain is not None and not drain.done():
            drain.set_result(None)

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

    # -- use

    def usable(self, now: float, expiry: float) -> bool:
        """Whether an idle connection can carry the next request."""
        transport = self.transport
        return (
            transport is not None
            and not transport.is_closing()
            and not self.eof
            and not self.buffer
            and now - self.idle_since < expiry
        )

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
        """A future that is done when more bytes (or the end of the stream) arrive.

        Readers await it directly rather than through a helper coroutine: every frame between a
        request and its socket is held by each request in flight.
        """
        waiter = self.waiter = self._timed(timeout)
        return waiter

    def _timed(self, timeout: float | None) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        if timeout is not None:
            handle = self.loop.call_later(timeout, _expire, future)
            future.add_done_callback(lambda _: handle.cancel())
        return future

    def take(self, size: int) -> bytes:
        """Remove and return up to ``size`` buffered bytes."""
        buffer = self.buffer
        if size >= len(buffer):
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:size])
            del buffer[:size]
        if self.reading_paused and len(buffer) < _LOW_WATER and self.transport:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    async def read_until(self, separator: bytes, timeout: float | None) -> bytes:
        """Bytes up to and including ``separator``."""
        start = 0
        while True:
            index = self.buffer.find(separator, start)
            if index >= 0:
                return self.take(index + len(separator))
            if len(self.buffer) > _MAX_HEAD:
                raise TransportError("RemoteProtocolError", "a response line or head is too long")
            if self.eof:
                raise _Incomplete()
            start = max(0, len(self.buffer) - len(separator) + 1)
            await self.more(timeout)

    async def read_exact(self, size: int, timeout: float | None) -> bytes:
        """Exactly ``size`` bytes."""
        while len(self.buffer) < size:
            if self.eof:
                raise _Incomplete()
            await self.more(timeout)
        return self.take(size)

    async def read_some(self, limit: int, timeout: float | None) -> bytes:
        """Up to ``limit`` bytes, at least one; ``b""`` at the end of the stream."""
        while not self.buffer:
            if self.eof:
                return b""
            await self.more(timeout)
        return self.take(limit)


class LeanChannel:
    """:class:`Channel` over hand-written HTTP/1.1 with keep-alive connection reuse.

    Args:
        url: the full URL requests are POSTed to.
        headers: request headers sent with every request (Host and Content-Length are added).
        timeouts: connect, write and per-read timeouts.
        max_keepalive: idle connections kept for reuse.
        keepalive_expiry: seconds an idle connection is kept; below common server keep-alive
            timeouts (uvicorn's is 5 s), so that a reused connection is rarely stale.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        *,
        max_keepalive: int = 64,
        keepalive_expiry: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parsed = split_url(url)
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or ""
        self._port = parsed.port or (443 if self._https else 80)
        host = self._host.encode("idna") if not self._host.isascii() else self._host.encode()
        if b":" in host:
            host = b"[" + host + b"]"  # IPv6 literal
        if parsed.port is not None:
            host += b":%d" % parsed.port
        target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        lines = [b"POST " + target.encode("ascii") + b" HTTP/1.1", b"Host: " + host]
        lines += [
            f"{name}: {value}".encode("latin-1")
            for name, value in headers.items()
            if name.lower() not in ("host", "content-length", "transfer-encoding")
        ]
        self._head = b"\r\n".join(lines) + b"\r\nContent-Length: "
        self._timeouts = timeouts
        self._max_keepalive = max_keepalive
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: list[_Connection] = []
        self._closed = False

    async def post(self, body: bytes) -> Reply:
        if self._closed:
            raise TransportError("ConnectError", "the connection pool is closed")
        payload = b"%b%d\r\n\r\n%b" % (self._head, len(body), body)
        now = time.monotonic()
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable(now, self._expiry):
                try:
                    return await self._exchange(conn, payload)
                except _Stale:
                    continue  # the server had closed it: try the next one, or a new one
            conn.close()
        conn = await self._connect()
        try:
            return await self._exchange(conn, payload)
        except _Stale:  # pragma: no cover - a fresh connection is never stale
            raise TransportError(
                "RemoteProtocolError", "Server disconnected without sending a response."
            ) from None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if self._https:
            if self._ssl_context is None:
                import httpx  # its CA bundle (certifi), as httpx's own client would use

                self._ssl_context = httpx.create_ssl_context()
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
        except OSError as exc:
            raise TransportError("ConnectError", str(exc) or type(exc).__name__) from exc
        return conn

    async def _exchange(self, conn: _Connection, payload: bytes) -> Reply:
        timeouts = self._timeouts
        try:
            try:
                await conn.write(payload, timeouts.write)
            except _Timeout:
                raise TransportError("WriteTimeout", "writing the request timed out") from None
            except OSError as exc:
                if conn.reused:
                    raise _Stale() from None
                raise TransportError("WriteError", str(exc) or type(exc).__name__) from None
            while True:
                try:
                    head = await conn.read_until(b"\r\n\r\n", timeouts.read)
                except _Timeout:
                    raise TransportError(
                        "ReadTimeout", "timed out waiting for the response"
                    ) from None
                except _Incomplete:
                    if conn.reused and not conn.buffer:
                        raise _Stale() from None
                    raise TransportError(
                        "RemoteProtocolError", "Server disconnected without sending a response."
                    ) from None
                conn.reused = False  # bytes arrived: a failure now is not a stale connection
                reply = _LeanReply(self, conn, head, timeouts.read)
                if reply.status >= 200 or reply.status == 101:
                    return reply
                # 1xx interim response: the real one follows.
        except BaseException:
            conn.close()
            raise

    def _release(self, conn: _Connection) -> None:
        if self._closed or len(self._idle) >= self._max_keepalive or conn.eof:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        conn.reused = True
        self._idle.append(conn)

    async def aclose(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class _LeanReply:
    """A response read from a :class:`_Connection`."""

    __slots__ = (
        "_channel",
        "_closed",
        "_complete",
        "_conn",
        "_framing",
        "_headers",
        "_keep_alive",
        "_length",
        "_timeout",
        "status",
    )

    def __init__(
        self, channel: LeanChannel, conn: _Connection, head: bytes, timeout: float | None
    ) -> None:
        self._channel = channel
        self._conn = conn
        self._timeout = timeout
        self._closed = False
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise TransportError("RemoteProtocolError", f"malformed status line {lines[0][:100]!r}")
        self.status = int(parts[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise TransportError(
                    "RemoteProtocolError", f"malformed response header {line[:100]!r}"
                )
            key = name.strip().lower()
            value = value.strip()
            headers[key] = headers[key] + b", " + value if key in headers else value
        self._headers = headers
        connection = headers.get(b"connection", b"").lower()
        if parts[0] == b"HTTP/1.0":
            self._keep_alive = b"keep-alive" in connection
        else:
            self._keep_alive = b"close" not in connection
        self._length = -1
        if self.status < 200 or self.status in (204, 304):
            self._framing = "none"
        elif headers.get(b"transfer-encoding", b"").lower().endswith(b"chunked"):
            self._framing = "chunked"
        elif b"content-length" in headers:
            try:
                self._length = int(headers[b"content-length"])
            except ValueError:
                raise TransportError("RemoteProtocolError", "malformed Content-Length") from None
            self._framing = "length"
        else:
            self._framing = "close"
            self._keep_alive = False
        self._complete = self._framing == "none" or self._length == 0

    def header(self, name: str) -> str | None:
        value = self._headers.get(name.lower().encode("latin-1"))
        return None if value is None else value.decode("latin-1")

    async def read(self) -> bytes:
        try:
            if self._framing != "length":
                return b"".join([piece async for piece in self._chunks()])
            try:
                data = await self._conn.read_exact(self._length, self._timeout)
            except _Timeout:
                raise TransportError("ReadTimeout", "timed out reading the response") from None
            except _Incomplete:
                raise TransportError("RemoteProtocolError", _INCOMPLETE_BODY) from None
            self._complete = True
            return data
        finally:
            await self.aclose()

    async def lines(self) -> AsyncIterator[str]:
        pending = b""
        async for piece in self._chunks():
            pending += piece
            if b"\n" not in piece:
                continue
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", errors="replace")

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            if self._framing == "length":
                remaining = self._length
                while remaining > 0:
                    piece = await self._conn.read_some(remaining, self._timeout)
                    if not piece:
                        raise _Incomplete()
                    remaining -= len(piece)
                    if remaining == 0:
                        self._complete = True
                    yield piece
            elif self._framing == "chunked":
                async for piece in self._dechunk():
                    yield piece
            elif self._framing == "close":
                while piece := await self._conn.read_some(_HIGH_WATER, self._timeout):
                    yield piece
                self._complete = True
        except _Timeout:
            raise TransportError("ReadTimeout", "timed out reading the response") from None
        except _Incomplete:
            raise TransportError("RemoteProtocolError", _INCOMPLETE_BODY) from None
        except ValueError:
            raise TransportError("RemoteProtocolError", "malformed chunked encoding") from None

    async def _dechunk(self) -> AsyncIterator[bytes]:
        conn = self._conn
        timeout = self._timeout
        while not self._complete:
            pieces: list[bytes] = []
            # Decode every chunk already buffered before yielding: one network read that
            # carries many chunks (SSE events) costs one iteration.
            while True:
                line = await conn.read_until(b"\r\n", timeout)
                size = int(line[:-2].split(b";", 1)[0], 16)
                if size == 0:
                    while await conn.read_until(b"\r\n", timeout) != b"\r\n":
                        pass  # trailers
                    self._complete = True
                    break
                pieces.append((await conn.read_exact(size + 2, timeout))[:-2])
                if not _starts_with_whole_chunk(conn.buffer):
                    break
            if pieces:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        buffer = self._conn.buffer
        if (
            not self._complete
            and self._framing == "chunked"
            and len(buffer) == 5
            and buffer.startswith(b"0\r\n\r\n")
        ):
            # The reader stopped at the last event (SSE [DONE]) and only the terminating chunk
            # is left: take it, so that the connection can be reused.
            self._conn.take(5)
            self._complete = True
        if self._complete and self._keep_alive:
            self._channel._release(self._conn)
        else:
            self._conn.close()


def _starts_with_whole_chunk(buffer: bytearray) -> bool:
    """Whether ``buffer`` starts with a whole chunk (size line, data and CRLF)."""
    end = buffer.find(b"\r\n")
    if end < 0:
        return False
    try:
        size = int(bytes(buffer[:end]).split(b";", 1)[0], 16)
    except ValueError:
        return True  # let the reader raise on it
    return size == 0 or len(buffer) >= end + 4 + size

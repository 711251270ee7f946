"""A lean HTTP/1.1 keep-alive transport for httpx, built on asyncio protocols.

httpcore's connection pool scans every pooled connection, and polls each one's socket, for every
request it places, so an endpoint with hundreds of requests in flight spends most of its CPU
choosing a connection (the benchmarks' profile shows ``AsyncConnectionPool._assign_requests_to_
connections`` at two thirds of client CPU with 64 fusions in flight). This transport keeps idle
connections in a LIFO list per origin, frames responses with a few ``bytes`` operations, and
implements timeouts with loop timers instead of tasks.

It speaks HTTP/1.1 over TCP or TLS, which is what OpenAI-compatible servers serve. The
:class:`httpx.AsyncClient` on top of it is unchanged: redirects, headers, content decoding and
the httpx exception types (``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError``, ...) all
work as with httpx's own transport. :func:`fast_transport_allowed` says when an environment
proxy applies, in which case httpx's default transport (which honours proxies) is used instead.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx

__all__ = ["FastTransport", "fast_transport_allowed"]

_MAX_HEAD = 64 * 1024
_HIGH_WATER = 1 << 20
_LOW_WATER = 1 << 18


class _Timeout(Exception):
    """A timer fired while waiting for the peer."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_Timeout())


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: a receive buffer and a way to wait for more bytes."""

    __slots__ = (
        "buffer",
        "drain",
        "eof",
        "error",
        "http10",
        "idle_since",
        "loop",
        "reading_paused",
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
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.idle_since = 0.0
        self.http10 = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
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
        self.error = exc
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

    @property
    def closed(self) -> bool:
        transport = self.transport
        return transport is None or transport.is_closing()

    def reusable(self, now: float, expiry: float) -> bool:
        """Whether an idle connection can carry the next request."""
        return (
            not self.eof and not self.closed and not self.buffer and now - self.idle_since < expiry
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
            drain = self.drain = self.loop.create_future()
            await self._until(drain, timeout)

    async def wait(self, timeout: float | None) -> None:
        """Wait until more bytes (or the end of the stream) arrive."""
        waiter = self.waiter = self.loop.create_future()
        try:
            await self._until(waiter, timeout)
        finally:
            self.waiter = None

    async def _until(self, future: asyncio.Future[None], timeout: float | None) -> None:
        if timeout is None:
            await future
            return
        handle = self.loop.call_later(timeout, _expire, future)
        try:
            await future
        finally:
            handle.cancel()

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

    async def read_until(self, separator: bytes, timeout: float | None, limit: int) -> bytes:
        """Bytes up to and including ``separator``."""
        start = 0
        while True:
            index = self.buffer.find(separator, start)
            if index >= 0:
                return self.take(index + len(separator))
            if len(self.buffer) > limit:
                raise httpx.RemoteProtocolError("the response head is too large")
            if self.eof:
                raise _Incomplete()
            start = max(0, len(self.buffer) - len(separator) + 1)
            await self.wait(timeout)

    async def read_exact(self, size: int, timeout: float | None) -> bytes:
        """Exactly ``size`` bytes."""
        while len(self.buffer) < size:
            if self.eof:
                raise _Incomplete()
            await self.wait(timeout)
        return self.take(size)

    async def read_some(self, limit: int, timeout: float | None) -> bytes:
        """Up to ``limit`` bytes, at least one; ``b""`` at the end of the stream."""
        while not self.buffer:
            if self.eof:
                return b""
            await self.wait(timeout)
        return self.take(limit)


class _Incomplete(Exception):
    """The peer closed the connection in the middle of a message."""


class _Pool:
    """Idle connections of one origin, most recently used first."""

    __slots__ = ("idle",)

    def __init__(self) -> None:
        self.idle: list[_Connection] = []


class FastTransport(httpx.AsyncBaseTransport):
    """An :class:`httpx.AsyncBaseTransport` for HTTP/1.1 with keep-alive connection reuse.

    Args:
        max_keepalive_connections: idle connections kept per origin.
        keepalive_expiry: seconds an idle connection is kept (below common server keep-alive
            timeouts, e.g. uvicorn's 5 s, so that a reused connection is rarely stale).
        ssl_context: for ``https`` origins (default: httpx's, with certifi's CA bundle).
    """

    def __init__(
        self,
        *,
        max_keepalive_connections: int = 64,
        keepalive_expiry: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_keepalive = max_keepalive_connections
        self.keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._pools: dict[tuple[bytes, bytes, int], _Pool] = {}
        self._closed = False

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the transport is closed", request=request)
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(
                f"unsupported URL scheme {url.scheme!r}", request=request
            )
        port = url.port or (443 if scheme == b"https" else 80)
        key = (scheme, url.raw_host, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool()
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        payload = _encode_request(request, await request.aread())
        now = time.monotonic()
        while pool.idle:
            conn = pool.idle.pop()
            if conn.reusable(now, self.keepalive_expiry):
                try:
                    return await self._exchange(conn, pool, request, payload, timeouts)
                except _StaleConnection:
                    continue  # the server had closed it: try the next one, or a new one
            conn.close()
        conn = await self._connect(request, scheme, port, timeouts.get("connect"))
        try:
            return await self._exchange(conn, pool, request, payload, timeouts)
        except _StaleConnection:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from None

    async def _connect(
        self, request: httpx.Request, scheme: bytes, port: int, timeout: float | None
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        host = request.url.host
        ssl_context = self._ssl() if scheme == b"https" else None
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=host if ssl_context is not None else None,
                ),
                timeout,
            )
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(
                f"connecting to {host}:{port} timed out", request=request
            ) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return conn

    async def _exchange(
        self,
        conn: _Connection,
        pool: _Pool,
        request: httpx.Request,
        payload: bytes,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        read_timeout = timeouts.get("read")
        try:
            try:
                await conn.write(payload, timeouts.get("write"))
            except _Timeout:
                raise httpx.WriteTimeout("writing the request timed out", request=request) from None
            except OSError as exc:
                if conn.idle_since:
                    raise _StaleConnection() from None
                raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from None
            status, reason, headers = await self._read_head(conn, request, read_timeout)
        except BaseException:
            conn.close()
            raise
        framing, length, keep_alive = _framing(request, status, headers)
        if conn.http10:
            keep_alive = False  # never reuse an HTTP/1.0 connection
        stream = _ResponseStream(
            self, conn, pool, request, read_timeout, framing, length, keep_alive
        )
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def _read_head(
        self, conn: _Connection, request: httpx.Request, timeout: float | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        while True:
            try:
                head = await conn.read_until(b"\r\n\r\n", timeout, _MAX_HEAD)
            except _Timeout:
                raise httpx.ReadTimeout(
                    "timed out waiting for the response", request=request
                ) from None
            except _Incomplete:
                if conn.idle_since and not conn.buffer:
                    raise _StaleConnection() from None
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                ) from None
            status, reason, headers = _parse_head(head, request)
            conn.http10 = head.startswith(b"HTTP/1.0")
            if status >= 200 or status == 101:
                return status, reason, headers
            conn.idle_since = 0.0  # 1xx interim response: the real one follows

    def _release(self, conn: _Connection, pool: _Pool) -> None:
        if self._closed or len(pool.idle) >= self.max_keepalive or conn.closed or conn.eof:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        pool.idle.append(conn)

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            for conn in pool.idle:
                conn.close()
            pool.idle.clear()


class _StaleConnection(Exception):
    """A reused keep-alive connection turned out to be closed before any response byte."""


def _encode_request(request: httpx.Request, body: bytes) -> bytes:
    url = request.url
    target = url.raw_path
    lines = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    chunked = False
    for name, value in request.headers.raw:
        if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
            chunked = True
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    if chunked:
        if body:
            lines += (f"{len(body):x}\r\n".encode("ascii"), body, b"\r\n")
        lines.append(b"0\r\n\r\n")
    else:
        lines.append(body)
    return b"".join(lines)


def _parse_head(
    head: bytes, request: httpx.Request
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise httpx.RemoteProtocolError(
            f"malformed status line {lines[0][:100]!r}", request=request
        )
    try:
        status = int(parts[1])
    except ValueError:
        raise httpx.RemoteProtocolError(
            f"malformed status line {lines[0][:100]!r}", request=request
        ) from None
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise httpx.RemoteProtocolError(f"malformed header {line[:100]!r}", request=request)
        headers.append((name.strip(), value.strip()))
    return status, parts[2] if len(parts) > 2 else b"", headers


def _framing(
    request: httpx.Request, status: int, headers: list[tuple[bytes, bytes]]
) -> tuple[str, int, bool]:
    """How the body is delimited (``length``, ``chunked``, ``close``, ``none``), its length,
    and whether the connection can be reused afterwards."""
    length = -1
    chunked = False
    keep_alive = True
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise httpx.RemoteProtocolError(
                    "malformed Content-Length", request=request
                ) from None
        elif lowered == b"transfer-encoding":
            chunked = value.lower().endswith(b"chunked")
        elif lowered == b"connection":
            keep_alive = b"close" not in value.lower()
    if status == 101:
        keep_alive = False
    if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return "none", 0, keep_alive
    if chunked:
        return "chunked", -1, keep_alive
    if length >= 0:
        return "length", length, keep_alive
    return "close", -1, False


class _ResponseStream(httpx.AsyncByteStream):
    """A response body; the connection goes back to the pool when it has been read in full."""

    def __init__(
        self,
        transport: FastTransport,
        conn: _Connection,
        pool: _Pool,
        request: httpx.Request,
        timeout: float | None,
        framing: str,
        length: int,
        keep_alive: bool,
    ) -> None:
        self.transport = transport
        self.conn = conn
        self.pool = pool
        self.request = request
        self.timeout = timeout
        self.framing = framing
        self.length = length
        self.keep_alive = keep_alive
        self.complete = framing == "none" or (framing == "length" and length == 0)
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            if self.framing == "length":
                async for piece in self._by_length():
                    yield piece
            elif self.framing == "chunked":
                async for piece in self._chunked():
                    yield piece
            elif self.framing == "close":
                async for piece in self._until_close():
                    yield piece
        except _Timeout:
            raise httpx.ReadTimeout(
                "timed out reading the response", request=self.request
            ) from None
        except _Incomplete:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body",
                request=self.request,
            ) from None
        except ValueError:
            raise httpx.RemoteProtocolError(
                "malformed chunked encoding", request=self.request
            ) from None

    async def _by_length(self) -> AsyncIterator[bytes]:
        remaining = self.length
        conn = self.conn
        while remaining > 0:
            piece = await conn.read_some(remaining, self.timeout)
            if not piece:
                raise _Incomplete()
            remaining -= len(piece)
            if remaining == 0:
                self.complete = True
            yield piece

    async def _chunked(self) -> AsyncIterator[bytes]:
        conn = self.conn
        timeout = self.timeout
        while True:
            pieces: list[bytes] = []
            # Decode every chunk already buffered before yielding, so one network read that
            # carries many chunks (SSE events) costs one iteration.
            while True:
                line = await conn.read_until(b"\r\n", timeout, _MAX_HEAD)
                size = int(line[:-2].split(b";", 1)[0], 16)
                if size == 0:
                    while await conn.read_until(b"\r\n", timeout, _MAX_HEAD) != b"\r\n":
                        pass  # trailers
                    self.complete = True
                    break
                data = await conn.read_exact(size + 2, timeout)
                pieces.append(data[:-2])
                if not _has_full_chunk(conn.buffer):
                    break
            if pieces:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if self.complete:
                return

    async def _until_close(self) -> AsyncIterator[bytes]:
        conn = self.conn
        while True:
            piece = await conn.read_some(_HIGH_WATER, self.timeout)
            if not piece:
                self.complete = True
                return
            yield piece

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.complete and self.keep_alive:
            self.transport._release(self.conn, self.pool)
        else:
            self.conn.close()


def _has_full_chunk(buffer: bytearray) -> bool:
    """Whether ``buffer`` starts with a whole chunk (size line, data and CRLF)."""
    end = buffer.find(b"\r\n")
    if end < 0:
        return False
    try:
        size = int(bytes(buffer[:end]).split(b";", 1)[0], 16)
    except ValueError:
        return True  # let the reader raise on it
    if size == 0:
        return True
    return len(buffer) >= end + 2 + size + 2


def fast_transport_allowed(url: str, *, trust_env: bool = True) -> bool:
    """Whether :class:`FastTransport` can serve ``url``: plain HTTP/1.1 with no environment
    proxy that applies to its host (httpx's own transport handles proxies)."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https"):
        return False
    if not trust_env:
        return True
    proxies: dict[str, Any] = urllib.request.getproxies_environment()
    if not any(proxies.get(k) for k in (parsed.scheme, "all")):
        return True
    return bool(urllib.request.proxy_bypass_environment(parsed.host, proxies))

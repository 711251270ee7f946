"""Connection-level limits for ``polyfuse serve``: uvicorn's h11 protocol, guarded.

uvicorn bounds neither the number of open connections (its ``limit_concurrency`` answers 503
in plain text but keeps accepting) nor the time a client may take to send its headers, so
one byte every few seconds holds a connection forever. :func:`guarded_protocol` builds an
``H11Protocol`` subclass that adds, before any request reaches the app (and so before auth):

* ``max_connections``: a connection beyond it gets a 503 and is closed at once;
* ``header_timeout_s``: the request line and headers must arrive within this many seconds of
  the connection opening (or of the first byte of a keep-alive request), else 408 and close;
* ``max_header_bytes``: h11's incomplete-event limit, so an oversized header block is refused
  with 431 (and a malformed request with 400) after at most that many bytes are buffered;
* ``keep_alive_timeout_s``: idle keep-alive connections are closed.

Every refusal is an OpenAI-shaped JSON error. The pure-Python h11 parser is used rather than
httptools because h11 bounds its buffer by construction (``max_incomplete_event_size``) and
its uvicorn protocol can be extended at these points without copying it. The price, measured
with ``benchmarks/server_load.py`` (300 streamed fusions, 100 at once, one run each on the
2-core development machine): 3.5 ms of server CPU per fused request against 3.0 ms with
httptools.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import APIError
from .settings import ServerSettings

__all__ = ["ConnectionLimits", "GuardedH11Protocol", "guarded_protocol", "protocol_for"]

logger = logging.getLogger("polyfuse.server")


@dataclass(frozen=True)
class ConnectionLimits:
    """The connection-level limits (see the module docstring)."""

    max_connections: int = 512
    header_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024
    keep_alive_timeout_s: float = 5.0


def _raw_error(error: APIError) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection."""
    body = error.encoded()
    head = (
        f"HTTP/1.1 {error.status_code} {_PHRASES.get(error.status_code, 'Error')}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n"
        "x-content-type-options: nosniff\r\n"
        "cache-control: no-store\r\n\r\n"
    )
    return head.encode() + body


_PHRASES = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with connection, header-size and header-time limits."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self.limits
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self.timeout_keep_alive = limits.keep_alive_timeout_s  # pyright: ignore[reportAttributeAccessIssue]
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            logger.warning(
                "refused a connection: %d open, the limit is %d ([server] max_connections)",
                len(self.connections) - 1,
                self.limits.max_connections,
            )
            self._refuse(
                APIError(
                    503,
                    f"the server has {self.limits.max_connections} connections open, its limit "
                    "([server] max_connections); retry later",
                    type="server_error",
                    code="too_many_connections",
                )
            )
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # reading a request line and headers
            if self._header_timer is None:
                self._arm_header_timer()  # the first byte of a keep-alive request
            if self._header_size(data) > self.limits.max_header_bytes:
                self._refuse(self._headers_too_large())
                return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_timer()  # the headers are in

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _header_size(self, data: bytes) -> int:
        """The size of the header block so far, ``data`` included.

        h11 enforces ``max_incomplete_event_size`` only on a block that is still incomplete,
        so a large block that arrives in one read would pass; this counts it exactly.
        """
        buffered = self.conn.trailing_data[0]
        tail = buffered[-3:]
        end = (tail + data).find(b"\r\n\r\n")
        if end < 0:
            return len(buffered) + len(data)
        return len(buffered) - len(tail) + end + 4

    def _headers_too_large(self) -> APIError:
        return APIError(
            431,
            f"the request headers are larger than this server's limit of "
            f"{self.limits.max_header_bytes} bytes ([server] max_header_bytes)",
            code="headers_too_large",
        )

    def send_400_response(self, msg: str) -> None:
        """Answer an unparseable request (uvicorn calls this) in the OpenAI shape."""
        self._disarm_header_timer()
        if len(self.conn.trailing_data[0]) > self.limits.max_header_bytes:
            self._refuse(self._headers_too_large())
        else:
            self._refuse(APIError(400, "malformed HTTP request", code="invalid_http"))

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout_s, self._headers_timed_out
        )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self._refuse(
            APIError(
                408,
                f"the request headers did not arrive within {self.limits.header_timeout_s:g}s "
                "([server] header_timeout_s)",
                code="request_timeout",
            )
        )

    def _refuse(self, error: APIError) -> None:
        if not self.transport.is_closing():
            self.transport.write(_raw_error(error))
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` class with ``limits``: pass it as uvicorn's ``http``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def protocol_for(settings: ServerSettings) -> type[GuardedH11Protocol]:
    """The guarded protocol class with the limits of ``settings``' ``[server]`` table."""
    return guarded_protocol(
        ConnectionLimits(
            max_connections=settings.max_connections,
            header_timeout_s=settings.header_timeout_s,
            max_header_bytes=settings.max_header_bytes,
            keep_alive_timeout_s=settings.keep_alive_timeout_s,
        )
    )

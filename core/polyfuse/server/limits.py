"""Limits that protect the server: concurrent chat completions (429) and body size (413)."""

from __future__ import annotations

from collections.abc import Callable

from .asgi import ASGIApp, ClientDisconnected, Receive, Scope, Send, send_error
from .errors import APIError

__all__ = ["ConcurrencyLimitMiddleware", "ConcurrencyLimiter", "read_body"]


class ConcurrencyLimiter:
    """Counts requests in flight; refuses (never queues) beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.in_flight = 0

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        """Give a slot back."""
        self.in_flight -= 1


class ConcurrencyLimitMiddleware:
    """Answers 429 with ``Retry-After`` when ``limiter`` is full, for POSTs to ``paths``.

    A slot is held until the response is completely sent (streams included), and released
    however the request ends (done, failed or the client gone).
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: ConcurrencyLimiter,
        paths: frozenset[str],
        retry_after_s: int = 1,
        on_reject: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.paths = paths
        self.retry_after_s = retry_after_s
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if not self.limiter.try_acquire():
            if self.on_reject is not None:
                self.on_reject(429)
            await send_error(
                send,
                APIError(
                    429,
                    f"the server is at its limit of {self.limiter.limit} concurrent requests; "
                    f"retry after {self.retry_after_s}s",
                    type="rate_limit_error",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": str(self.retry_after_s)},
                ),
            )
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limiter.release()


def _too_large(limit: int) -> APIError:
    return APIError(
        413,
        f"the request body is larger than this server's limit of {limit} bytes "
        "([server] max_body_bytes)",
        code="request_too_large",
    )


async def read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    """Read a request body of at most ``limit`` bytes; raise a 413 :class:`APIError` beyond.

    A declared ``Content-Length`` over the limit is refused before reading anything.
    """
    for name, value in headers:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise APIError(400, "invalid Content-Length header") from None
            if declared > limit:
                raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)

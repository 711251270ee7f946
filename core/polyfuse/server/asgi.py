"""Small ASGI helpers shared by the middleware and the streaming response."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, TypeVar

from .errors import APIError

__all__ = [
    "CLIENT_CLOSED",
    "SECURITY_HEADERS",
    "ASGIApp",
    "ClientDisconnected",
    "DisconnectWatch",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "send_error",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")

CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection"

# On every API reply: no MIME sniffing of JSON into HTML, and no caching of answers.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
)


class ClientDisconnected(Exception):
    """The client closed the connection before the answer was complete."""


async def send_error(send: Send, error: APIError) -> None:
    """Answer with ``error`` as an OpenAI-shaped JSON body."""
    body = error.encoded()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
    ]
    headers.extend((k.lower().encode(), v.encode()) for k, v in error.headers.items())
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class DisconnectWatch:
    """Waits for ``http.disconnect`` once the request body has been read, and races work
    against it: when the client leaves, the work is cancelled (and with it every upstream
    call it has in flight)."""

    def __init__(self, receive: Receive) -> None:
        self._task: asyncio.Task[None] = asyncio.ensure_future(self._wait(receive))

    @staticmethod
    async def _wait(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    @property
    def disconnected(self) -> bool:
        """True once the client has gone."""
        return self._task.done() and not self._task.cancelled()

    async def race(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` until it finishes or the client disconnects.

        Raises :class:`ClientDisconnected` (after cancelling ``work``) when the client left.
        """
        task = asyncio.ensure_future(work)
        abandoned = False
        try:
            await asyncio.wait({task, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                abandoned = True
                task.cancel()
                await asyncio.wait({task})
        if abandoned:
            cause = None if task.cancelled() else task.exception()
            raise ClientDisconnected from cause
        return task.result()

    def close(self) -> None:
        """Stop watching (call when the response is complete)."""
        self._task.cancel()

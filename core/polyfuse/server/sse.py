"""The lifecycle every streamed fusion response shares: headers, disconnects, the request record.

:class:`~polyfuse.server.chat.FusionStream` (``chat.completion.chunk`` events) and
:class:`~polyfuse.server.events.EventStream` (the fusion's named events) differ only in what
they write; both build on :class:`SSEResponse`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.responses import Response

from ..events import FusionEvent
from .asgi import CLIENT_CLOSED, ClientDisconnected, DisconnectWatch, Receive, Scope, Send

if TYPE_CHECKING:
    from .chat import ChatCompletions, _Outcome

__all__ = ["SSEResponse"]


class SSEResponse(Response, ABC):
    """A ``text/event-stream`` answer to one fusion, written by :meth:`_pump`.

    Headers go out with status 200 and no caching or proxy buffering. A client that
    disconnects cancels the fusion (and every upstream call in flight) and is recorded as
    status 499; an unexpected failure is recorded as 500 and raised. However the stream ends,
    the fusion's event generator is closed and the request is recorded once.

    Args:
        endpoint: the chat endpoint that records the request.
        outcome: how the request ends (status, first-token time, result).
        events: the fusion's events.
        started: ``time.perf_counter()`` when the request arrived.
        watch: the disconnect watch already racing the fusion; one is made from the ASGI
            ``receive`` when the response starts if not given.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        endpoint: ChatCompletions,
        outcome: _Outcome,
        events: AsyncIterator[FusionEvent],
        started: float,
        watch: DisconnectWatch | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})
        self._endpoint = endpoint
        self._outcome = outcome
        self._events = events
        self._started = started
        self._watch = watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = self._watch if self._watch is not None else DisconnectWatch(receive)
        try:
            await watch.race(self._pump(send))
        except (ClientDisconnected, OSError):
            # OSError: ASGI servers on spec 2.4 may raise it from send() once the client left.
            self._outcome.status = CLIENT_CLOSED
        except BaseException:
            self._outcome.status = 500
            raise
        finally:
            watch.close()
            await self._events.aclose()  # type: ignore[attr-defined]
            self._endpoint.record(self._outcome, self._started)

    @abstractmethod
    async def _pump(self, send: Send) -> None:
        """Send the response start, every event, and the last body message."""

    async def _start(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

    @staticmethod
    async def _write(send: Send, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    def _first_token(self) -> None:
        """Note the time to the first answer token (once)."""
        if self._outcome.ttft_s is None:
            self._outcome.ttft_s = time.perf_counter() - self._started

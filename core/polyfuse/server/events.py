"""``POST /v1/fusion/events``: everything a fusion does, as it happens, as server-sent events.

The request body is a chat completions body (same validation, presets, auth and limits as
``/v1/chat/completions``). The answer is a ``text/event-stream`` of named events, each with a
JSON ``data`` object that also carries its ``type``:

``fusion.started`` → ``candidate.started`` / ``candidate.token`` / ``candidate.finished`` /
``candidate.failed`` / ``candidate.cancelled`` → ``aggregation.started`` → ``fused.token``
(and ``answer.restarted`` if the aggregator fails mid-answer) → ``done`` with the whole
:class:`~polyfuse.results.FusionResult`, or ``error`` when the fusion fails.

Candidate errors go to clients as their type, HTTP status and a short fixed reason, never the
upstream's own text (which may echo prompts or credentials); known keys are removed from
everything sent.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import PolyfuseError
from ..events import (
    AggregationStarted,
    AnswerRestarted,
    CandidateCancelled,
    CandidateFailed,
    CandidateFinished,
    CandidateStarted,
    CandidateToken,
    FusedToken,
    FusionDone,
    FusionEvent,
)
from ..fusion import Fusion
from ..messages import ChatRequest
from ..redaction import Redactor, StreamScrubber, client_reason
from ..results import Candidate, ErrorInfo, FusionResult
from .asgi import CLIENT_CLOSED, ClientDisconnected, Send
from .catalog import model_id
from .chat import ChatCompletions, _Outcome, error_response
from .errors import APIError
from .passages import attribute_passages
from .sse import SSEResponse

__all__ = [
    "EVENTS_PATH",
    "HEARTBEAT_S",
    "EVENT_TYPES",
    "EventStream",
    "FusionEvents",
    "public_error",
    "public_reason",
    "public_result",
]

EVENTS_PATH = "/v1/fusion/events"

EVENT_TYPES: tuple[str, ...] = (
    "fusion.started",
    "candidate.started",
    "candidate.token",
    "candidate.finished",
    "candidate.failed",
    "candidate.cancelled",
    "aggregation.started",
    "fused.token",
    "answer.restarted",
    "done",
    "error",
)
"""Every event type the endpoint sends, in the order they first appear."""

# The engine ends a fallback reason with this; it is polyfuse's own text, kept for clients.
_FALLBACK_TAIL = re.compile(r"; returned candidate #\d+ instead$")
HEARTBEAT_S = 15.0
"""Seconds without an event after which an SSE comment is sent, so that proxies and browsers
do not take a long silence (a slow fusor reading its prompt) for a dead connection."""
HEARTBEAT = b": keep-alive\n\n"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def public_error(error: ErrorInfo, redact: Redactor) -> dict[str, Any]:
    """A candidate's or a call's error as clients see it: its type, HTTP status, and the
    endpoint, status and a short reason of our own (:func:`polyfuse.redaction.client_reason`),
    never the upstream's words. Cancellations keep polyfuse's own message ("cancelled: quorum
    of 2 reached")."""
    message = error.message if error.type == "Cancelled" else client_reason(error.message, redact)
    return {"type": error.type, "status_code": error.status_code, "message": redact(message)}


def public_reason(reason: str, redact: Redactor) -> str:
    """A fallback or restart reason reduced the same way (``client_reason``), keeping the
    engine's own "; returned candidate #N instead"."""
    tail = _FALLBACK_TAIL.search(reason)
    if tail is None:
        return client_reason(reason, redact)
    return client_reason(reason[: tail.start()], redact) + tail.group(0)


def _public_candidate(candidate: Candidate, redact: Redactor) -> dict[str, Any]:
    data = candidate.model_dump(mode="json")
    if candidate.error is not None:
        data["error"] = public_error(candidate.error, redact)
    # The rest is model text: only known keys are scrubbed from it.
    return redact.json(data, model_text=True)


def public_result(result: FusionResult, redact: Redactor) -> dict[str, Any]:
    """A :class:`FusionResult` as JSON for clients: errors reduced by :func:`public_error`,
    known keys scrubbed from model text, usage with its total, and no server internals
    (endpoint URLs) in ``metadata``."""
    data = result.model_dump(mode="json")
    data["candidates"] = [_public_candidate(c, redact) for c in result.candidates]
    aggregation = data["aggregation"]
    for call, record in zip(aggregation["calls"], result.aggregation.calls, strict=True):
        if record.error is not None:
            call["error"] = public_error(record.error, redact)
    if result.aggregation.fallback_reason is not None:
        aggregation["fallback_reason"] = public_reason(result.aggregation.fallback_reason, redact)
    data["usage"] = result.usage.model_dump_total()
    data["metadata"] = {
        key: result.metadata[key] for key in ("n", "prompt_version") if key in result.metadata
    }
    return redact.json(data, model_text=True)


def _flag(value: str | None, *, name: str, default: bool) -> bool:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise APIError(400, f"{name} must be true or false (got {value!r})", param=name)


async def _with_heartbeats(
    events: AsyncIterator[FusionEvent], every_s: float
) -> AsyncGenerator[FusionEvent | None, None]:
    """``events``, with ``None`` whenever ``every_s`` seconds pass without one.

    The pending ``__anext__`` is waited on, never cancelled, by a timeout; it is cancelled
    only when this iterator is closed (the client left), which cancels the fusion.
    """
    pending: asyncio.Future[FusionEvent] = asyncio.ensure_future(anext(events))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=every_s)
            if not done:
                yield None
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            yield event
            pending = asyncio.ensure_future(anext(events))
    finally:
        if not pending.done():
            pending.cancel()
            await asyncio.wait({pending})


def _encode(event_type: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps({"type": event_type, **data}, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event_type}\ndata: {payload}\n\n".encode()


class FusionEvents:
    """The events endpoint: reads the request through :class:`ChatCompletions` (so size caps,
    validation and preset lookup are the same), then streams an :class:`EventStream`.

    Query parameter ``candidate_tokens`` (default true) samples the candidates with streaming
    requests so their text arrives as ``candidate.token`` events; ``false`` keeps the preset's
    own sampling (one request with ``n`` where the endpoint supports it).
    """

    def __init__(self, chat: ChatCompletions) -> None:
        self.chat = chat

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        outcome = _Outcome()
        handed_off = False
        try:
            if not self.chat.settings.allow_return_candidates:
                raise APIError(
                    403,
                    "the events API (and the playground) show every candidate, and this "
                    "server does not return candidates; set allow_return_candidates = true "
                    "in the [server] table of its presets file to allow them",
                    code="candidates_disabled",
                )
            candidate_tokens = _flag(
                request.query_params.get("candidate_tokens"),
                name="candidate_tokens",
                default=True,
            )
            _, chat_request = await self.chat.read_request(request, outcome)
            outcome.stream = True
            fusion = self.chat.catalog.fusion(outcome.preset)
            if candidate_tokens and not fusion.policy.stream_candidates:
                # A shallow copy shares the preset's pool, aggregator and settings; only its
                # policy differs (streamed candidates), and only for this request.
                fusion = copy.copy(fusion)
                fusion.policy = fusion.policy.model_copy(update={"stream_candidates": True})
            stream = EventStream(self.chat, fusion, chat_request, outcome, started)
            handed_off = True
            return stream
        except APIError as exc:
            outcome.status = exc.status_code
            return error_response(exc)
        except ClientDisconnected:
            outcome.status = CLIENT_CLOSED
            return Response(status_code=CLIENT_CLOSED)
        finally:
            if not handed_off:
                self.chat.record(outcome, started)


class EventStream(SSEResponse):
    """One fusion's events as SSE. Headers go out at once (status 200); a failure after that
    is an ``error`` event carrying the status the same failure gets from
    ``/v1/chat/completions``. A client that disconnects cancels the fusion and every call in
    flight."""

    def __init__(
        self,
        endpoint: ChatCompletions,
        fusion: Fusion,
        request: ChatRequest,
        outcome: _Outcome,
        started: float,
    ) -> None:
        super().__init__(endpoint, outcome, fusion.astream(request), started)
        self._fusion = fusion
        self._redact = endpoint.redact
        # Known keys are scrubbed from streamed model text, even when split across tokens.
        self._scrubbers: dict[int, StreamScrubber] = {}
        self._fused = StreamScrubber(endpoint.redact)
        self._models: list[str] = [
            member.backend.model for member in fusion.pool.members for _ in range(member.samples)
        ]

    def _started_event(self) -> bytes:
        policy = self._fusion.policy
        members = self._fusion.pool.members
        backends = [m.backend.name for m in members for _ in range(m.samples)]
        return _encode(
            "fusion.started",
            {
                "id": f"fusion-{uuid.uuid4().hex}",
                "model": model_id(self._outcome.preset),
                "method": self._fusion.aggregator.method,
                "candidates": [
                    {"index": i, "backend": backend, "model": model}
                    for i, (backend, model) in enumerate(zip(backends, self._models, strict=True))
                ],
                "quorum": policy.quorum,
                "deadline": policy.deadline,
                "candidate_tokens": policy.stream_candidates,
            },
        )

    async def _pump(self, send: Send) -> None:
        await self._start(send)
        await self._write(send, self._started_event())
        beats = _with_heartbeats(self._events, HEARTBEAT_S)
        try:
            async for event in beats:
                data = HEARTBEAT if event is None else self._encode(event)
                if data:
                    await self._write(send, data)
        except PolyfuseError as exc:
            error = self._endpoint.failure(self._outcome, exc)
            body = error.body()
            await self._write(send, _encode("error", {"status": error.status_code, **body}))
        finally:
            # Cancels a pending read of the fusion's events (cancelled while we wrote).
            await beats.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _candidate_text(self, index: int, delta: str | None = None) -> bytes:
        """A ``candidate.token`` with ``delta`` scrubbed of known keys (a key split across
        tokens included); without ``delta``, the text held back at the candidate's end."""
        if delta is None:
            scrubber = self._scrubbers.pop(index, None)
            text = scrubber.flush() if scrubber is not None else ""
        else:
            scrubber = self._scrubbers.setdefault(index, StreamScrubber(self._redact))
            text = scrubber.feed(delta)
        return _encode("candidate.token", {"index": index, "delta": text}) if text else b""

    def _fused_text(self, text: str) -> bytes:
        if not text:
            return b""
        self._first_token()
        return _encode("fused.token", {"delta": text})

    def _encode(self, event: FusionEvent) -> bytes:
        """The SSE bytes of one engine event (model text scrubbed of known keys)."""
        redact = self._redact
        if isinstance(event, CandidateToken):
            return self._candidate_text(event.index, event.delta)
        if isinstance(event, FusedToken):
            return self._fused_text(self._fused.feed(event.delta))
        if isinstance(event, CandidateStarted):
            model = self._models[event.index] if event.index < len(self._models) else None
            return _encode(
                "candidate.started",
                {"index": event.index, "backend": event.backend, "model": model},
            )
        if isinstance(event, (CandidateFinished, CandidateFailed)):
            candidate = event.candidate
            held = self._candidate_text(candidate.index)
            data = {"candidate": _public_candidate(candidate, redact)}
            if isinstance(event, CandidateFinished):
                return held + _encode("candidate.finished", data)
            if isinstance(event, CandidateCancelled):
                return held + _encode("candidate.cancelled", {"reason": event.reason, **data})
            return held + _encode("candidate.failed", data)
        if isinstance(event, AggregationStarted):
            return _encode(
                "aggregation.started", {"method": event.method, "candidates": event.candidates}
            )
        if isinstance(event, AnswerRestarted):
            self._fused = StreamScrubber(redact)  # the text so far is void, held text too
            return _encode("answer.restarted", {"reason": public_reason(event.reason, redact)})
        if not isinstance(event, FusionDone):
            return b""  # an event type this endpoint does not know yet: not part of the API
        result = event.result
        self._outcome.result = result
        held = self._fused_text(self._fused.flush())
        passages = attribute_passages(result.content, result.candidates)
        return held + _encode(
            "done",
            {
                "result": public_result(result, redact),
                "passages": [{**p.to_dict(), "text": redact.keys(p.text)} for p in passages],
            },
        )

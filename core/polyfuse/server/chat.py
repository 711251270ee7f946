"""``POST /v1/chat/completions``: one request in, one fused answer out (JSON or real SSE)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from ..errors import NoCandidatesError, PolyfuseError
from ..events import AggregationStarted, AnswerRestarted, FusedToken, FusionDone, FusionEvent
from ..messages import ChatRequest
from ..redaction import Redactor, StreamScrubber, client_reason
from ..results import FusionResult
from .asgi import CLIENT_CLOSED, ClientDisconnected, DisconnectWatch, Send
from .caps import RequestCaps, check_caps, decode_json
from .catalog import PresetCatalog, model_id
from .errors import APIError, from_polyfuse_error
from .limits import read_body
from .metrics import NO_MODEL, ServerMetrics
from .schemas import ParsedChatRequest, parse_chat_request
from .settings import ServerSettings
from .sse import SSEResponse
from .wire import (
    DONE,
    ChunkWriter,
    completion_body,
    extension_body,
    finish_reason,
    new_completion_id,
)

__all__ = ["ChatCompletions", "FusionStream"]

logger = logging.getLogger("polyfuse.server")


def error_response(error: APIError) -> Response:
    """An OpenAI-shaped JSON error response."""
    return Response(
        error.encoded(),
        status_code=error.status_code,
        headers=error.headers,
        media_type="application/json",
    )


@dataclass
class _Outcome:
    """How one request ended, for metrics and the log line."""

    preset: str = NO_MODEL
    status: int = 200
    stream: bool = False
    result: FusionResult | None = None
    ttft_s: float | None = None


class ChatCompletions:
    """The chat completions endpoint: validation, preset lookup, fusion, wire encoding.

    Errors before an answer starts get their own HTTP status; a client that disconnects
    cancels the fusion and so every candidate and fusor call still in flight.
    """

    def __init__(
        self,
        catalog: PresetCatalog,
        settings: ServerSettings,
        metrics: ServerMetrics,
        redact: Redactor,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.metrics = metrics
        self.redact = redact
        self._forward = frozenset(settings.forward_params)
        self.caps = RequestCaps.from_settings(settings)

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        outcome = _Outcome()
        watch: DisconnectWatch | None = None
        handed_off = False
        try:
            parsed, chat = await self.read_request(request, outcome)
            watch = DisconnectWatch(request.receive)
            if parsed.stream:
                stream = FusionStream(self, parsed, outcome, chat, watch, started)
                await watch.race(stream.prepare())
                handed_off = True
                return stream
            result = await watch.race(self.catalog.fusion(outcome.preset).arun(chat))
            outcome.result = result
            body = completion_body(
                result,
                completion_id=new_completion_id(),
                model=model_id(outcome.preset),
                created=int(time.time()),
                extension=extension_body(result, self.redact) if parsed.return_candidates else None,
            )
            return Response(
                json.dumps(self.redact.json(body, model_text=True), ensure_ascii=False).encode(),
                media_type="application/json",
            )
        except APIError as exc:
            outcome.status = exc.status_code
            return error_response(exc)
        except ClientDisconnected:
            outcome.status = CLIENT_CLOSED
            return Response(status_code=CLIENT_CLOSED)
        except PolyfuseError as exc:
            error = self.failure(outcome, exc)
            return error_response(error)
        except BaseException:
            outcome.status = 500  # a bug or a server shutdown; the app's handler answers
            raise
        finally:
            if not handed_off:
                if watch is not None:
                    watch.close()
                self.record(outcome, started)

    async def read_request(
        self, request: Request, outcome: _Outcome
    ) -> tuple[ParsedChatRequest, ChatRequest]:
        """Read and validate a chat request body; resolve its preset into ``outcome``.

        Shared by every endpoint that takes a chat completions body (the events API too), so
        they all apply the same size cap, validation and preset lookup. Raises
        :class:`APIError` with the status to answer.
        """
        raw = await read_body(
            request.receive, request.scope["headers"], self.settings.max_body_bytes
        )
        data = decode_json(raw, self.caps)
        check_caps(data, self.caps)
        parsed = parse_chat_request(data, forward_params=self._forward)
        outcome.preset = self.catalog.resolve(parsed.model)
        outcome.stream = parsed.stream
        if parsed.return_candidates and not self.settings.allow_return_candidates:
            raise APIError(
                400,
                "returning candidates is disabled on this server "
                "([server] allow_return_candidates = false)",
                param="polyfuse.return_candidates",
            )
        return parsed, self.catalog.request_for(outcome.preset, parsed.request)

    def failure(self, outcome: _Outcome, exc: PolyfuseError) -> APIError:
        """Map a fusion failure to its HTTP answer, and count lost candidates."""
        if isinstance(exc, NoCandidatesError):
            self.metrics.no_candidates(outcome.preset, len(exc.failures))
        error = from_polyfuse_error(exc, self.redact)
        outcome.status = error.status_code
        # The client gets short reasons; the log keeps the endpoints' own words, redacted.
        logger.warning(
            "%s: %d %s; details: %s",
            model_id(outcome.preset),
            error.status_code,
            error.code or error.type,
            self.redact(str(exc)),
        )
        return error

    def record(self, outcome: _Outcome, started: float) -> None:
        """Count a finished request and log one line about it (never a prompt or a key)."""
        latency = time.perf_counter() - started
        self.metrics.request(outcome.preset, outcome.status)
        result = outcome.result
        if result is None:
            logger.info(
                "chat %s stream=%s status=%d %.3fs",
                outcome.preset,
                outcome.stream,
                outcome.status,
                latency,
            )
            return
        self.metrics.observe(
            outcome.preset, result, stream=outcome.stream, latency_s=latency, ttft_s=outcome.ttft_s
        )
        total = result.usage.total
        logger.info(
            "chat %s stream=%s status=%d %.3fs candidates=%d/%d method=%s tokens=%d%s",
            outcome.preset,
            outcome.stream,
            outcome.status,
            latency,
            len(result.succeeded),
            len(result.candidates),
            result.aggregation.method,
            total.total_tokens,
            " fallback" if result.aggregation.fallback_reason else "",
        )


class FusionStream(SSEResponse):
    """A streamed fused answer as ``chat.completion.chunk`` server-sent events.

    :meth:`prepare` runs the fusion until its candidates are in, so that a request whose
    candidates all fail still gets a real HTTP error status. Then the response sends the role
    chunk, the fusor's tokens as they arrive, tool calls as ``tool_calls`` deltas, the finish
    chunk, the usage chunk when asked, and ``[DONE]``. A failure after the headers is sent as
    an OpenAI error event.
    """

    def __init__(
        self,
        endpoint: ChatCompletions,
        parsed: ParsedChatRequest,
        outcome: _Outcome,
        request: ChatRequest,
        watch: DisconnectWatch,
        started: float,
    ) -> None:
        super().__init__(
            endpoint,
            outcome,
            endpoint.catalog.fusion(outcome.preset).astream(request),
            started,
            watch,
        )
        self._parsed = parsed
        self._pending: FusionEvent | None = None
        # Known keys scrubbed from the streamed text, even when split across tokens.
        self._scrubber = StreamScrubber(endpoint.redact)
        self._writer = ChunkWriter(
            completion_id=new_completion_id(),
            model=model_id(outcome.preset),
            include_usage=parsed.include_usage,
        )

    async def prepare(self) -> None:
        """Run the fusion until the answer is about to start (candidates sampled)."""
        async for event in self._events:
            if isinstance(event, AggregationStarted):
                return
            if isinstance(event, (FusedToken, FusionDone, AnswerRestarted)):
                self._pending = event
                return

    async def _pump(self, send: Send) -> None:
        await self._start(send)
        await self._write(send, self._writer.role())
        try:
            if self._pending is None or not await self._handle(self._pending, send):
                async for event in self._events:
                    if await self._handle(event, send):
                        break
        except PolyfuseError as exc:
            await self._content(send, self._scrubber.flush())
            error = self._endpoint.failure(self._outcome, exc)
            await self._write(send, ChunkWriter.error(error.body()))
        await send({"type": "http.response.body", "body": DONE, "more_body": False})

    async def _handle(self, event: FusionEvent, send: Send) -> bool:
        """Send what ``event`` means; True when the answer is complete."""
        if isinstance(event, FusedToken):
            await self._content(send, self._scrubber.feed(event.delta))
            return False
        if isinstance(event, AnswerRestarted):
            if self._outcome.ttft_s is None:
                self._scrubber.flush()  # nothing was sent yet: drop it, the fallback follows
                return False
            self._outcome.status = 502
            await self._content(send, self._scrubber.flush())
            logger.warning(
                "%s: the fused answer failed mid-stream: %s",
                model_id(self._outcome.preset),
                self._endpoint.redact(event.reason),
            )
            reason = client_reason(event.reason, self._endpoint.redact)
            error = APIError(
                502,
                f"the fused answer failed mid-stream ({reason}); "
                "retry the request, or send it without stream to get the fallback answer",
                type="server_error",
                code="answer_restarted",
            )
            await self._write(send, ChunkWriter.error(error.body()))
            return True
        if isinstance(event, FusionDone):
            await self._finish(event.result, send)
            return True
        return False

    async def _content(self, send: Send, text: str) -> None:
        if text:
            self._first_token()
            await self._write(send, self._writer.content(text))

    async def _finish(self, result: FusionResult, send: Send) -> None:
        self._outcome.result = result
        await self._content(send, self._scrubber.flush())
        redact = self._endpoint.redact
        for index, call in enumerate(result.tool_calls):
            self._first_token()
            safe = call.model_copy(
                update={
                    "function": call.function.model_copy(
                        update={
                            "name": redact.keys(call.function.name),
                            "arguments": redact.keys(call.function.arguments),
                        }
                    )
                }
            )
            for chunk in self._writer.tool_call(index, safe):
                await self._write(send, chunk)
        extension = extension_body(result, redact) if self._parsed.return_candidates else None
        await self._write(send, self._writer.finish(finish_reason(result), extension))
        if self._writer.include_usage:
            await self._write(send, self._writer.usage(result.usage.total))

"""A fake OpenAI-compatible chat-completions server, as a raw ASGI application.

:class:`FakeOpenAIServer` answers ``POST /v1/chat/completions`` (streaming or not),
``GET /v1/models`` and ``GET /health`` the way vLLM, SGLang or llama.cpp would, without a
model. What it answers comes from a *responder* (the deterministic :func:`default_responder`
unless you give one); how fast it answers comes from a :class:`LatencyModel`; how it misbehaves
comes from :class:`Fault` objects injected with :meth:`FakeOpenAIServer.inject`.

The parts live in their own modules: :mod:`.faults` (faults and latency),
:mod:`.responder` (the schema-following default responder), :mod:`.sse` (the wire encoding);
this module is the ASGI app and re-exports the public names.

It depends on the standard library only. Run it with :func:`polyfuse.testing.serve` (uvicorn)
or mount it in any ASGI server. The hot path avoids per-chunk dict building and repeated
serialisation so that CPU-bound benchmarks measure the client, not the fake.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from .faults import FAULT_KINDS, Fault, FaultKind, LatencyModel
from .responder import FakeReply, Responder, default_responder, schema_instance

__all__ = [
    "FAULT_KINDS",
    "FakeOpenAIServer",
    "FakeReply",
    "Fault",
    "FaultKind",
    "LatencyModel",
    "Responder",
    "default_responder",
    "schema_instance",
]

from .responder import content_text, is_text_reply
from .sse import (
    DONE,
    SSE_HEADERS,
    Choice,
    Events,
    encode_json,
    error_body,
    pad_or_cut,
    word_pieces,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_TRUNCATED_JSON = b'{"choices": ['
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_HEALTH_PATHS = frozenset({"/health", "/v1/health"})


class _ConnectionDropped(Exception):
    """Raised inside the app to make the ASGI server close the connection on purpose."""


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client left first."""
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    raw: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return raw
    parts = [raw]
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
    return b"".join(parts)


class _Client:
    """Tracks one request's client; sleeps that end early when the client leaves."""

    __slots__ = ("aborted", "finished", "gone", "receive", "recv", "server")

    def __init__(self, server: FakeOpenAIServer, receive: Receive) -> None:
        self.server = server
        self.receive = receive
        self.recv: asyncio.Future[None] | None = None
        self.gone = False
        self.aborted = False
        self.finished = False

    async def _watch(self) -> None:
        while True:
            message = await self.receive()
            if message.get("type") == "http.disconnect":
                return

    def _watcher(self) -> asyncio.Future[None]:
        recv = self.recv
        if recv is None:
            recv = self.recv = asyncio.ensure_future(self._watch())
            self.server._watch(self)
        return recv

    def _closing(self) -> bool:
        """True (and marks this request aborted) if the server is shutting down."""
        closing = self.server._closing_loop
        if closing is not None and closing is asyncio.get_running_loop():
            self.aborted = True
            return True
        return False

    def _left(self) -> bool:
        if self.aborted:
            raise _ConnectionDropped("fake server shutting down")
        self.gone = True
        return False

    async def sleep(self, delay: float | None) -> bool:
        """Sleep ``delay`` seconds (``None``: until the client leaves); False if it left."""
        if self.gone:
            return False
        if delay is not None and delay <= 0:
            return True
        if self._closing():
            return self._left()
        recv = self._watcher()
        done, _ = await asyncio.wait((recv,), timeout=delay)
        return self._left() if done else True

    async def acquire(self, sem: asyncio.Semaphore) -> bool:
        """Take a capacity slot in FIFO order; False (and no slot) if the client left."""
        if not sem.locked():
            await sem.acquire()
            return True
        if self.gone or self._closing():
            return self._left()
        recv = self._watcher()
        acquiring = asyncio.ensure_future(sem.acquire())
        await asyncio.wait((acquiring, recv), return_when=asyncio.FIRST_COMPLETED)
        if not recv.done():
            return True
        if not acquiring.done():
            acquiring.cancel()
            await asyncio.wait((acquiring,))
        if not acquiring.cancelled():
            sem.release()
        return self._left()

    def close(self) -> None:
        recv = self.recv
        if recv is not None:
            if not recv.done():
                recv.cancel()
            self.server._unwatch(self)


# --------------------------------------------------------------------------------------------
# The app


class FakeOpenAIServer:
    """A fake OpenAI-compatible chat-completions server; an ASGI 3 application.

    Args:
        model: Model id listed by ``/v1/models`` and used when a request names none.
        responder: Makes each choice's reply; :func:`default_responder` if ``None``.
        n_mode: ``"honour"`` returns ``n`` choices; ``"ignore"`` always one (Ollama, TGI);
            ``"reject"`` answers 400 "Only one completion choice is allowed" when ``n != 1``
            (llama.cpp).
        usage: Report usage: ``"usage"`` in non-streaming answers; in streams a final chunk
            with ``choices: []`` when the request sets ``stream_options.include_usage``.
        stream_chunk_size: Words per SSE content chunk.
        latency: Timing model; ``None`` answers at once.
        api_key: When set, requests must send ``Authorization: Bearer <api_key>`` (else 401).
        seed: Seeds the latency jitter.
        record: Keep every request body and its headers in :attr:`requests` and
            :attr:`request_headers` (turn off for long benchmarks).
        coalesce_stream: When a stream is not paced (no ``tokens_per_s``), write it in one
            body message (same bytes, far less CPU); ``False`` writes one message per step.

    Attributes:
        faults: Pending injected faults, in order.
        requests: Every chat request body that parsed as a JSON object, in arrival order.
        request_headers: The headers of those requests (lower-cased names), same order.
        active: Chat requests being processed now.
        completed: Chat requests whose response was sent in full (any status).
        disconnects: Chat requests whose client left before the response was complete.
            Connections dropped on purpose (``drop_connection``) count in neither.

    The counters are settled just before a response's last write, so they are up to date
    as soon as a client has read a whole response.
    """

    def __init__(
        self,
        *,
        model: str = "fake-model",
        responder: Responder | None = None,
        n_mode: Literal["honour", "ignore", "reject"] = "honour",
        usage: bool = True,
        stream_chunk_size: int = 1,
        latency: LatencyModel | None = None,
        api_key: str | None = None,
        seed: int = 0,
        record: bool = True,
        coalesce_stream: bool = True,
    ) -> None:
        if n_mode not in ("honour", "ignore", "reject"):
            raise ValueError(f"unknown n_mode {n_mode!r}")
        if stream_chunk_size < 1:
            raise ValueError("stream_chunk_size must be >= 1")
        self.model = model
        self.responder = responder
        self.n_mode = n_mode
        self.usage = usage
        self.stream_chunk_size = stream_chunk_size
        self.latency = latency
        self.api_key = api_key
        self.seed = seed
        self.record = record
        self.coalesce_stream = coalesce_stream
        self._lock = threading.Lock()
        self._watching: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing_loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self._sem_key: tuple[asyncio.AbstractEventLoop, int] | None = None
        self.faults: deque[Fault] = deque()
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.active = 0
        self.completed = 0
        self.disconnects = 0
        self._seq = 0
        self._generated = 0
        self._rng = random.Random(seed)

    # -- public helpers -------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each applies to the next matching chat request(s). Thread-safe."""
        with self._lock:
            self.faults.extend(faults)

    def reset(self) -> None:
        """Forget faults, recorded requests and counters (``active`` is left as is)."""
        with self._lock:
            self.faults.clear()
        self.requests = []
        self.request_headers = []
        self.completed = 0
        self.disconnects = 0
        self._seq = 0
        self._generated = 0
        self._rng = random.Random(self.seed)
        self._sem = None

    def release_waiters(self) -> None:
        """End every request that is sleeping or hanging by dropping its connection.

        Thread-safe; :func:`polyfuse.testing.serve` calls it on exit so that hung requests
        do not hold up the server's shutdown.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._abort_all)
        except RuntimeError:  # loop closed meanwhile
            pass

    def _abort_all(self) -> None:
        self._closing_loop = asyncio.get_running_loop()
        for client in list(self._watching):
            client.aborted = True
            if client.recv is not None and not client.recv.done():
                client.recv.cancel()

    def _watch(self, client: _Client) -> None:
        self._watching.add(client)

    def _unwatch(self, client: _Client) -> None:
        self._watching.discard(client)

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                path = path.rstrip("/")
            method: str = scope["method"]
            if path in _CHAT_PATHS:
                if method != "POST":
                    await self._send_json(send, 405, error_body(405, "Method not allowed"))
                    return
                await self._chat(scope, receive, send)
            elif path in _MODELS_PATHS and method == "GET":
                entry = {"id": self.model, "object": "model", "created": 0, "owned_by": "polyfuse"}
                await self._send_json(send, 200, {"object": "list", "data": [entry]})
            elif path in _HEALTH_PATHS and method == "GET":
                await self._send_bytes(send, 200, b'{"status":"ok"}')
            else:
                body = error_body(404, f"Not found: {method} {path}", "not_found")
                await self._send_json(send, 404, body)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    @staticmethod
    async def _send_bytes(
        send: Send,
        status: int,
        body: bytes,
        content_type: tuple[bytes, bytes] = _JSON,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [content_type, (b"content-length", str(len(body)).encode())]
        if extra:
            headers += extra
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _send_json(self, send: Send, status: int, obj: Any) -> None:
        await self._send_bytes(send, status, encode_json(obj).encode())

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.active += 1
        self._loop = asyncio.get_running_loop()
        client = _Client(self, receive)

        async def tracked_send(message: Message) -> None:
            # Settle the counters before the last write, so that a client that has read the
            # whole response already sees them updated.
            if (
                not client.finished
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                client.finished = True
                self.active -= 1
                recv = client.recv
                if client.gone or (recv is not None and recv.done()):
                    self.disconnects += 1
                else:
                    self.completed += 1
            await send(message)

        try:
            if not await self._chat_inner(scope, receive, tracked_send, client):
                client.gone = True
        except OSError:  # some ASGI servers raise when writing to a closed socket
            client.gone = True
        finally:
            client.close()
            if not client.finished:
                self.active -= 1
                if client.gone:
                    self.disconnects += 1

    async def _chat_inner(
        self, scope: Scope, receive: Receive, send: Send, client: _Client
    ) -> bool:
        """Handle one chat request; True if the response was sent in full."""
        raw = await _read_body(receive)
        if raw is None:
            return False
        try:
            body = json.loads(raw)
        except ValueError:
            await self._send_json(send, 400, error_body(400, "Request body is not valid JSON"))
            return True
        if not isinstance(body, dict):
            await self._send_json(send, 400, error_body(400, "Request body must be a JSON object"))
            return True
        if self.record:
            self.requests.append(body)
            self.request_headers.append(
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            )
        if self.api_key is not None and not self._authorised(scope):
            err = error_body(401, "Incorrect API key provided", "invalid_api_key")
            await self._send_json(send, 401, err)
            return True
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            err = error_body(400, "'messages' must be a non-empty list", "invalid_messages")
            await self._send_json(send, 400, err)
            return True
        n = self._choice_count(body)
        if isinstance(n, str):
            await self._send_json(send, 400, error_body(400, n))
            return True
        fault = self._pop_fault(body) if self.faults else None
        if fault is not None:
            if fault.kind == "status":
                await self._send_fault_status(send, fault)
                return True
            if fault.kind == "slow_first_byte" and not await client.sleep(fault.delay_s):
                return False
            if fault.kind == "malformed_json":
                await self._send_bytes(send, 200, _TRUNCATED_JSON)
                return True
            if fault.kind == "wrong_choices":
                n = fault.choices
        return await self._generate(send, client, body, n, fault)

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return value.decode("latin-1") == f"Bearer {self.api_key}"
        return False

    def _choice_count(self, body: dict[str, Any]) -> int | str:
        """The number of choices to return, or an error message."""
        n = body.get("n")
        if self.n_mode == "ignore" or n is None:
            return 1
        if self.n_mode == "reject":
            return 1 if n == 1 else "Only one completion choice is allowed"
        if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > 128:
            return "'n' must be an integer between 1 and 128"
        return n

    def _pop_fault(self, body: dict[str, Any]) -> Fault | None:
        model = body.get("model")
        with self._lock:
            for i, fault in enumerate(self.faults):
                if fault.match_model is None or fault.match_model == model:
                    fault.times -= 1
                    if fault.times <= 0:
                        del self.faults[i]
                    return fault
        return None

    async def _send_fault_status(self, send: Send, fault: Fault) -> None:
        extra = [
            (k.lower().encode("latin-1"), str(v).encode("latin-1"))
            for k, v in (fault.headers or {}).items()
        ]
        content_type = _JSON
        body = fault.body
        if body is None:
            payload = encode_json(
                error_body(fault.status, f"Injected HTTP {fault.status} error", fault.status)
            ).encode()
        elif isinstance(body, bytes):
            payload = body
            content_type = (b"content-type", b"application/octet-stream")
        elif isinstance(body, str):
            payload = body.encode()
            content_type = (b"content-type", b"text/plain; charset=utf-8")
        else:
            payload = encode_json(body).encode()
        for name, value in extra:
            if name == b"content-type":
                content_type = (name, value)
        extra = [h for h in extra if h[0] not in (b"content-type", b"content-length")]
        await self._send_bytes(send, fault.status, payload, content_type, extra)

    # -- generation -----------------------------------------------------------------------

    async def _replies(self, body: dict[str, Any], n: int, empty: bool) -> list[Choice] | str:
        """Each choice's reply, or an error message if the responder failed."""
        latency = self.latency
        forced = latency.output_tokens if latency is not None else None
        responder = self.responder
        choices: list[Choice] = []
        for i in range(n):
            if empty:
                choices.append(Choice(FakeReply(content=""), i, None))
                continue
            if responder is None:
                reply = default_responder(body, i)
                choices.append(self._shape_default(body, reply, i, forced))
                continue
            try:
                result = responder(body, i)
                if inspect.isawaitable(result):
                    result = await result
                if isinstance(result, str):
                    result = FakeReply(content=result)
                if not isinstance(result, FakeReply):
                    return f"responder returned {type(result).__name__}, not FakeReply or str"
                choices.append(Choice(result, i, None))
            except Exception as exc:
                return f"responder failed: {exc!r}"
        return choices

    @staticmethod
    def _shape_default(
        body: dict[str, Any], reply: FakeReply, index: int, forced: int | None
    ) -> Choice:
        if not is_text_reply(body, reply):
            return Choice(reply, index, forced)
        assert reply.content is not None
        if forced is not None:
            reply.content = pad_or_cut(reply.content, forced)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            if len(reply.content.split()) > limit:
                reply.content = pad_or_cut(reply.content, limit)
                reply.finish_reason = "length"
        return Choice(reply, index, None)

    def _prompt_tokens(self, body: dict[str, Any], choices: list[Choice]) -> int:
        for choice in choices:
            if choice.prompt_tokens is not None:
                return choice.prompt_tokens
        total = 0
        for message in body["messages"]:
            if isinstance(message, dict):
                total += len(content_text(message.get("content")).split())
        return max(total, 1)

    def _timing(self) -> tuple[float, float]:
        """This request's (time to first token, seconds per token); counts the request."""
        latency = self.latency
        assert latency is not None
        self._generated += 1
        factor = 1.0
        if latency.jitter:
            factor += self._rng.uniform(-latency.jitter, latency.jitter)
        if latency.straggler_every and self._generated % latency.straggler_every == 0:
            factor *= latency.straggler_factor
        per_token = 1.0 / latency.tokens_per_s if latency.tokens_per_s else 0.0
        return latency.ttft_s * factor, per_token * factor

    def _semaphore(self) -> asyncio.Semaphore | None:
        latency = self.latency
        if latency is None or latency.capacity is None:
            return None
        loop = asyncio.get_running_loop()
        if self._sem is None or self._sem_key != (loop, latency.capacity):
            # A semaphore belongs to one event loop; a new capacity needs a new one.
            self._sem = asyncio.Semaphore(latency.capacity)
            self._sem_key = (loop, latency.capacity)
        return self._sem

    async def _generate(
        self, send: Send, client: _Client, body: dict[str, Any], n: int, fault: Fault | None
    ) -> bool:
        kind = fault.kind if fault is not None else None
        choices = await self._replies(body, n, kind == "empty_content")
        if isinstance(choices, str):
            await self._send_json(send, 500, error_body(500, choices))
            return True
        self._seq += 1
        cid = f"chatcmpl-fake{self.seed}-{self._seq}"
        created = int(time.time())
        model = body.get("model")
        model = model if isinstance(model, str) and model else self.model
        usage = None
        if self.usage:
            prompt = self._prompt_tokens(body, choices)
            completion = sum(c.tokens for c in choices)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        sem = self._semaphore()
        if sem is not None and not await client.acquire(sem):
            return False
        try:
            if body.get("stream") is True or kind == "malformed_sse":
                return await self._stream(
                    send, client, body, choices, usage, cid, created, model, kind, fault
                )
            return await self._complete(
                send, client, choices, usage, cid, created, model, kind, fault
            )
        finally:
            if sem is not None:
                sem.release()

    async def _complete(
        self,
        send: Send,
        client: _Client,
        choices: list[Choice],
        usage: dict[str, int] | None,
        cid: str,
        created: int,
        model: str,
        kind: str | None,
        fault: Fault | None,
    ) -> bool:
        if self.latency is not None:
            ttft, per_token = self._timing()
            longest = max((c.tokens for c in choices), default=0)
            if not await client.sleep(ttft + longest * per_token):
                return False
        if kind == "error_mid_stream":
            err = error_body(500, "Injected error in the middle of generation")
            await self._send_json(send, 200, err)
            return True
        obj: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [
                {"index": i, "message": c.message(), "logprobs": None, "finish_reason": c.finish}
                for i, c in enumerate(choices)
            ],
        }
        if usage is not None:
            obj["usage"] = usage
        payload = encode_json(obj).encode()
        if kind not in ("hang_mid_stream", "drop_connection"):
            await self._send_bytes(send, 200, payload)
            return True
        # Send the headers and part of the body, then stall or drop.
        assert fault is not None
        headers = [_JSON, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        half = max(len(payload) // 2, 1)
        await send({"type": "http.response.body", "body": payload[:half], "more_body": True})
        if kind == "drop_connection":
            raise _ConnectionDropped("injected drop_connection fault")
        if not await client.sleep(fault.delay_s if fault.delay_s > 0 else None):
            return False
        await send({"type": "http.response.body", "body": payload[half:]})
        return True

    async def _stream(  # noqa: C901
        self,
        send: Send,
        client: _Client,
        body: dict[str, Any],
        choices: list[Choice],
        usage: dict[str, int] | None,
        cid: str,
        created: int,
        model: str,
        kind: str | None,
        fault: Fault | None,
    ) -> bool:
        ev = Events(cid, created, model)
        size = self.stream_chunk_size
        lanes: list[list[str]] = []
        for i, choice in enumerate(choices):
            lane: list[str] = []
            if choice.content:
                pieces = word_pieces(choice.content)
                if size == 1:
                    lane.extend(ev.content(i, p) for p in pieces)
                else:
                    lane.extend(
                        ev.content(i, "".join(pieces[k : k + size]))
                        for k in range(0, len(pieces), size)
                    )
            if choice.tool_calls:
                lane.extend(ev.tool_steps(i, choice.tool_calls))
            lanes.append(lane)
        depth = max(map(len, lanes), default=0)
        if len(lanes) == 1:
            steps = lanes[0]
        else:
            steps = ["".join(lane[s] for lane in lanes if s < len(lane)) for s in range(depth)]
        head = "".join(ev.role(i, c.content is not None) for i, c in enumerate(choices))
        tail = "".join(ev.finish(i, c.finish) for i, c in enumerate(choices))
        if usage is not None:
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage") is True:
                tail += ev.usage(usage)
        tail += DONE

        if kind == "malformed_sse":
            steps = steps[:1] + ["data: {not json\n\n"]
        elif kind == "error_mid_stream":
            err = error_body(500, "Injected error in the middle of generation")
            steps = steps[:1]
            tail = f"data: {encode_json(err)}\n\n"

        ttft = per_step = 0.0
        if self.latency is not None:
            ttft, per_token = self._timing()
            per_step = per_token * size
            if not await client.sleep(ttft):
                return False
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})

        stall = kind in ("hang_mid_stream", "drop_connection")
        if per_step <= 0 and not stall and self.coalesce_stream:
            await send(
                {"type": "http.response.body", "body": (head + "".join(steps) + tail).encode()}
            )
            return True

        loop = asyncio.get_running_loop()
        first = head + steps[0] if steps else head
        await send({"type": "http.response.body", "body": first.encode(), "more_body": True})
        if stall:
            assert fault is not None
            if kind == "drop_connection":
                raise _ConnectionDropped("injected drop_connection fault")
            if not await client.sleep(fault.delay_s if fault.delay_s > 0 else None):
                return False
        start = loop.time()
        for s in range(1, len(steps)):
            if per_step > 0:
                wait = start + s * per_step - loop.time()
                if wait > 0 and not await client.sleep(wait):
                    return False
            if client.gone:
                return False
            await send({"type": "http.response.body", "body": steps[s].encode(), "more_body": True})
        await send({"type": "http.response.body", "body": tail.encode()})
        return True

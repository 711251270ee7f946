"""A fake OpenAI-compatible chat-completions server, as a raw ASGI application.

:class:`FakeOpenAIServer` answers ``POST /v1/chat/completions`` (streaming or not),
``GET /v1/models`` and ``GET /health`` the way vLLM, SGLang or llama.cpp would, without a
model. What it answers comes from a *responder* (the deterministic :func:`default_responder`
unless you give one); how fast it answers comes from a :class:`LatencyModel`; how it misbehaves
comes from :class:`Fault` objects injected with :meth:`FakeOpenAIServer.inject`.

It depends on the standard library only. Run it with :func:`polyfuse.testing.serve` (uvicorn)
or mount it in any ASGI server. The hot path avoids per-chunk dict building and repeated
serialisation so that CPU-bound benchmarks measure the client, not the fake.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

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

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FaultKind = Literal[
    "status",
    "slow_first_byte",
    "hang_mid_stream",
    "malformed_json",
    "malformed_sse",
    "drop_connection",
    "empty_content",
    "wrong_choices",
    "error_mid_stream",
]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))


@dataclass
class FakeReply:
    """What the fake server answers for one choice.

    Attributes:
        content: The assistant text (``None`` for a pure tool call).
        tool_calls: OpenAI-shaped tool calls, ``{"id", "type": "function", "function":
            {"name", "arguments"}}``. A missing ``id`` or ``type`` is filled in and dict
            ``arguments`` are serialised to JSON.
        finish_reason: Defaults to ``"tool_calls"`` when there are tool calls, else ``"stop"``.
        prompt_tokens: Overrides the prompt token count (the first choice that sets it wins).
        completion_tokens: Overrides the completion token count of this choice; by default the
            number of whitespace-separated words of ``content`` and tool arguments (at least 1).
    """

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


Responder = Callable[[dict[str, Any], int], FakeReply | str | Awaitable[FakeReply | str]]
"""``(request body, choice index) -> reply``; a ``str`` is the content. May be async."""


@dataclass
class Fault:
    """One injected fault, applied to the next matching chat request(s).

    Attributes:
        kind: What goes wrong:

            * ``status``: answer ``status`` with ``body`` and ``headers``.
            * ``slow_first_byte``: wait ``delay_s`` before answering at all.
            * ``hang_mid_stream``: send the start of the answer (role chunk and one content
              chunk when streaming, part of the JSON body otherwise), then stall for
              ``delay_s`` (forever if 0) before sending the rest.
            * ``malformed_json``: 200 with the truncated JSON body ``{"choices": [``.
            * ``malformed_sse``: an SSE stream with a ``data: {not json`` event.
            * ``drop_connection``: send the headers and part of the body, then close the
              connection abruptly.
            * ``empty_content``: every choice has content ``""``.
            * ``wrong_choices``: return ``choices`` choices whatever ``n`` asked for.
            * ``error_mid_stream``: one content chunk, then an SSE ``{"error": ...}`` event and
              the end of the stream (no ``[DONE]``); non-streaming requests get a 200 whose
              body is the error object.
        status: HTTP status for ``kind="status"``.
        body: Body for ``kind="status"``; JSON-encoded unless ``str`` or ``bytes``. Defaults to
            OpenAI's nested ``{"error": {"message", "type", "param", "code"}}``.
        headers: Extra response headers, e.g. ``{"Retry-After": "1"}``.
        delay_s: Delay of ``slow_first_byte``; stall of ``hang_mid_stream`` (0 = forever).
        choices: Number of choices for ``wrong_choices`` (0 allowed).
        times: How many requests the fault applies to.
        match_model: Only requests whose ``body["model"]`` equals this.
    """

    kind: FaultKind
    status: int = 500
    body: Any = None
    headers: dict[str, str] | None = None
    delay_s: float = 0.0
    choices: int = 0
    times: int = 1
    match_model: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}"
            )
        if self.times < 1:
            raise ValueError("Fault.times must be >= 1")
        if self.choices < 0:
            raise ValueError("Fault.choices must be >= 0")


@dataclass
class LatencyModel:
    """How fast the fake server generates; deterministic given the server's ``seed``.

    Attributes:
        ttft_s: Time to first token (after waiting for capacity).
        tokens_per_s: Generation speed; ``None`` means instant. Streams are paced chunk by
            chunk; non-streaming requests sleep the total time.
        jitter: Relative jitter: each request's times are multiplied by a factor drawn
            uniformly from ``[1 - jitter, 1 + jitter]`` by a ``random.Random(seed)``.
        capacity: At most this many requests generate at once; the others wait in FIFO order.
            A request holds one slot whatever its ``n``.
        straggler_every: Every k-th generating request (1-based) is a straggler; 0 = none.
        straggler_factor: How many times slower a straggler is.
        output_tokens: Forces the completion length: the default responder pads (with
            ``tok``) or truncates its text to this many words; for JSON or tool-call replies
            only the reported ``completion_tokens`` (and so the timing) changes.
    """

    ttft_s: float = 0.0
    tokens_per_s: float | None = None
    jitter: float = 0.0
    capacity: int | None = None
    straggler_every: int = 0
    straggler_factor: float = 10.0
    output_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.tokens_per_s is not None and self.tokens_per_s <= 0:
            raise ValueError("LatencyModel.tokens_per_s must be > 0 or None")
        if self.capacity is not None and self.capacity < 1:
            raise ValueError("LatencyModel.capacity must be >= 1 or None")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("LatencyModel.jitter must be in [0, 1)")
        if self.output_tokens is not None and self.output_tokens < 1:
            raise ValueError("LatencyModel.output_tokens must be >= 1 or None")


# --------------------------------------------------------------------------------------------
# Default responder


_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "a@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def schema_instance(schema: Any, *, all_properties: bool = True) -> Any:
    """Build a small JSON value that matches a JSON schema.

    Per-type values: integer 3, number 3.0, string ``"a"``, boolean ``True``, array ``[]``
    (or ``minItems`` items), object with its properties filled recursively (every property, or
    only the required ones when ``all_properties`` is false). ``const`` and the first ``enum``
    value win; local ``$ref`` (``#/$defs/...``), ``anyOf``/``oneOf``/``allOf`` (first non-null
    branch), nullable type lists, bounds and common string formats are handled.
    """
    return _instance(schema, schema, all_properties, 0)


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _bounded(value: float, schema: dict[str, Any], step: float) -> float:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(lo, (int, float)) and value < lo:
        value = lo
    if isinstance(xlo, (int, float)) and not isinstance(xlo, bool) and value <= xlo:
        value = xlo + step
    if isinstance(hi, (int, float)) and value > hi:
        value = hi
    if isinstance(xhi, (int, float)) and not isinstance(xhi, bool) and value >= xhi:
        value = xhi - step
    return value


def _instance(schema: Any, root: Any, all_properties: bool, depth: int) -> Any:  # noqa: C901
    if not isinstance(schema, dict) or depth > 32:
        return None
    s: dict[str, Any] = schema
    if "const" in s:
        return s["const"]
    enum = s.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    ref = s.get("$ref")
    if isinstance(ref, str):
        return _instance(_resolve(ref, root), root, all_properties, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        options = s.get(key)
        if isinstance(options, list) and options:
            branches = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _instance((branches or options)[0], root, all_properties, depth + 1)
    kind = s.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in s else "array" if "items" in s else None
    if kind == "object":
        props = s.get("properties")
        props = props if isinstance(props, dict) else {}
        if all_properties:
            names: Iterable[Any] = props
        else:
            required = s.get("required")
            names = required if isinstance(required, list) else ()
        return {
            str(name): (
                _instance(props[name], root, all_properties, depth + 1) if name in props else "a"
            )
            for name in names
        }
    if kind == "array":
        count = s.get("minItems")
        count = count if isinstance(count, int) and count > 0 else 0
        items = s.get("items")
        return [_instance(items, root, all_properties, depth + 1) for _ in range(min(count, 16))]
    if kind == "integer":
        return int(_bounded(3, s, 1))
    if kind == "number":
        return float(_bounded(3.0, s, 0.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    fmt = s.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt]
    min_length = s.get("minLength")
    if isinstance(min_length, int) and min_length > 1:
        return "a" * min(min_length, 1024)
    return "a"


def _text(content: Any) -> str:
    """The text of a message ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
        return " ".join(parts)
    return ""


def _pick_tool(tools: list[Any], tool_choice: Any) -> dict[str, Any] | None:
    wanted = None
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        if isinstance(fn, dict):
            wanted = fn.get("name")
    first = None
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        fn = tool.get("function")
        if not isinstance(fn, dict):
            continue
        if wanted is None or fn.get("name") == wanted:
            return fn
        if first is None:
            first = fn
    return first


def _is_text_reply(body: dict[str, Any], reply: FakeReply) -> bool:
    if reply.tool_calls or reply.content is None:
        return False
    rf = body.get("response_format")
    return not (isinstance(rf, dict) and rf.get("type") in ("json_schema", "json_object"))


def default_responder(body: dict[str, Any], index: int) -> FakeReply:
    """The deterministic reply the fake server gives when no responder is set.

    * Last message from a tool: ``"The tool said: <tool content>"``.
    * ``tools`` given, ``tool_choice`` not ``"none"`` and the last message from the user: a
      call to the first tool (or the one ``tool_choice`` names) whose arguments fill the
      schema's required properties (see :func:`schema_instance`).
    * ``response_format`` ``json_schema``: an instance of the schema as JSON text;
      ``json_object``: ``{"answer": "<text>"}``.
    * Otherwise ``"Answer <index>: <first 12 words of the last user message>"``, with
      ``" (seed <seed>)"`` after the index when the request has a ``seed``.
    """
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    role = last.get("role")
    if role == "tool":
        return FakeReply(content="The tool said: " + _text(last.get("content")))
    tools = body.get("tools")
    if isinstance(tools, list) and tools and role == "user" and body.get("tool_choice") != "none":
        fn = _pick_tool(tools, body.get("tool_choice"))
        if fn is not None:
            args = schema_instance(fn.get("parameters") or {}, all_properties=False)
            if not isinstance(args, dict):
                args = {}
            call = {
                "id": f"call_{index}_0",
                "type": "function",
                "function": {"name": str(fn.get("name", "")), "arguments": json.dumps(args)},
            }
            return FakeReply(tool_calls=[call])
    user_text = ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            user_text = _text(message.get("content"))
            break
    echo = " ".join(user_text.split(maxsplit=12)[:12])
    seed = body.get("seed")
    head = f"Answer {index}" if seed is None else f"Answer {index} (seed {seed})"
    text = f"{head}: {echo}"
    rf = body.get("response_format")
    if isinstance(rf, dict):
        if rf.get("type") == "json_schema":
            spec = rf.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            return FakeReply(content=json.dumps(schema_instance(schema or {"type": "object"})))
        if rf.get("type") == "json_object":
            return FakeReply(content=json.dumps({"answer": text}))
    return FakeReply(content=text)


# --------------------------------------------------------------------------------------------
# Wire helpers

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_WORDS = re.compile(r"\s*\S+")
_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
_DONE = "data: [DONE]\n\n"
_TRUNCATED_JSON = b'{"choices": ['
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_HEALTH_PATHS = frozenset({"/health", "/v1/health"})
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "unavailable_error",
}


class _ConnectionDropped(Exception):
    """Raised inside the app to make the ASGI server close the connection on purpose."""


def _error_body(status: int, message: str, code: str | int | None = None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _pieces(content: str) -> list[str]:
    """Split text into word pieces whose concatenation is the text."""
    pieces = _WORDS.findall(content)
    if not pieces:
        return [content] if content else []
    tail = len(content) - sum(map(len, pieces))
    if tail:
        pieces[-1] += content[-tail:]
    return pieces


def _pad_or_cut(content: str, words: int) -> str:
    pieces = _pieces(content)
    if len(pieces) >= words:
        return "".join(pieces[:words]).rstrip()
    return content.rstrip() + " tok" * (words - len(pieces))


def _norm_tool_calls(calls: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, call in enumerate(calls):
        fn = call.get("function")
        fn = dict(fn) if isinstance(fn, dict) else {}
        args = fn.get("arguments", "")
        if not isinstance(args, str):
            fn["arguments"] = json.dumps(args)
        fn.setdefault("name", "")
        out.append(
            {
                "id": call.get("id") or f"call_{index}_{j}",
                "type": call.get("type") or "function",
                "function": fn,
            }
        )
    return out


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


class _Choice:
    """A normalised reply for one choice index."""

    __slots__ = ("content", "finish", "prompt_tokens", "tokens", "tool_calls")

    def __init__(self, reply: FakeReply, index: int, forced_tokens: int | None) -> None:
        self.content = reply.content
        self.tool_calls = _norm_tool_calls(reply.tool_calls, index) if reply.tool_calls else None
        self.finish = reply.finish_reason or ("tool_calls" if self.tool_calls else "stop")
        self.prompt_tokens = reply.prompt_tokens
        tokens = reply.completion_tokens
        if tokens is None:
            tokens = forced_tokens
        if tokens is None:
            tokens = len(self.content.split()) if self.content else 0
            for call in self.tool_calls or ():
                tokens += len(call["function"]["arguments"].split())
            tokens = max(tokens, 1)
        self.tokens = tokens

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = self.tool_calls
        return msg


class _Events:
    """Builds SSE events of one stream from a pre-serialised prefix."""

    __slots__ = ("prefix",)

    def __init__(self, cid: str, created: int, model: str) -> None:
        self.prefix = (
            f'data: {{"id":{_encode(cid)},"object":"chat.completion.chunk","created":{created},'
            f'"model":{_encode(model)},"system_fingerprint":null,"choices":['
        )

    def delta(self, index: int, delta_json: str) -> str:
        return (
            f'{self.prefix}{{"index":{index},"delta":{delta_json},"logprobs":null,'
            f'"finish_reason":null}}]}}\n\n'
        )

    def content(self, index: int, text: str) -> str:
        return self.delta(index, f'{{"content":{_encode(text)}}}')

    def role(self, index: int, has_content: bool) -> str:
        content = '""' if has_content else "null"
        return self.delta(index, f'{{"role":"assistant","content":{content}}}')

    def tool_steps(self, index: int, calls: list[dict[str, Any]]) -> list[str]:
        steps: list[str] = []
        for j, call in enumerate(calls):
            fn = call["function"]
            head = {
                "tool_calls": [
                    {
                        "index": j,
                        "id": call["id"],
                        "type": call["type"],
                        "function": {"name": fn["name"], "arguments": ""},
                    }
                ]
            }
            steps.append(self.delta(index, _encode(head)))
            args: str = fn["arguments"]
            half = len(args) // 2
            for part in (args[:half], args[half:]) if half else (args,):
                if part:
                    piece = {"tool_calls": [{"index": j, "function": {"arguments": part}}]}
                    steps.append(self.delta(index, _encode(piece)))
        return steps

    def finish(self, index: int, reason: str) -> str:
        return (
            f'{self.prefix}{{"index":{index},"delta":{{}},"logprobs":null,'
            f'"finish_reason":{_encode(reason)}}}]}}\n\n'
        )

    def usage(self, usage: dict[str, int]) -> str:
        return f'{self.prefix}],"usage":{_encode(usage)}}}\n\n'


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
                    await self._send_json(send, 405, _error_body(405, "Method not allowed"))
                    return
                await self._chat(scope, receive, send)
            elif path in _MODELS_PATHS and method == "GET":
                entry = {"id": self.model, "object": "model", "created": 0, "owned_by": "polyfuse"}
                await self._send_json(send, 200, {"object": "list", "data": [entry]})
            elif path in _HEALTH_PATHS and method == "GET":
                await self._send_bytes(send, 200, b'{"status":"ok"}')
            else:
                body = _error_body(404, f"Not found: {method} {path}", "not_found")
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
        await self._send_bytes(send, status, _encode(obj).encode())

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
            await self._send_json(send, 400, _error_body(400, "Request body is not valid JSON"))
            return True
        if not isinstance(body, dict):
            await self._send_json(send, 400, _error_body(400, "Request body must be a JSON object"))
            return True
        if self.record:
            self.requests.append(body)
            self.request_headers.append(
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            )
        if self.api_key is not None and not self._authorised(scope):
            err = _error_body(401, "Incorrect API key provided", "invalid_api_key")
            await self._send_json(send, 401, err)
            return True
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            err = _error_body(400, "'messages' must be a non-empty list", "invalid_messages")
            await self._send_json(send, 400, err)
            return True
        n = self._choice_count(body)
        if isinstance(n, str):
            await self._send_json(send, 400, _error_body(400, n))
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
            payload = _encode(
                _error_body(fault.status, f"Injected HTTP {fault.status} error", fault.status)
            ).encode()
        elif isinstance(body, bytes):
            payload = body
            content_type = (b"content-type", b"application/octet-stream")
        elif isinstance(body, str):
            payload = body.encode()
            content_type = (b"content-type", b"text/plain; charset=utf-8")
        else:
            payload = _encode(body).encode()
        for name, value in extra:
            if name == b"content-type":
                content_type = (name, value)
        extra = [h for h in extra if h[0] not in (b"content-type", b"content-length")]
        await self._send_bytes(send, fault.status, payload, content_type, extra)

    # -- generation -----------------------------------------------------------------------

    async def _replies(self, body: dict[str, Any], n: int, empty: bool) -> list[_Choice] | str:
        """Each choice's reply, or an error message if the responder failed."""
        latency = self.latency
        forced = latency.output_tokens if latency is not None else None
        responder = self.responder
        choices: list[_Choice] = []
        for i in range(n):
            if empty:
                choices.append(_Choice(FakeReply(content=""), i, None))
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
                choices.append(_Choice(result, i, None))
            except Exception as exc:
                return f"responder failed: {exc!r}"
        return choices

    @staticmethod
    def _shape_default(
        body: dict[str, Any], reply: FakeReply, index: int, forced: int | None
    ) -> _Choice:
        if not _is_text_reply(body, reply):
            return _Choice(reply, index, forced)
        assert reply.content is not None
        if forced is not None:
            reply.content = _pad_or_cut(reply.content, forced)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            if len(reply.content.split()) > limit:
                reply.content = _pad_or_cut(reply.content, limit)
                reply.finish_reason = "length"
        return _Choice(reply, index, None)

    def _prompt_tokens(self, body: dict[str, Any], choices: list[_Choice]) -> int:
        for choice in choices:
            if choice.prompt_tokens is not None:
                return choice.prompt_tokens
        total = 0
        for message in body["messages"]:
            if isinstance(message, dict):
                total += len(_text(message.get("content")).split())
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
            await self._send_json(send, 500, _error_body(500, choices))
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
        choices: list[_Choice],
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
            err = _error_body(500, "Injected error in the middle of generation")
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
        payload = _encode(obj).encode()
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
        choices: list[_Choice],
        usage: dict[str, int] | None,
        cid: str,
        created: int,
        model: str,
        kind: str | None,
        fault: Fault | None,
    ) -> bool:
        ev = _Events(cid, created, model)
        size = self.stream_chunk_size
        lanes: list[list[str]] = []
        for i, choice in enumerate(choices):
            lane: list[str] = []
            if choice.content:
                pieces = _pieces(choice.content)
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
        tail += _DONE

        if kind == "malformed_sse":
            steps = steps[:1] + ["data: {not json\n\n"]
        elif kind == "error_mid_stream":
            err = _error_body(500, "Injected error in the middle of generation")
            steps = steps[:1]
            tail = f"data: {_encode(err)}\n\n"

        ttft = per_step = 0.0
        if self.latency is not None:
            ttft, per_token = self._timing()
            per_step = per_token * size
            if not await client.sleep(ttft):
                return False
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})

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

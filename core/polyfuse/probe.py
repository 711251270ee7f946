"""What an OpenAI-compatible server really does: ``n``, usage, streaming, tool calls, latency.

Servers differ in ways that matter to fusion: some honour ``n`` (one request, N choices),
some ignore it (Ollama, TGI) or reject it (llama.cpp's older servers), some count the usage of
only one choice when ``n > 1`` (llama.cpp's current server), some send no usage in streams.
:func:`probe_endpoint` sends a handful of tiny requests, one at a time, and reports what it saw
and the ``supports_n`` value the engine should use for that endpoint.

Example::

    report = await probe_endpoint(OpenAIEndpoint("http://127.0.0.1:8000/v1", model="qwen"))
    print(report.n, report.supports_n, report.ttft_s)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from .backends._http import Channel, TransportError
from .backends._policy import backend_error
from .backends._wire import error_message, retry_after_seconds
from .backends.openai import OpenAIEndpoint
from .errors import (
    APIConnectionError,
    BackendError,
    InvalidRequestError,
    ProtocolError,
    status_error_for,
)

__all__ = ["ProbeReport", "probe_endpoint"]

NSupport = Literal["honoured", "ignored", "rejected", "partial"]
NUsage = Literal["all-choices", "under-counted", "unknown"]
ToolSupport = Literal["supported", "ignored", "rejected"]

# Asks for a long answer, so that every choice is cut at max_tokens (which makes the usage
# of n > 1 checkable); the fake test server echoes it, and it is longer than max_tokens words.
_PROMPT = "Write a long, detailed story about a dragon who learns to fly over the stormy sea."
_N_ATTEMPTS = 3
_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class ProbeReport(BaseModel):
    """What one endpoint did when probed.

    Attributes:
        base_url / model: what was probed.
        served_model: the ``model`` the server put in its answers.
        latency_s: seconds for a non-streaming answer of ``max_tokens`` tokens.
        ttft_s: time to the first streamed token.
        stream_tokens_per_s: decode speed seen in the stream (completion tokens after the
            first, per second), when the stream reported usage.
        n: what a request with ``n = n_asked`` returned: ``honoured`` (that many choices),
            ``ignored`` (one), ``partial`` (another count) or ``rejected`` (an HTTP error).
        n_usage: with ``n`` honoured, whether ``usage`` counts every choice (``all-choices``),
            fewer tokens than the choices must hold (``under-counted``; llama.cpp counts one
            choice), or could not be told (``unknown``).
        usage: a non-streaming answer reports ``usage``.
        streaming: ``stream: true`` works; ``streaming_detail`` says why not when it fails.
        stream_usage: a stream with ``stream_options.include_usage`` ends with a usage chunk.
        stream_done: the stream ends with ``data: [DONE]``.
        tool_calls: a request forcing a tool call got one (``supported``), got text
            (``ignored``), or got an HTTP error (``rejected``).
        supports_n: the value to give ``OpenAIEndpoint(supports_n=...)``: True only when ``n``
            is honoured and its usage is not under-counted.
        notes: what this means for fusion, in words.
    """

    base_url: str
    model: str
    served_model: str | None = None
    max_tokens: int
    latency_s: float
    ttft_s: float | None = None
    stream_tokens_per_s: float | None = None
    n_asked: int
    n: NSupport
    n_detail: str
    n_usage: NUsage | None = None
    usage: bool
    streaming: bool
    streaming_detail: str | None = None
    stream_usage: bool
    stream_done: bool
    tool_calls: ToolSupport
    tool_calls_detail: str | None = None
    supports_n: bool
    notes: list[str] = Field(default_factory=list)


async def probe_endpoint(
    endpoint: OpenAIEndpoint, *, max_tokens: int = 8, n: int = 3
) -> ProbeReport:
    """Probe ``endpoint`` with four small requests (sent one after the other).

    Args:
        endpoint: the endpoint to probe (its URL, model, key, headers and timeouts are used).
        max_tokens: tokens asked for in each answer (small keeps the probe fast; the prompt
            asks for a long answer so that every choice stops at this length).
        n: choices asked for in the ``n`` check (at least 2).

    Raises:
        APIConnectionError / APITimeoutError: the server cannot be reached.
        APIStatusError (and subclasses): the basic request was refused (wrong key, URL, model).
        ProtocolError: the server does not speak the OpenAI protocol.
    """
    if n < 2:
        raise InvalidRequestError(f"n must be >= 2 to tell whether a server honours it (got {n})")
    if max_tokens < 1:
        raise InvalidRequestError(f"max_tokens must be >= 1 (got {max_tokens})")
    # The endpoint's own transport, headers and timeouts (TLS, proxies and a plugged transport
    # included); the probe sends each request once: it reports what the server does.
    channel = endpoint.transport.open(
        "POST", endpoint.base_url + "/chat/completions", endpoint._headers, endpoint._timeouts
    )
    try:
        prober = _Prober(channel, endpoint, max_tokens)
        basic = await prober.basic()
        n_result = await prober.n_check(n)
        stream = await prober.stream()
        tools = await prober.tools()
    finally:
        await channel.aclose()
    return _report(endpoint, max_tokens, n, basic, n_result, stream, tools)


# ---------------------------------------------------------------------------------- requests


class _Basic(BaseModel):
    latency_s: float
    served_model: str | None
    usage: bool


class _NResult(BaseModel):
    support: NSupport
    detail: str
    usage: NUsage | None = None


class _Stream(BaseModel):
    works: bool
    detail: str | None = None
    ttft_s: float | None
    tokens_per_s: float | None
    usage: bool
    done: bool


class _Tools(BaseModel):
    support: ToolSupport
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class _Answer:
    status_code: int
    content: bytes | bytearray
    retry_after: str | None


class _Prober:
    def __init__(self, channel: Channel, endpoint: OpenAIEndpoint, max_tokens: int):
        self.channel = channel
        self.name = endpoint.name
        self.url = endpoint.base_url + "/chat/completions"
        self.model = endpoint.model
        self.max_tokens = max_tokens

    def _body(self, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": _PROMPT}],
            "max_tokens": self.max_tokens,
            "temperature": 0.7,
        }
        body.update(extra)
        return body

    async def _post(self, body: dict[str, Any]) -> _Answer:
        try:
            reply = await self.channel.send(json.dumps(body).encode())
            try:
                content = await reply.read()
            finally:
                await reply.aclose()
        except TransportError as exc:
            raise _unreachable(exc, self.url, self.name) from None
        return _Answer(reply.status, content, reply.header("retry-after"))

    def _json(self, response: _Answer) -> dict[str, Any]:
        try:
            data = json.loads(response.content)
        except ValueError:
            raise ProtocolError(
                f"the answer is not JSON: {bytes(response.content[:200])!r}", endpoint=self.name
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise ProtocolError("the answer has no 'choices' list", endpoint=self.name)
        return data

    async def basic(self) -> _Basic:
        started = time.perf_counter()
        response = await self._post(self._body())
        latency = time.perf_counter() - started
        if response.status_code >= 400:
            message, decoded = error_message(response.content, response.status_code)
            raise status_error_for(
                response.status_code,
                message,
                endpoint=self.name,
                body=decoded,
                retry_after=retry_after_seconds(response.retry_after),
            )
        data = self._json(response)
        model = data.get("model")
        return _Basic(
            latency_s=latency,
            served_model=model if isinstance(model, str) else None,
            usage=_completion_tokens(data) is not None,
        )

    async def n_check(self, n: int) -> _NResult:
        # When choices stop early, their usage may not be checkable: ask again (at most 3 times).
        result = await self._n_once(n)
        for _ in range(_N_ATTEMPTS - 1):
            if result.usage != "unknown":
                break
            result = await self._n_once(n)
        return result

    async def _n_once(self, n: int) -> _NResult:
        response = await self._post(self._body(n=n))
        if response.status_code >= 400:
            message, _ = error_message(response.content, response.status_code)
            return _NResult(support="rejected", detail=f"HTTP {response.status_code}: {message}")
        data = self._json(response)
        choices = [c for c in data["choices"] if isinstance(c, dict)]
        if len(choices) == n:
            return _NResult(
                support="honoured",
                detail=f"{n} choices for n={n}",
                usage=self._n_usage(data, choices, n),
            )
        support: NSupport = "ignored" if len(choices) == 1 else "partial"
        return _NResult(support=support, detail=f"{len(choices)} choice(s) for n={n}")

    def _n_usage(self, data: dict[str, Any], choices: list[dict[str, Any]], n: int) -> NUsage:
        tokens = _completion_tokens(data)
        if tokens is None:
            return "unknown"
        # A choice cut at max_tokens has exactly max_tokens tokens; any other has at least one.
        cut = sum(1 for c in choices if c.get("finish_reason") == "length")
        at_least = cut * self.max_tokens + (n - cut)
        if tokens < at_least:
            return "under-counted"
        if tokens > self.max_tokens:  # more than any single choice can hold
            return "all-choices"
        return "unknown"

    async def stream(self) -> _Stream:
        body = self._body(stream=True, stream_options={"include_usage": True})
        started = time.perf_counter()
        ttft: float | None = None
        tokens: int | None = None
        done = False
        try:
            response = await self.channel.send(json.dumps(body).encode())
            try:
                if response.status >= 400:
                    content = await response.read()
                    message, _ = error_message(content, response.status)
                    return _Stream(
                        works=False,
                        detail=f"HTTP {response.status}: {message}",
                        ttft_s=None,
                        tokens_per_s=None,
                        usage=False,
                        done=False,
                    )
                async for line in response.lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    chunk = _chunk(payload, self.name)
                    if ttft is None and _has_content(chunk):
                        ttft = time.perf_counter() - started
                    count = _completion_tokens(chunk)
                    if count is not None:
                        tokens = count
            finally:
                await response.aclose()
        except TransportError as exc:
            raise _unreachable(exc, self.url, self.name) from None
        elapsed = time.perf_counter() - started
        speed = None
        if tokens is not None and ttft is not None and tokens > 1 and elapsed > ttft:
            speed = (tokens - 1) / (elapsed - ttft)
        return _Stream(
            works=True, ttft_s=ttft, tokens_per_s=speed, usage=tokens is not None, done=done
        )

    async def tools(self) -> _Tools:
        body = self._body(
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=max(self.max_tokens, 64),
        )
        response = await self._post(body)
        if response.status_code >= 400:
            message, _ = error_message(response.content, response.status_code)
            return _Tools(support="rejected", detail=f"HTTP {response.status_code}: {message}")
        data = self._json(response)
        first = data["choices"][0] if data["choices"] else {}
        message = first.get("message") if isinstance(first, dict) else None
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if isinstance(calls, list) and calls:
            function = calls[0].get("function", {}) if isinstance(calls[0], dict) else {}
            return _Tools(
                support="supported",
                detail=f"{function.get('name')}({function.get('arguments')})",
            )
        return _Tools(support="ignored", detail="answered with text despite a forced tool_choice")


# ---------------------------------------------------------------------------------- helpers


def _unreachable(exc: TransportError, url: str, endpoint: str) -> BackendError:
    error = backend_error(exc, endpoint)
    if isinstance(error, APIConnectionError):
        return APIConnectionError(f"cannot reach {url} ({error.detail})", endpoint=endpoint)
    return error


def _chunk(payload: str, endpoint: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        raise ProtocolError(f"malformed SSE event: {payload[:200]!r}", endpoint=endpoint) from None
    if not isinstance(data, dict):
        raise ProtocolError("an SSE event is not a JSON object", endpoint=endpoint)
    return data


def _has_content(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict):
            delta = choice.get("delta") or {}
            if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")):
                return True
    return False


def _completion_tokens(data: dict[str, Any]) -> int | None:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    value = usage.get("completion_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _report(
    endpoint: OpenAIEndpoint,
    max_tokens: int,
    n: int,
    basic: _Basic,
    n_result: _NResult,
    stream: _Stream,
    tools: _Tools,
) -> ProbeReport:
    supports_n = n_result.support == "honoured" and n_result.usage != "under-counted"
    notes: list[str] = []
    if n_result.support == "honoured" and n_result.usage == "under-counted":
        notes.append(
            "n is honoured but usage under-counts its choices: use supports_n=False "
            "(polyfuse sends N requests, so token counts stay exact)"
        )
    elif not supports_n:
        notes.append(f"n is {n_result.support}: use supports_n=False (polyfuse sends N requests)")
    else:
        notes.append("n is honoured: one request per fusion samples all N candidates")
    if not basic.usage:
        notes.append("no usage in answers: token counts will be recorded as missing")
    if not stream.works:
        notes.append(f"streaming fails ({stream.detail}): fused answers cannot be streamed")
    elif not stream.usage:
        notes.append(
            "no usage in streams: streamed answers (and stream_candidates) record no tokens"
        )
    if tools.support != "supported":
        notes.append("tool calls do not work here: do not fuse agent steps on this endpoint")
    return ProbeReport(
        base_url=endpoint.base_url,
        model=endpoint.model,
        served_model=basic.served_model,
        max_tokens=max_tokens,
        latency_s=basic.latency_s,
        ttft_s=stream.ttft_s,
        stream_tokens_per_s=stream.tokens_per_s,
        n_asked=n,
        n=n_result.support,
        n_detail=n_result.detail,
        n_usage=n_result.usage,
        usage=basic.usage,
        streaming=stream.works,
        streaming_detail=stream.detail,
        stream_usage=stream.usage,
        stream_done=stream.done,
        tool_calls=tools.support,
        tool_calls_detail=tools.detail,
        supports_n=supports_n,
        notes=notes,
    )

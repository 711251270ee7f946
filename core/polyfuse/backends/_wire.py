"""Reading what OpenAI-compatible servers send: error bodies, Retry-After, responses, SSE."""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import Any

from ..errors import ProtocolError
from ..usage import Usage
from .base import Completion, StreamDelta, parse_tool_calls

_MAX_BODY_IN_ERROR = 2000


def error_message(body: bytes | bytearray, status_code: int) -> tuple[str, Any]:
    """The server's error message and decoded body, from any of the common shapes.

    Shapes: OpenAI nested ``{"error": {"message": ...}}``, flat ``{"object": "error",
    "message": ...}`` (SGLang, old vLLM), TGI ``{"error": "...", "error_type": ...}`` and
    FastAPI ``{"detail": ...}``; anything else is shown as text.
    """
    text = body[:_MAX_BODY_IN_ERROR].decode("utf-8", errors="replace")
    try:
        data = json.loads(body)
    except ValueError:
        return (text.strip() or f"HTTP {status_code} with an empty body"), text
    return _message_from_json(data) or text.strip() or f"HTTP {status_code}", data


def _message_from_json(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        if message:
            return str(message)
    if isinstance(error, str) and error:
        return error
    if data.get("message"):
        return str(data["message"])
    detail = data.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return None


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_response(
    body: bytes | bytearray, *, n: int, endpoint: str, latency_s: float
) -> list[Completion]:
    """Parse a non-streaming chat.completion body into completions."""
    try:
        data = json.loads(body)
    except ValueError:
        raise ProtocolError(
            f"the response is not valid JSON: {bytes(body[:200])!r}", endpoint=endpoint
        ) from None
    if not isinstance(data, dict):
        raise ProtocolError("the response is not a JSON object", endpoint=endpoint)
    if "error" in data and not data.get("choices"):
        message = _message_from_json(data) or "unknown error"
        raise ProtocolError(f"the server answered 200 with an error: {message}", endpoint=endpoint)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ProtocolError(f"the response has no choices (asked for n={n})", endpoint=endpoint)
    model = data.get("model") if isinstance(data.get("model"), str) else None
    usage = Usage.from_openai(data.get("usage") if isinstance(data.get("usage"), dict) else None)
    valid: list[dict[str, Any]] = [c for c in choices if isinstance(c, dict)]
    ordered = sorted(valid, key=_choice_index)[:n]
    completions: list[Completion] = []
    for position, choice in enumerate(ordered):
        message = choice.get("message")
        if not isinstance(message, dict):
            raise ProtocolError("a choice has no 'message' object", endpoint=endpoint)
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            content = _flatten_content(content)
        completions.append(
            Completion(
                content=content,
                tool_calls=parse_tool_calls(message.get("tool_calls"), endpoint=endpoint),
                finish_reason=choice.get("finish_reason"),
                usage=usage if position == 0 else Usage(),
                model=model,
                latency_s=latency_s,
            )
        )
    if not completions:
        raise ProtocolError("the response has no valid choices", endpoint=endpoint)
    return completions


def _flatten_content(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def parse_sse_data(payload: str, *, endpoint: str) -> StreamDelta | None:
    """Parse one SSE ``data:`` payload; None for ``[DONE]``."""
    try:
        data = json.loads(payload)
    except ValueError:
        raise ProtocolError(
            f"malformed SSE event (not JSON): {payload[:200]!r}", endpoint=endpoint
        ) from None
    if not isinstance(data, dict):
        raise ProtocolError("malformed SSE event (not an object)", endpoint=endpoint)
    if "error" in data and not data.get("choices"):
        from ..errors import ServerError

        message = _message_from_json(data) or "unknown error"
        raise ServerError(
            f"error sent mid-stream: {message}", endpoint=endpoint, status_code=500, body=data
        )
    delta = StreamDelta()
    model = data.get("model")
    if isinstance(model, str):
        delta.model = model
    usage = data.get("usage")
    if isinstance(usage, dict) and usage:
        delta.usage = Usage.from_openai(usage)
    choices = data.get("choices")
    if choices:
        choice = choices[0]
        if isinstance(choice, dict):
            inner = choice.get("delta") or {}
            content = inner.get("content")
            if content:
                delta.content = content if isinstance(content, str) else _flatten_content(content)
            tool_calls = inner.get("tool_calls")
            if tool_calls:
                delta.tool_calls = tool_calls
            if choice.get("finish_reason"):
                delta.finish_reason = choice["finish_reason"]
    return delta


def _choice_index(choice: dict[str, Any]) -> int:
    index = choice.get("index", 0)
    return index if isinstance(index, int) else 0

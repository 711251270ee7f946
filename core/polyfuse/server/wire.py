"""The response side of the wire protocol: ``chat.completion`` bodies and SSE chunks.

Chunks are assembled from pre-encoded pieces so that streaming a token costs one small
``json.dumps`` of the delta, not a model validation and a full re-serialisation.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ..messages import ToolCall
from ..redaction import Redactor, client_reason
from ..results import FusionResult
from ..usage import Usage

__all__ = [
    "DONE",
    "ChunkWriter",
    "completion_body",
    "extension_body",
    "finish_reason",
    "new_completion_id",
    "usage_body",
]

DONE = b"data: [DONE]\n\n"
_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def new_completion_id() -> str:
    """A fresh ``chatcmpl-...`` id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def finish_reason(result: FusionResult) -> str:
    """The result's finish reason, normalised to one OpenAI clients know (else ``stop``)."""
    reason = result.finish_reason
    return reason if reason in _FINISH_REASONS else "stop"


def usage_body(usage: Usage) -> dict[str, int]:
    """OpenAI ``usage``: the honest sum of every call the fusion made."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def extension_body(result: FusionResult, redact: Redactor) -> dict[str, Any]:
    """The ``polyfuse`` response extension: how the answer was made (the aggregation's notes,
    e.g. a consensus shortcut; ``sampling``: how adaptive sampling went, or ``None``), and
    every candidate.

    It goes through the same redaction as every other reply: failure texts become the
    endpoint, status and a short reason (:func:`client_reason`), and every other string
    (candidate answers) is scrubbed of known keys.
    """
    record = result.aggregation
    candidates: list[dict[str, Any]] = []
    for candidate in result.candidates:
        dumped = candidate.model_dump(mode="json")
        if candidate.error is not None:
            dumped["error"]["message"] = client_reason(candidate.error.message, redact)
        candidates.append(dumped)
    body = {
        "method": record.method,
        "selected": record.selected,
        "fallback_reason": (
            None
            if record.fallback_reason is None
            else client_reason(record.fallback_reason, redact)
        ),
        "usage": result.usage.model_dump_total(),
        "candidates_ok": len(result.succeeded),
        "candidates_failed": len(result.failed),
        "candidates": candidates,
        "scores": record.scores,
        "contributions": record.contributions,
        "notes": record.notes,
        "sampling": None if result.sampling is None else result.sampling.model_dump(),
    }
    # Failure texts went through client_reason (full redaction); the rest is model text.
    return redact.json(body, model_text=True)


def _message(result: FusionResult) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.message.content,
        "refusal": None,
    }
    if result.message.tool_calls:
        message["tool_calls"] = [call.model_dump() for call in result.message.tool_calls]
    return message


def completion_body(
    result: FusionResult,
    *,
    completion_id: str,
    model: str,
    created: int,
    extension: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` body for a fusion result."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": _message(result),
                "logprobs": None,
                "finish_reason": finish_reason(result),
            }
        ],
        "usage": usage_body(result.usage.total),
    }
    if extension is not None:
        body["polyfuse"] = extension
    return body


class ChunkWriter:
    """Encodes the SSE events of one streamed completion.

    With ``include_usage`` every chunk carries ``"usage": null`` and a last chunk with
    ``choices: []`` carries the usage, as OpenAI does.
    """

    __slots__ = ("_head", "_tail", "include_usage")

    def __init__(self, *, completion_id: str, model: str, include_usage: bool) -> None:
        self.include_usage = include_usage
        created = int(time.time())
        self._head = (
            f'data: {{"id":{_dumps(completion_id)},"object":"chat.completion.chunk",'
            f'"created":{created},"model":{_dumps(model)},"system_fingerprint":null,'
        )
        self._tail = ',"usage":null}\n\n' if include_usage else "}\n\n"

    def _choice(self, delta: str, finish: str | None = None, extra: str = "") -> bytes:
        reason = "null" if finish is None else _dumps(finish)
        return (
            f'{self._head}"choices":[{{"index":0,"delta":{delta},"logprobs":null,'
            f'"finish_reason":{reason}}}]{extra}{self._tail}'
        ).encode()

    def role(self) -> bytes:
        """The first chunk: the assistant role and empty content."""
        return self._choice('{"role":"assistant","content":"","refusal":null}')

    def content(self, text: str) -> bytes:
        """A piece of the answer's text."""
        return self._choice('{"content":' + _dumps(text) + "}")

    def tool_call(self, index: int, call: ToolCall) -> list[bytes]:
        """One tool call as OpenAI streams it: id and name first, then the arguments."""
        head = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.function.name, "arguments": ""},
        }
        args = {"index": index, "function": {"arguments": call.function.arguments}}
        return [
            self._choice('{"tool_calls":[' + _dumps(head) + "]}"),
            self._choice('{"tool_calls":[' + _dumps(args) + "]}"),
        ]

    def finish(self, reason: str, extension: dict[str, Any] | None = None) -> bytes:
        """The chunk with the finish reason (and the ``polyfuse`` extension, when asked)."""
        extra = "" if extension is None else ',"polyfuse":' + _dumps(extension)
        return self._choice("{}", reason, extra)

    def usage(self, usage: Usage) -> bytes:
        """The final usage chunk (``choices: []``)."""
        return (f'{self._head}"choices":[],"usage":{_dumps(usage_body(usage))}}}\n\n').encode()

    @staticmethod
    def error(error: dict[str, Any]) -> bytes:
        """An in-stream error event (after the headers are sent, the status cannot change)."""
        return b"data: " + _dumps(error).encode() + b"\n\n"

"""Chat-completion wire encoding for the fake server: JSON bodies, SSE chunks, error bodies."""

from __future__ import annotations

import json
import re
from typing import Any

from .responder import FakeReply

__all__ = [
    "DONE",
    "SSE_HEADERS",
    "Choice",
    "Events",
    "encode_json",
    "error_body",
    "pad_or_cut",
    "word_pieces",
]

# --------------------------------------------------------------------------------------------
# Wire helpers

encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_WORDS = re.compile(r"\s*\S+")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
DONE = "data: [DONE]\n\n"
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


def error_body(status: int, message: str, code: str | int | None = None) -> dict[str, Any]:
    """An OpenAI-style ``{"error": {...}}`` body for ``status``."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def word_pieces(content: str) -> list[str]:
    """Split text into word pieces whose concatenation is the text."""
    pieces = _WORDS.findall(content)
    if not pieces:
        return [content] if content else []
    tail = len(content) - sum(map(len, pieces))
    if tail:
        pieces[-1] += content[-tail:]
    return pieces


def pad_or_cut(content: str, words: int) -> str:
    """``content`` cut or padded (with ``" tok"``) to exactly ``words`` words."""
    pieces = word_pieces(content)
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


class Choice:
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


class Events:
    """Builds SSE events of one stream from a pre-serialised prefix."""

    __slots__ = ("prefix",)

    def __init__(self, cid: str, created: int, model: str) -> None:
        self.prefix = (
            f'data: {{"id":{encode_json(cid)},"object":"chat.completion.chunk","created":{created},'
            f'"model":{encode_json(model)},"system_fingerprint":null,"choices":['
        )

    def delta(self, index: int, delta_json: str) -> str:
        return (
            f'{self.prefix}{{"index":{index},"delta":{delta_json},"logprobs":null,'
            f'"finish_reason":null}}]}}\n\n'
        )

    def content(self, index: int, text: str) -> str:
        return self.delta(index, f'{{"content":{encode_json(text)}}}')

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
            steps.append(self.delta(index, encode_json(head)))
            args: str = fn["arguments"]
            half = len(args) // 2
            for part in (args[:half], args[half:]) if half else (args,):
                if part:
                    piece = {"tool_calls": [{"index": j, "function": {"arguments": part}}]}
                    steps.append(self.delta(index, encode_json(piece)))
        return steps

    def finish(self, index: int, reason: str) -> str:
        return (
            f'{self.prefix}{{"index":{index},"delta":{{}},"logprobs":null,'
            f'"finish_reason":{encode_json(reason)}}}]}}\n\n'
        )

    def usage(self, usage: dict[str, int]) -> str:
        return f'{self.prefix}],"usage":{encode_json(usage)}}}\n\n'

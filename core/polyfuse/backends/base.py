"""The backend protocol: anything that answers chat requests, plus the value types it returns."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import ProtocolError
from ..messages import ChatRequest, ToolCall, ToolCallFunction
from ..usage import Usage

__all__ = ["Backend", "Completion", "StreamAccumulator", "StreamDelta", "parse_tool_calls"]


@dataclass(slots=True)
class Completion:
    """One choice returned by a backend.

    When a server returns several choices in one response (``n > 1``), the response's usage is
    attached to the first choice and the others carry an empty :class:`Usage`, so that sums stay
    exact.
    """

    content: str | None
    tool_calls: list[ToolCall] | None = None
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage.missing)
    model: str | None = None
    latency_s: float = 0.0
    ttft_s: float | None = None
    retries: int = 0
    """How many times the request was sent again after a failure (see ``max_retries``)."""


@dataclass(slots=True)
class StreamDelta:
    """One parsed chunk of a streamed answer."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    retries: int = 0
    """On the first delta: how many times the request was sent again before it was answered."""


@runtime_checkable
class Backend(Protocol):
    """Something that answers chat requests: an endpoint, a wrapped framework model, ...

    Implementations must be safe to use from several event loops (one client per loop) and must
    raise :mod:`polyfuse.errors` types for failures.
    """

    @property
    def name(self) -> str:
        """A short label for logs and results (never a key)."""
        ...

    @property
    def model(self) -> str:
        """The model the backend serves."""
        ...

    supports_n: bool | None
    """Whether one request with ``n`` returns ``n`` choices: True, False, or None (learn it)."""

    async def complete(self, request: ChatRequest, *, n: int = 1) -> list[Completion]:
        """Answer ``request`` with up to ``n`` choices (fewer when the server ignores ``n``)."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamDelta]:
        """Stream one answer to ``request``; closing the iterator must abort the call."""
        ...

    async def aclose(self) -> None:
        """Release connections held for the running event loop."""
        ...


def parse_tool_calls(raw: Any, *, endpoint: str) -> list[ToolCall] | None:
    """Validate the ``tool_calls`` of a message; malformed ones raise :class:`ProtocolError`."""
    if not raw:
        return None
    if not isinstance(raw, list):
        raise ProtocolError("'tool_calls' is not a list", endpoint=endpoint)
    calls: list[ToolCall] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ProtocolError("a tool call is not an object", endpoint=endpoint)
        function = item.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ProtocolError("a tool call has no function name", endpoint=endpoint)
        arguments = function.get("arguments")
        if isinstance(arguments, (dict, list)):
            arguments = json.dumps(arguments)
        elif not isinstance(arguments, str):
            arguments = "{}"
        call_id = item.get("id") or f"call_{uuid.uuid4().hex[:24]}"
        calls.append(
            ToolCall(
                id=str(call_id),
                function=ToolCallFunction(name=function["name"], arguments=arguments),
            )
        )
    return calls


class StreamAccumulator:
    """Folds stream deltas into one :class:`Completion` (content, tool calls, usage)."""

    __slots__ = ("_parts", "_tools", "finish_reason", "model", "retries", "usage", "ttft_s")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._tools: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.usage: Usage | None = None
        self.ttft_s: float | None = None
        self.retries = 0

    def add(self, delta: StreamDelta) -> None:
        """Fold one delta in."""
        if delta.content:
            self._parts.append(delta.content)
        if delta.tool_calls:
            for piece in delta.tool_calls:
                index = piece.get("index", len(self._tools))
                slot = self._tools.setdefault(index, {"id": None, "name": "", "arguments": ""})
                if piece.get("id"):
                    slot["id"] = piece["id"]
                function = piece.get("function") or {}
                if function.get("name"):
                    slot["name"] += function["name"]
                arguments = function.get("arguments")
                if isinstance(arguments, str):
                    slot["arguments"] += arguments
                elif isinstance(arguments, dict):
                    slot["arguments"] += json.dumps(arguments)
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason
        if delta.model:
            self.model = delta.model
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.retries:
            self.retries = delta.retries

    @property
    def text(self) -> str:
        """The content received so far."""
        return "".join(self._parts)

    def tool_calls(self) -> list[ToolCall] | None:
        """The tool calls received so far."""
        if not self._tools:
            return None
        return [
            ToolCall(
                id=slot["id"] or f"call_{uuid.uuid4().hex[:24]}",
                function=ToolCallFunction(name=slot["name"], arguments=slot["arguments"] or "{}"),
            )
            for _, slot in sorted(self._tools.items())
        ]

    def completion(self, latency_s: float) -> Completion:
        """The accumulated answer."""
        tool_calls = self.tool_calls()
        return Completion(
            content=self.text if (self._parts or not tool_calls) else None,
            tool_calls=tool_calls,
            finish_reason=self.finish_reason,
            usage=self.usage if self.usage is not None else Usage.missing(),
            model=self.model,
            latency_s=latency_s,
            ttft_s=self.ttft_s,
            retries=self.retries,
        )

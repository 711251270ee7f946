"""Conversions between LangChain messages and polyfuse's OpenAI-shaped messages and results."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk

from polyfuse import InvalidRequestError, Usage
from polyfuse import ToolCall as PolyfuseToolCall

__all__ = [
    "langchain_tool_calls",
    "to_openai_messages",
    "tool_call_chunks",
    "usage_from_metadata",
    "usage_metadata",
]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_SUPPORTED = (SystemMessage, HumanMessage, AIMessage, ToolMessage, ChatMessage)


def to_openai_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI chat messages.

    Raises:
        InvalidRequestError: for message types a chat-completions request cannot carry
            (``FunctionMessage``, ``RemoveMessage``, a ``ChatMessage`` with an unknown role).
    """
    for index, message in enumerate(messages):
        if not isinstance(message, _SUPPORTED):
            raise InvalidRequestError(
                f"message {index} is a {type(message).__name__}, which polyfuse cannot send; "
                "use SystemMessage, HumanMessage, AIMessage (with tool_calls) and ToolMessage"
            )
        if isinstance(message, ChatMessage) and message.role not in _ROLES:
            raise InvalidRequestError(
                f"message {index} is a ChatMessage with role {message.role!r}; use one of "
                f"{', '.join(sorted(_ROLES))}"
            )
    converted = convert_to_openai_messages(list(messages))
    for message, wire in zip(messages, converted, strict=True):
        if isinstance(message, AIMessage) and message.invalid_tool_calls:
            # Keep malformed calls in the transcript: tool messages may answer their ids.
            calls = wire.setdefault("tool_calls", [])
            for bad in message.invalid_tool_calls:
                calls.append(
                    {
                        "id": bad.get("id") or _new_id(),
                        "type": "function",
                        "function": {
                            "name": bad.get("name") or "",
                            "arguments": bad.get("args") or "",
                        },
                    }
                )
    return converted


def _new_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def langchain_tool_calls(
    calls: Sequence[PolyfuseToolCall] | None,
) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    """polyfuse tool calls as LangChain ``tool_calls`` and ``invalid_tool_calls``.

    Arguments that decode to a JSON object become ``args`` dicts; anything else (malformed JSON,
    a list, a scalar) is reported as an invalid tool call with the raw text, so an agent can see
    and repair it. Every call gets an id, and ids are unique within the message.
    """
    valid: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    seen: set[str] = set()
    for call in calls or ():
        call_id = call.id if call.id and call.id not in seen else _new_id()
        seen.add(call_id)
        raw = call.function.arguments or "{}"
        try:
            args = json.loads(raw)
        except ValueError as exc:
            invalid.append(
                invalid_tool_call(
                    name=call.function.name,
                    args=raw,
                    id=call_id,
                    error=f"arguments are not valid JSON: {exc}",
                )
            )
            continue
        if not isinstance(args, dict):
            invalid.append(
                invalid_tool_call(
                    name=call.function.name,
                    args=raw,
                    id=call_id,
                    error=f"arguments must be a JSON object, got {type(args).__name__}",
                )
            )
            continue
        valid.append(tool_call(name=call.function.name, args=args, id=call_id))
    return valid, invalid


def tool_call_chunks(calls: Sequence[PolyfuseToolCall] | None) -> list[ToolCallChunk]:
    """polyfuse tool calls as streaming chunks (one complete chunk per call).

    Valid calls carry their arguments re-encoded from the parsed object, so the chunk parses to
    exactly the ``args`` that :func:`langchain_tool_calls` gives.
    """
    valid, invalid = langchain_tool_calls(calls)
    chunks = [
        tool_call_chunk(
            name=c["name"], args=json.dumps(c["args"], ensure_ascii=False), id=c["id"], index=i
        )
        for i, c in enumerate(valid)
    ]
    chunks.extend(
        tool_call_chunk(
            name=c.get("name"), args=c.get("args"), id=c.get("id"), index=len(valid) + i
        )
        for i, c in enumerate(invalid)
    )
    return chunks


def usage_metadata(usage: Usage) -> UsageMetadata:
    """A polyfuse usage total as LangChain ``usage_metadata``."""
    # the *_token_details keys are NotRequired at runtime; pyright reads them as required
    metadata: UsageMetadata = {  # pyright: ignore[reportAssignmentType]
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    return metadata


def usage_from_metadata(metadata: UsageMetadata | None) -> Usage:
    """LangChain ``usage_metadata`` of one call as polyfuse usage (missing → unknown usage)."""
    if not metadata:
        return Usage.missing()
    prompt = int(metadata.get("input_tokens") or 0)
    completion = int(metadata.get("output_tokens") or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(metadata.get("total_tokens") or prompt + completion),
        calls=1,
    )

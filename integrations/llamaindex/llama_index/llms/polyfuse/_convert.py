"""Conversions between LlamaIndex chat types and polyfuse's OpenAI-shaped messages."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms.llm import ToolSelection
from pydantic import ValidationError

from polyfuse import InvalidRequestError, Message, SamplingParams, ToolCall, Usage

__all__ = [
    "from_polyfuse_messages",
    "polyfuse_tool_calls",
    "sampling_params",
    "to_chat_message",
    "to_polyfuse_messages",
    "tool_selections",
    "usage_kwargs",
]

_ROLE_TO_OPENAI: dict[MessageRole, str] = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "developer",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
}


# ---------------------------------------------------------------------------- LlamaIndex → OpenAI


def to_polyfuse_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex chat messages as OpenAI-style message dicts (text, images, tool calls).

    Raises:
        InvalidRequestError: a message holds a block polyfuse cannot send (audio, video,
            documents), or a tool message lacks the id of the call it answers.
    """
    return [_to_openai(message, i) for i, message in enumerate(messages)]


def _to_openai(message: ChatMessage, index: int) -> dict[str, Any]:
    role = _ROLE_TO_OPENAI[message.role]
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    for block in message.blocks:
        if isinstance(block, TextBlock):
            texts.append(block.text)
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block)}})
        elif not isinstance(block, (ToolCallBlock, ThinkingBlock)):
            # (reasoning traces are not sent back to models)
            raise InvalidRequestError(
                f"message {index} holds a {type(block).__name__}; polyfuse sends text, images "
                "and tool calls only, so convert it to text first"
            )
    calls = _wire_calls(message)
    out: dict[str, Any] = {"role": role}
    has_images = any(p["type"] == "image_url" for p in parts)
    out["content"] = parts if has_images else "\n".join(texts)
    if calls and role == "assistant":
        out["tool_calls"] = calls
        if not texts and not has_images:
            out["content"] = None
    if role == "tool":
        call_id = message.additional_kwargs.get("tool_call_id")
        if not call_id:
            raise InvalidRequestError(
                f"message {index} is a tool result without additional_kwargs['tool_call_id']; "
                "set it to the id of the tool call it answers"
            )
        out["tool_call_id"] = str(call_id)
    name = message.additional_kwargs.get("name")
    if isinstance(name, str) and role in ("user", "assistant", "system", "developer"):
        out["name"] = name
    return out


def _image_url(block: ImageBlock) -> str:
    if block.url is not None:
        return str(block.url)
    encoded = block.resolve_image(as_base64=True).read().decode("ascii")
    return f"data:{block.image_mimetype or 'image/png'};base64,{encoded}"


def _wire_calls(message: ChatMessage) -> list[dict[str, Any]]:
    """The message's tool calls, OpenAI-shaped: its ToolCallBlocks, else the legacy
    ``additional_kwargs['tool_calls']``."""
    blocks = [b for b in message.blocks if isinstance(b, ToolCallBlock)]
    if blocks:
        return [_call_from_block(b, i) for i, b in enumerate(blocks)]
    return [_call_from_legacy(c, i) for i, c in enumerate(_legacy_calls(message))]


def polyfuse_tool_calls(message: ChatMessage) -> list[ToolCall] | None:
    """The tool calls of a LlamaIndex assistant message as polyfuse tool calls."""
    return [ToolCall.model_validate(call) for call in _wire_calls(message)] or None


def _call_from_block(block: ToolCallBlock, position: int) -> dict[str, Any]:
    arguments = block.tool_kwargs
    encoded = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "id": block.tool_call_id or f"call_{position}",
        "type": "function",
        "function": {"name": block.tool_name, "arguments": encoded or "{}"},
    }


def _legacy_calls(message: ChatMessage) -> list[Any]:
    raw = message.additional_kwargs.get("tool_calls") or []
    return list(raw) if isinstance(raw, (list, tuple)) else []


def _call_from_legacy(call: Any, position: int) -> dict[str, Any]:
    """A tool call kept in ``additional_kwargs['tool_calls']`` (a dict or an OpenAI object)."""
    data = call.model_dump() if hasattr(call, "model_dump") else call
    if not isinstance(data, Mapping) or not isinstance(data.get("function"), Mapping):
        raise InvalidRequestError(
            "a tool call in additional_kwargs['tool_calls'] is not OpenAI-shaped "
            "({'id', 'type': 'function', 'function': {'name', 'arguments'}})"
        )
    function = data["function"]
    arguments = function.get("arguments") or "{}"
    return {
        "id": str(data.get("id") or f"call_{position}"),
        "type": "function",
        "function": {
            "name": str(function.get("name", "")),
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        },
    }


# ---------------------------------------------------------------------------- OpenAI → LlamaIndex


def from_polyfuse_messages(messages: Sequence[Message]) -> list[ChatMessage]:
    """polyfuse request messages as LlamaIndex chat messages."""
    return [_from_openai(message) for message in messages]


def _from_openai(message: Message) -> ChatMessage:
    blocks: list[Any] = []
    content = message.content
    if isinstance(content, str):
        blocks.append(TextBlock(text=content))
    elif content:
        for part in content:
            kind = part.get("type")
            if kind == "text":
                blocks.append(TextBlock(text=str(part.get("text", ""))))
            elif kind == "image_url":
                url = (part.get("image_url") or {}).get("url")
                if url:
                    blocks.append(ImageBlock(url=url))
    for call in message.tool_calls or []:
        blocks.append(
            ToolCallBlock(
                tool_call_id=call.id,
                tool_name=call.function.name,
                tool_kwargs=call.function.arguments,
            )
        )
    extra: dict[str, Any] = {}
    if message.tool_call_id:
        extra["tool_call_id"] = message.tool_call_id
    if message.name:
        extra["name"] = message.name
    role = MessageRole.DEVELOPER if message.role == "developer" else MessageRole(message.role)
    return ChatMessage(role=role, blocks=blocks, additional_kwargs=extra)


def to_chat_message(content: str | None, tool_calls: Sequence[ToolCall] | None) -> ChatMessage:
    """An assistant answer (text and tool calls) as a LlamaIndex chat message."""
    blocks: list[Any] = [TextBlock(text=content or "")]
    for call in tool_calls or []:
        blocks.append(
            ToolCallBlock(
                tool_call_id=call.id,
                tool_name=call.function.name,
                tool_kwargs=call.function.arguments,
            )
        )
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks)


def tool_selections(message: ChatMessage) -> list[ToolSelection]:
    """The tool calls of an assistant message as LlamaIndex tool selections.

    Raises:
        InvalidRequestError: a call's arguments are not a JSON object.
    """
    selections: list[ToolSelection] = []
    for block in message.blocks:
        if not isinstance(block, ToolCallBlock):
            continue
        arguments: Any = block.tool_kwargs
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError as exc:
                raise InvalidRequestError(
                    f"the arguments of tool call {block.tool_name!r} are not JSON: {exc}"
                ) from None
        if not isinstance(arguments, dict):
            raise InvalidRequestError(
                f"the arguments of tool call {block.tool_name!r} are not a JSON object"
            )
        selections.append(
            ToolSelection(
                tool_id=block.tool_call_id or "",
                tool_name=block.tool_name,
                tool_kwargs=arguments,
            )
        )
    return selections


# ---------------------------------------------------------------------------- parameters, usage


def sampling_params(*layers: Mapping[str, Any] | None) -> SamplingParams:
    """Merge keyword layers (later wins, ``None`` values dropped) into validated params.

    Raises:
        InvalidRequestError: an unknown or invalid parameter (vendor fields go in
            ``extra_body``).
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged.update({k: v for k, v in layer.items() if v is not None})
    try:
        return SamplingParams.model_validate(merged)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: "
            + (
                "unknown parameter; put vendor-specific fields in extra_body={...}"
                if err["type"] == "extra_forbidden"
                else err["msg"]
            )
            for err in exc.errors()
        )
        raise InvalidRequestError(f"invalid sampling parameters: {details}") from None


def usage_kwargs(usage: Usage) -> dict[str, int]:
    """Usage in the keys LlamaIndex's token counter reads."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }

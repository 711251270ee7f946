"""Request caps: how much one chat request may ask of the server.

Checked on the decoded JSON before any model validation, cheapest first, so an oversized
request costs one ``json.loads`` and a count: messages and tools by number, the nesting depth
of the whole body, the characters of all message text, and ``max_tokens`` against the
server's ceiling. Text that cannot be encoded as UTF-8 (a lone surrogate such as
``"\\ud800"``, which JSON escapes allow) is refused here too, instead of failing upstream.
Every refusal is a 400 that names the limit and the ``[server]`` setting behind it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import APIError
from .settings import ServerSettings

__all__ = ["RequestCaps", "check_caps", "decode_json"]


@dataclass(frozen=True)
class RequestCaps:
    """The caps of one server (see :class:`ServerSettings` for their meaning)."""

    max_messages: int = 2048
    max_tools: int = 128
    max_content_chars: int = 1_000_000
    max_json_depth: int = 64
    max_tokens_ceiling: int = 32_768

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> RequestCaps:
        """The caps in a ``[server]`` table."""
        return cls(
            max_messages=settings.max_messages,
            max_tools=settings.max_tools,
            max_content_chars=settings.max_content_chars,
            max_json_depth=settings.max_json_depth,
            max_tokens_ceiling=settings.max_tokens_ceiling,
        )


def _over(param: str | None, message: str) -> APIError:
    return APIError(400, message, param=param, code="limit_exceeded")


def decode_json(raw: bytes, caps: RequestCaps) -> object:
    """Decode a request body; 400 for empty, malformed or absurdly nested JSON."""
    if not raw.strip():
        raise APIError(400, "the request body is empty; send a JSON chat completion request")
    try:
        return json.loads(raw)
    except RecursionError:
        raise _over(
            None,
            f"the request JSON is nested deeper than this server's limit of "
            f"{caps.max_json_depth} levels ([server] max_json_depth)",
        ) from None
    except ValueError as exc:
        raise APIError(
            400, f"the request body is not valid JSON ({exc})", code="invalid_json"
        ) from None


def check_caps(data: object, caps: RequestCaps) -> None:
    """Raise a 400 :class:`APIError` when ``data`` (a decoded body) exceeds a cap."""
    if not isinstance(data, dict):
        return  # the schema check answers that
    body: dict[str, Any] = data  # pyright: ignore[reportUnknownVariableType]
    messages = body.get("messages")
    if isinstance(messages, list) and len(messages) > caps.max_messages:  # pyright: ignore[reportUnknownArgumentType]
        raise _over(
            "messages",
            f"messages: {len(messages)} messages exceed this server's limit of "  # pyright: ignore[reportUnknownArgumentType]
            f"{caps.max_messages} ([server] max_messages)",
        )
    tools = body.get("tools")
    if isinstance(tools, list) and len(tools) > caps.max_tools:  # pyright: ignore[reportUnknownArgumentType]
        raise _over(
            "tools",
            f"tools: {len(tools)} tools exceed this server's limit of {caps.max_tools} "  # pyright: ignore[reportUnknownArgumentType]
            "([server] max_tools)",
        )
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if isinstance(value, int) and value > caps.max_tokens_ceiling:
            raise _over(
                name,
                f"{name}: {value} is above this server's ceiling of {caps.max_tokens_ceiling} "
                "tokens ([server] max_tokens_ceiling)",
            )
    for key, value in body.items():
        _check_text(key, key)
        chars = _walk(key, value, caps.max_json_depth)
        if key == "messages" and chars > caps.max_content_chars:
            raise _over(
                "messages",
                f"messages: {chars} characters of text exceed this server's limit of "
                f"{caps.max_content_chars} ([server] max_content_chars)",
            )


def _check_text(text: str, where: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError(
            400,
            f"{where}: the text is not valid Unicode (a lone surrogate such as \\ud800); "
            "send well-formed UTF-8 text",
            param=where,
            code="invalid_unicode",
        ) from None


def _walk(where: str, value: object, max_depth: int) -> int:
    """The characters of every string under ``value`` (a top-level field, at depth 2);
    checks the nesting depth and that every string is encodable. Iterative: no recursion."""
    chars = 0
    stack: list[tuple[object, int]] = [(value, 2)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            chars += len(item)
            _check_text(item, where)
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise _over(
                    where,
                    f"{where}: the request JSON is nested deeper than this server's limit of "
                    f"{max_depth} levels ([server] max_json_depth)",
                )
            if isinstance(item, dict):
                for key, child in item.items():  # pyright: ignore[reportUnknownVariableType]
                    _check_text(str(key), where)  # pyright: ignore[reportUnknownArgumentType]
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)  # pyright: ignore[reportUnknownVariableType]
    return chars

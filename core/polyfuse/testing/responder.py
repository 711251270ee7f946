"""What the fake server answers: :class:`FakeReply`, and the deterministic
:func:`default_responder`, which follows the request's tools and JSON schema."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FakeReply",
    "Responder",
    "content_text",
    "default_responder",
    "is_text_reply",
    "schema_instance",
]


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


def content_text(content: Any) -> str:
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


def is_text_reply(body: dict[str, Any], reply: FakeReply) -> bool:
    """Whether ``reply`` is plain text answering a request that asked for no JSON format."""
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
        return FakeReply(content="The tool said: " + content_text(last.get("content")))
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
            user_text = content_text(message.get("content"))
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

"""Rendering requests and candidates into aggregator prompts, with untrusted text delimited."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from ..messages import ChatRequest, content_text
from ..results import Candidate

_TOOL_HINT = re.compile(r"</?(draft|response|request|conversation)\b", re.IGNORECASE)


def neutralise(text: str) -> str:
    """Defuse our delimiter tags inside untrusted text so it cannot close its own block."""
    return _TOOL_HINT.sub(lambda m: m.group(0).replace("<", "<\u200b"), text)


def render_conversation(request: ChatRequest) -> str:
    """The request as text: a single question, or the whole conversation as a transcript."""
    messages = request.messages
    if len(messages) == 1 and messages[0].role == "user":
        return f"<request>\n{neutralise(content_text(messages[0].content))}\n</request>"
    lines: list[str] = []
    for message in messages:
        text = neutralise(content_text(message.content))
        if message.role == "tool":
            lines.append(f"[tool result for call {message.tool_call_id}]: {text}")
            continue
        if message.role == "assistant" and message.tool_calls:
            calls = ", ".join(
                f"{c.function.name}({c.function.arguments}) [id {c.id}]" for c in message.tool_calls
            )
            if text:
                lines.append(f"[assistant]: {text}")
            lines.append(f"[assistant called tools]: {calls}")
            continue
        lines.append(f"[{message.role}]: {text}")
    return (
        "The conversation so far; answer its last user message:\n<conversation>\n"
        + "\n".join(lines)
        + "\n</conversation>"
    )


def render_candidate_body(candidate: Candidate) -> str:
    """One candidate's text and tool calls."""
    parts: list[str] = []
    if candidate.content:
        parts.append(neutralise(candidate.content.strip()))
    if candidate.tool_calls:
        calls = [
            {"name": c.function.name, "arguments": _loads_or_raw(c.function.arguments)}
            for c in candidate.tool_calls
        ]
        parts.append("Proposed tool calls: " + neutralise(json.dumps(calls, ensure_ascii=False)))
    return "\n".join(parts) if parts else "(empty)"


def render_candidates(candidates: Sequence[Candidate], *, tag: str = "draft") -> str:
    """Candidates as numbered, delimited blocks (numbering follows the given order)."""
    return "\n\n".join(
        f'<{tag} id="{i}">\n{render_candidate_body(c)}\n</{tag}>'
        for i, c in enumerate(candidates, start=1)
    )


def _loads_or_raw(arguments: str) -> object:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments

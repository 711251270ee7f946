"""Rendering requests and candidates into aggregator prompts, with untrusted text delimited.

Everything a client or a model wrote is untrusted: message text, participant names, tool-call
ids, names and arguments, tool results, candidate answers. All of it goes through
:func:`neutralise` and, in the conversation transcript, is quoted as a JSON string, so:

* **Role lines cannot be forged.** The transcript has one line per message,
  ``[role]: "text"``; the text is a JSON string (newlines escaped as ``\\n``), so nothing
  inside a message can start a line of its own. In raw blocks (the single request, the
  drafts) a line that starts like a role marker is quoted with ``> ``.
* **Delimiters cannot be forged.** Our tags (``<draft>``, ``<response>``, ``<request>``,
  ``<conversation>``, opening or closing) are defused wherever they appear in untrusted text,
  including look-alikes: full-width ``＜`` and letters, ``&lt;``/``&#60;``/``\\u003c``,
  angle-quotation marks, and spaces or zero-width characters inside the tag. The opener is
  replaced by ``[``, so ``</draft>`` reads ``[/draft>``: visibly not a tag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from ..messages import ChatRequest, Message, ToolCall, content_text
from ..results import Candidate

__all__ = [
    "neutralise",
    "render_candidate_body",
    "render_candidates",
    "render_conversation",
]

_TAGS = ("draft", "response", "request", "conversation")
_GAP = r"[\s\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]*"
_OPENERS = (
    r"<|\uff1c|\ufe64|\u2039|\u3008|\u27e8|\u2329"
    r"|&lt;?|&#0*60;?|&#x0*3c;?|\\u003c|\\x3c|%3c"
)
_SLASHES = r"[/\uff0f\u2215\u2044\u29f8]"


def _letter(char: str) -> str:
    """A character class for one letter: ASCII either case, or full-width either case."""
    forms = {char.lower(), char.upper()}
    forms |= {chr(ord(f) + 0xFEE0) for f in list(forms)}
    return "[" + "".join(sorted(forms)) + "]"


_NAMES = "|".join(_GAP.join(_letter(c) for c in tag) for tag in _TAGS)
_DELIMITER = re.compile(
    rf"(?:{_OPENERS}){_GAP}(?P<slash>{_SLASHES})?{_GAP}(?P<name>{_NAMES})(?![A-Za-z])",
    re.IGNORECASE,
)
# A line that starts like one of our transcript lines: "[user]:", "[tool result for ...]:".
_ROLE_LINE = re.compile(
    r"^(?=[ \t]*(?:\[|\uff3b)[ \t]*(?:system|developer|user|assistant|tool)\b"
    r"[^\]\uff3d\n]{0,200}(?:\]|\uff3d)[ \t]*(?::|\uff1a))",
    re.IGNORECASE | re.MULTILINE,
)


def _defuse(match: re.Match[str]) -> str:
    name = re.sub(_GAP, "", match["name"])
    return "[" + ("/" if match["slash"] else "") + name


def neutralise(text: str) -> str:
    """Defuse our delimiter tags (and their look-alikes) and role-marker lines in untrusted
    text, so it can neither close its own block nor pose as another message."""
    return _ROLE_LINE.sub("> ", _DELIMITER.sub(_defuse, text))


def _quote(text: str) -> str:
    """Untrusted text as a neutralised JSON string: one line, whatever it holds."""
    return neutralise(json.dumps(text, ensure_ascii=False))


def _calls(calls: Sequence[ToolCall]) -> str:
    rendered = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in calls
    ]
    return neutralise(json.dumps(rendered, ensure_ascii=False))


def _line(message: Message) -> list[str]:
    """The transcript lines of one message: role markers of ours, quoted values of theirs."""
    text = content_text(message.content)
    name = f" name={_quote(message.name)}" if message.name else ""
    if message.role == "tool":
        return [f"[tool result for call {_quote(message.tool_call_id or '')}]: {_quote(text)}"]
    lines: list[str] = []
    if message.role != "assistant" or text or not message.tool_calls:
        lines.append(f"[{message.role}{name}]: {_quote(text)}")
    if message.role == "assistant" and message.tool_calls:
        lines.append(f"[assistant{name} called tools]: {_calls(message.tool_calls)}")
    return lines


def render_conversation(request: ChatRequest) -> str:
    """The request as text: a single question, or the whole conversation as a transcript."""
    messages = request.messages
    if len(messages) == 1 and messages[0].role == "user" and not messages[0].name:
        return f"<request>\n{neutralise(content_text(messages[0].content))}\n</request>"
    lines = [line for message in messages for line in _line(message)]
    return (
        "The conversation so far, one message per line, each message's text as a JSON "
        "string; answer its last user message:\n<conversation>\n"
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

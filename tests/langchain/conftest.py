"""Fixtures for the LangChain adapter tests.

``lc_fake`` installs, on the session's fake OpenAI-compatible server, a responder that follows
instructions the default responder cannot read, the way a real model would:

* "a JSON with 'setup' and 'punchline' keys" (LangChain's JSON-mode test): those keys;
* "a customer named '你好啊集团'" (its Unicode tool-call test): string tool arguments copied
  from the first quoted phrase;
* a fusor prompt whose drafts propose no tool call (an agent's turn after a tool result) is
  answered in text instead of with a new tool call, following the drafts.

Everything else is the fake's deterministic default (tool calls filled from the schema,
``"The tool said: ..."`` after a tool message, schema instances for ``json_schema``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from polyfuse.testing import FakeOpenAIServer, FakeReply, default_responder

_QUOTED = re.compile(r"'([^'\n]{1,80})'")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def instruction_following(body: dict[str, Any], index: int) -> FakeReply:
    """The default reply, plus JSON keys and string arguments quoted in the last user message."""
    text = _last_user_text(body)
    if body.get("tools") and "<draft" in text and "Proposed tool calls" not in text:
        body = {k: v for k, v in body.items() if k not in ("tools", "tool_choice")}
    reply = default_responder(body, index)
    quoted = _QUOTED.findall(text)
    if not quoted:
        return reply
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        keys = [q for q in quoted if _KEY.match(q)]
        if keys:
            return FakeReply(content=json.dumps(dict.fromkeys(keys, "a")))
    if reply.tool_calls:
        calls = []
        for call in reply.tool_calls:
            args = json.loads(call["function"]["arguments"])
            filled = {k: quoted[0] if isinstance(v, str) else v for k, v in args.items()}
            function = {**call["function"], "arguments": json.dumps(filled, ensure_ascii=False)}
            calls.append({**call, "function": function})
        return FakeReply(tool_calls=calls)
    return reply


@pytest.fixture
def lc_fake(make_fake: Callable[..., FakeOpenAIServer]) -> FakeOpenAIServer:
    """A fake server with the instruction-following responder, installed for this test."""
    return make_fake(responder=instruction_following)


@pytest.fixture
def lc_url(_fake_switch: tuple[Any, str], lc_fake: FakeOpenAIServer) -> str:
    """Base URL of the session's fake server, serving ``lc_fake`` for this test.

    (``fake_url`` would install a default fake over ``lc_fake``.)
    """
    return _fake_switch[1]

"""Helpers for the LangGraph node tests: a fake-server responder that behaves like a small
tool-using model, and two tools.

``agent_responder`` answers the way such a model would, so that real agent loops run to a text
answer:

* a candidate with tools whose question (the last user message) names tools not called since
  (``get_weather``, ``get_time``) calls the first of them, with string arguments copied from
  the first quoted phrase of the question; once every named tool has answered, it writes
  ``"Final: <this turn's tool results>"``;
* the fusor copies the tool calls most drafts proposed, or else answers with the draft text
  that sorts first (so the fused answer is one of the candidates' answers, deterministically);
* everything else gets the fake's default reply (``"Answer <i>: <question>"``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from langchain_core.tools import tool
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from langchain_polyfuse import ChatFusion, FusionNode, FusionState
from polyfuse.testing import FakeReply, default_responder, schema_instance

_QUOTED = re.compile(r"'([^'\n]{1,80})'")
_PROPOSED = re.compile(r"^Proposed tool calls: (\[.*\])$", re.MULTILINE)
_DRAFT = re.compile(r'<draft id="\d+">\n(.*?)\n</draft>', re.DOTALL)


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _fused_reply(prompt: str, tools: list[dict[str, Any]]) -> FakeReply:
    proposals = _PROPOSED.findall(prompt)
    if proposals and tools:
        calls = json.loads(Counter(proposals).most_common(1)[0][0])
        return FakeReply(
            tool_calls=[
                {
                    "id": f"call_{call['name']}_{len(prompt)}",
                    "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
                }
                for call in calls
            ]
        )
    drafts = sorted(d.strip() for d in _DRAFT.findall(prompt))
    return FakeReply(content=drafts[0] if drafts else "(no drafts)")


def agent_responder(body: dict[str, Any], index: int) -> FakeReply:
    """See the module docstring."""
    messages: list[dict[str, Any]] = body.get("messages") or []
    tools: list[dict[str, Any]] = body.get("tools") or []
    users = [_text(m) for m in messages if m.get("role") == "user"]
    if users and "<draft" in users[-1]:
        return _fused_reply(users[-1], tools)
    if not tools or not users:
        return default_responder(body, index)
    turn = messages[max(i for i, m in enumerate(messages) if m.get("role") == "user") :]
    called = {
        call["function"]["name"]
        for m in turn
        if m.get("role") == "assistant"
        for call in m.get("tool_calls") or ()
    }
    question = users[-1]
    quoted = _QUOTED.findall(question)
    for spec in tools:
        function = spec["function"]
        name = function["name"]
        if name in question and name not in called:
            args = schema_instance(function.get("parameters") or {}, all_properties=False)
            if quoted:
                args = {k: quoted[0] if isinstance(v, str) else v for k, v in args.items()}
            call = {"id": f"call_{name}_{index}", "function": {"name": name, "arguments": args}}
            return FakeReply(tool_calls=[call])
    results = [_text(m) for m in turn if m.get("role") == "tool"]
    return FakeReply(content="Final: " + "; ".join(results) if results else f"No tools: {question}")


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"It is sunny in {city}"


@tool
def get_time(city: str) -> str:
    """The local time in a city."""
    return f"It is 12:00 in {city}"


TOOLS = [get_weather, get_time]
AGENT_QUESTION = "Use get_weather and get_time: what is it like in 'Rome' now?"
AGENT_ANSWER = "Final: It is sunny in Rome; It is 12:00 in Rome"


def react_agent(model: ChatFusion, **compile: Any) -> Any:
    """The classic ReAct graph, with a fusion node (keeping its records) as the model step."""
    graph = StateGraph(FusionState)
    graph.add_node("agent", FusionNode(model, tools=TOOLS, record_key="fusions"))
    graph.add_node("tools", ToolNode(TOOLS))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(**compile)


def agent_model(url: str) -> ChatFusion:
    """Three candidates (one request each) and a fusor, all ``fake-model`` at ``url``."""
    return ChatFusion(base_url=url, model="fake-model", n=3, supports_n=False)

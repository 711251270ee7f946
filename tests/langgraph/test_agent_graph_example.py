"""examples/agent_graph.py against the fake server (in process and from the command line, with
a SQLite thread continued by a second run) and on the embedded local model."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from graph_helpers import AGENT_QUESTION
from langgraph.checkpoint.memory import InMemorySaver

from polyfuse.testing import FakeOpenAIServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent_graph.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_agent_graph", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load()


def test_the_agent_runs_its_tools_and_streams(agent_fake: FakeOpenAIServer, url: str) -> None:
    model = example.fused_model(url, "fake-model", n=3, supports_n=False)
    app = example.build_agent(model, checkpointer=InMemorySaver())
    out: list[str] = []
    state = example.run(app, AGENT_QUESTION, thread="t", write=out.append)
    printed = "".join(out)
    lines = printed.splitlines()
    assert lines.count("  [agent] fuse of 3 candidates:") == 3
    assert "  [agent] #2 fake-model" in printed and "-> get_weather" in printed
    assert "  [tools] get_weather -> Rome: sunny, 24 C" in lines
    assert "  [tools] get_time -> Rome: 14:05" in lines
    assert lines[-1] == "Final: Rome: sunny, 24 C; Rome: 14:05"
    assert state["messages"][-1].content == lines[-1]
    report = example.usage_report(state).splitlines()
    assert len(report) == 3 and all("3/3 candidates ok, 4 calls" in line for line in report)
    # the system prompt reached every candidate
    assert agent_fake.requests[0]["messages"][0]["content"] == example.SYSTEM


def test_command_line_thread_in_sqlite(
    agent_fake: FakeOpenAIServer, url: str, tmp_path: Path
) -> None:
    def ask(question: str) -> str:
        done = subprocess.run(
            [sys.executable, str(EXAMPLE), "--base-url", url, "--model", "m"]
            + ["--db", str(tmp_path / "agent.sqlite"), "--thread", "trip", question],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = ask(AGENT_QUESTION)
    assert "Final: Rome: sunny, 24 C; Rome: 14:05" in first
    assert "fusion 3:" in first and "fusion 4:" not in first
    second = ask("Use get_weather for 'Oslo'")
    assert "  [tools] get_weather -> Oslo: light rain, 9 C" in second
    assert "fusion 5: 3/3 candidates ok" in second  # the thread went on from the checkpoint


@pytest.mark.local_model
def test_the_agent_on_the_embedded_model(embedded_model: Any) -> None:
    model = example.fused_model(
        embedded_model.base_url,
        embedded_model.model,
        n=2,
        supports_n=False,
        max_concurrency=embedded_model.slots,
        max_tokens=16,
    )
    app = example.build_agent(model, checkpointer=InMemorySaver())
    out: list[str] = []
    state = example.run(app, "What is the weather in Rome?", write=out.append)
    assert "  [agent] fuse of 2 candidates:" in "".join(out)
    records = state["fusions"]
    assert records and all(c["status"] == "ok" for r in records for c in r["candidates"])
    assert state["messages"][-1].content.strip() or state["messages"][-1].tool_calls

"""FusionNode with checkpointers: fusion records survive a restart (SQLite, resumed from a fresh
process), and interrupts, human edits and failures of other nodes never re-run a fusion that
already finished (the fake server counts the requests)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from graph_helpers import AGENT_ANSWER, AGENT_QUESTION, agent_model, react_agent
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from langchain_polyfuse import FusionNode, FusionState
from polyfuse.testing import FakeOpenAIServer

HERE = Path(__file__).resolve().parent
PER_FUSION = 4  # three candidate requests and one fusor request


def _config(thread: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread}}


def test_sqlite_thread_resumes_in_a_fresh_process(
    agent_fake: FakeOpenAIServer, url: str, tmp_path: Path
) -> None:
    path = str(tmp_path / "threads.sqlite")
    with SqliteSaver.from_conn_string(path) as saver:
        app = react_agent(agent_model(url), checkpointer=saver)
        state = app.invoke({"messages": [("human", AGENT_QUESTION)]}, _config("trip"))
    assert state["messages"][-1].content == AGENT_ANSWER
    assert len(agent_fake.requests) == 3 * PER_FUSION

    done = subprocess.run(
        [sys.executable, str(HERE / "resume_thread.py"), path, url, "trip"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=HERE,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    found = report["found"]
    assert found["messages"] == [[type(m).__name__, m.content] for m in state["messages"]]
    assert found["records"] == 3
    assert found["record_answers"][-1] == AGENT_ANSWER
    assert found["record_statuses"] == [["ok", "ok", "ok"]] * 3
    assert found["fusion_metadata"] is True

    after = report["after"]
    assert after["records"] == 5  # the new turn: a get_time step and the answer, appended
    assert after["messages"][-1] == ["AIMessage", "Final: It is 12:00 in Oslo"]
    # the fresh process sent only the new turn's requests: nothing was re-run
    assert len(agent_fake.requests) == 5 * PER_FUSION

    with SqliteSaver.from_conn_string(path) as saver:  # and this process sees the new turn
        app = react_agent(agent_model(url), checkpointer=saver)
        assert len(app.get_state(_config("trip")).values["fusions"]) == 5


def test_interrupt_before_tools_and_a_human_edit(agent_fake: FakeOpenAIServer, url: str) -> None:
    app = react_agent(agent_model(url), checkpointer=InMemorySaver(), interrupt_before=["tools"])
    config = _config("review")
    app.invoke({"messages": [("human", AGENT_QUESTION)]}, config)
    snapshot = app.get_state(config)
    assert snapshot.next == ("tools",)
    assert len(agent_fake.requests) == PER_FUSION

    # the human rewrites the fused tool call (same message id: replaced, not appended)
    proposed: AIMessage = snapshot.values["messages"][-1]
    call = {**proposed.tool_calls[0], "args": {"city": "Paris"}}
    app.update_state(config, {"messages": [proposed.model_copy(update={"tool_calls": [call]})]})
    assert app.get_state(config).next == ("tools",)
    assert len(agent_fake.requests) == PER_FUSION

    app.invoke(None, config)  # runs the edited tool call, then one new fusion step
    assert len(agent_fake.requests) == 2 * PER_FUSION
    state = app.invoke(None, config)
    assert len(agent_fake.requests) == 3 * PER_FUSION
    assert state["messages"][-1].content == "Final: It is sunny in Paris; It is 12:00 in Rome"
    assert len(state["fusions"]) == 3


@pytest.fixture
def beside(url: str) -> Callable[[Any], Any]:
    """Builds START -> (fusion node, ``side`` node) in one superstep -> END, checkpointed in
    memory."""

    def build(side: Any) -> Any:
        graph = StateGraph(FusionState)
        graph.add_node("fusion", FusionNode(agent_model(url), record_key="fusions"))
        graph.add_node("side", side)
        graph.add_edge(START, "fusion")
        graph.add_edge(START, "side")
        graph.add_edge(["fusion", "side"], END)
        return graph.compile(checkpointer=InMemorySaver())

    return build


def test_an_interrupt_beside_the_fusion_does_not_rerun_it(
    agent_fake: FakeOpenAIServer, beside: Callable[[Any], Any]
) -> None:
    approvals: list[str] = []

    def approve(state: FusionState) -> dict[str, Any]:
        approvals.append(interrupt("approve this run?"))
        return {}

    app = beside(approve)
    config = _config("approval")
    first = app.invoke({"messages": [("human", "question")]}, config)
    assert first["__interrupt__"][0].value == "approve this run?"
    assert len(agent_fake.requests) == PER_FUSION

    state = app.invoke(Command(resume="yes"), config)
    assert approvals == ["yes"]
    assert len(agent_fake.requests) == PER_FUSION  # the finished fusion was kept, not re-run
    assert [m.content for m in state["messages"]] == ["question", "Answer 0: question"]
    assert len(state["fusions"]) == 1


def test_a_failure_beside_the_fusion_does_not_rerun_it(
    agent_fake: FakeOpenAIServer, beside: Callable[[Any], Any]
) -> None:
    attempts: list[int] = []

    def flaky(state: FusionState) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("the side step failed once")
        return {}

    app = beside(flaky)
    config = _config("flaky")
    with pytest.raises(RuntimeError, match="failed once"):
        app.invoke({"messages": [("human", "question")]}, config)
    assert len(agent_fake.requests) == PER_FUSION

    state = app.invoke(None, config)  # resume the thread from its checkpoint
    assert len(attempts) == 2
    assert len(agent_fake.requests) == PER_FUSION
    assert [m.content for m in state["messages"]] == ["question", "Answer 0: question"]

"""examples/lcel_chain.py and examples/rag_chain.py, run against real servers on loopback."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from polyfuse.testing import FakeOpenAIServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the module's annotations through it
    spec.loader.exec_module(module)
    return module


lcel = _load("lcel_chain")
rag = _load("rag_chain")


def _system_text(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "system")


def test_lcel_chain_invoke_and_stream(lc_fake: FakeOpenAIServer, lc_url: str) -> None:
    llm = lcel.fused_llm(lc_url, "fake-model", n=3)
    text = lcel.ask(llm, "Why is the sky blue?", sentences=2)
    assert isinstance(text, str) and text.startswith("Answer")
    candidates_request = lc_fake.requests[0]
    assert candidates_request["n"] == 3
    assert "at most 2 sentences" in _system_text(candidates_request)

    pieces: list[str] = []
    details = lcel.FusionDetails()
    streamed = lcel.ask(llm, "Why is the sky blue?", on_token=pieces.append, callbacks=[details])
    assert len(pieces) > 1 and "".join(pieces) == streamed
    assert details.message is not None
    assert len(details.message.response_metadata["fusion"]["candidates"]) == 3


def test_lcel_chain_command_line(lc_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "lcel_chain.py"), "--base-url", lc_url]
        + ["--model", "m", "--n", "3", "Why is the sky blue?"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "#2 m ok" in done.stdout
    assert "tokens in 2 calls (fuse)" in done.stdout


def test_lexical_retriever_ranks_by_query_terms() -> None:
    retriever = rag.LexicalRetriever(documents=rag.NOTES, k=2)
    found = retriever.invoke("How long does light from the Sun take to reach Earth?")
    assert found[0].metadata["source"] == "light.md"
    assert retriever.invoke("Which planet has the most moons?")[0].metadata["source"] == "moons.md"
    assert retriever.invoke("quantum chromodynamics") == []


def test_rag_chain_puts_the_retrieved_notes_in_every_prompt(
    lc_fake: FakeOpenAIServer, lc_url: str
) -> None:
    text = rag.answer(lc_url, "fake-model", "Which planet has the most moons?", n=3)
    assert text.startswith("Answer")
    candidates_request, fusor_request = lc_fake.requests
    assert "[moons.md] Saturn has the most known moons" in _system_text(candidates_request)
    assert "[venus.md]" not in _system_text(candidates_request)
    # the fusor sees the same context, inside the conversation it is given
    assert "[moons.md]" in fusor_request["messages"][-1]["content"]


def test_rag_chain_command_line(lc_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "rag_chain.py"), "--base-url", lc_url]
        + ["--model", "m", "How hot is Venus?"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.startswith("Answer")


@pytest.mark.local_model
def test_lcel_chain_on_the_embedded_model(embedded_model: Any) -> None:
    llm = lcel.fused_llm(
        embedded_model.base_url,
        embedded_model.model,
        n=2,
        supports_n=False,
        max_concurrency=embedded_model.slots,
        max_tokens=16,
    )
    details = lcel.FusionDetails()
    text = lcel.ask(llm, "Name a primary colour.", sentences=1, callbacks=[details])
    assert text.strip()
    assert details.message is not None
    fusion = details.message.response_metadata["fusion"]
    assert [c["status"] for c in fusion["candidates"]] == ["ok", "ok"]
    assert fusion["usage_complete"] is True

"""Every contender runs a real fusion against the fake OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from benchmarks.harness.contenders import CONTENDERS, Contender
from benchmarks.harness.workload import Workload

from polyfuse.testing import FakeOpenAIServer, FakeReply

IN_PROCESS = [
    "raw",
    "raw-n",
    "polyfuse",
    "polyfuse-fanout",
    "openai-gather",
    "openai-n",
    "langchain",
    "llamaindex",
]


def drafting(body: dict[str, object], index: int) -> FakeReply:
    """Candidates answer ``draft-<index>``; the fusor (system prompt) echoes what it saw."""
    messages = body["messages"]
    assert isinstance(messages, list)
    if messages[0]["role"] == "system" or len(messages) > 1:
        seen = " ".join(str(m["content"]) for m in messages)
        return FakeReply(content="FUSED " + ("sees-drafts" if "draft-" in seen else "blind"))
    return FakeReply(content=f"draft-{index}")


@pytest.mark.parametrize("name", IN_PROCESS)
async def test_contender_fuses_and_streams(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str, name: str
) -> None:
    fake: FakeOpenAIServer = make_fake(responder=drafting)
    contender: Contender = CONTENDERS[name](Workload.single(fake_url, 3, model="fake-model"))
    await contender.open()
    try:
        text = await contender.fuse()
        first: list[bool] = []
        streamed = await contender.fuse_stream(lambda: first.append(True))
    finally:
        await contender.aclose()
    assert text.startswith("FUSED")
    assert streamed.startswith("FUSED") and first == [True]
    chat = [r for r in fake.requests if r["messages"][-1]["content"].startswith("Explain")]
    fusor = [r for r in fake.requests if r not in chat]
    # Two fusions: the candidates went out as one n=3 request or three requests each time.
    batched = name in ("raw-n", "openai-n", "polyfuse")
    assert len(chat) == (2 if batched else 6)
    assert len(fusor) == 2
    if name != "llamaindex":  # TreeSummarize writes its own prompt around the candidates
        assert "sees-drafts" in text


async def test_polyfuse_panel_with_quorum(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    """Different candidate URLs make a panel (fan-out); a quorum still fuses."""
    fake: FakeOpenAIServer = make_fake(responder=drafting)
    other = fake_url.replace("127.0.0.1", "localhost")
    workload = Workload(
        candidate_urls=(fake_url, fake_url, other),
        fusor_url=fake_url,
        model="fake-model",
        quorum=2,
    )
    contender = CONTENDERS["polyfuse"](workload)
    await contender.open()
    try:
        assert (await contender.fuse()).startswith("FUSED")
    finally:
        await contender.aclose()
    assert all("n" not in r for r in fake.requests)

"""Live on the fake OpenAI-compatible server: saved calls show up as saved tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyfuse import FusionSpec, OpenAIEndpoint
from polyfuse.testing import FakeOpenAIServer, FakeReply


def _math(body: dict[str, Any], index: int) -> FakeReply:
    system = str(body["messages"][0].get("content", ""))
    if "candidate" in system.lower() and body["messages"][0]["role"] == "system":
        return FakeReply(content="fused: 12", completion_tokens=3)
    return FakeReply(content="Three fours make 12.", prompt_tokens=20, completion_tokens=5)


async def test_adaptive_vote_saves_calls_and_tokens(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    fake = make_fake(responder=_math)
    endpoint = OpenAIEndpoint(fake_url, "fake-model", backoff_base=0.01)
    try:
        spec = FusionSpec(pool=[endpoint], n=8, strategy="vote", adaptive={})
        result = await spec.build().arun("What is 3 * 4?")
    finally:
        await endpoint.aclose()
    assert result.content == "Three fours make 12."
    assert result.sampling is not None and result.sampling.samples_used == 3
    assert result.sampling.stop_reason == "settled"
    assert [body.get("n", 1) for body in fake.requests] == [3]  # round one: one request, n=3
    spent = result.usage.candidates
    assert spent.completion_tokens == 3 * 5
    saved = result.usage.saved
    assert saved.calls == 5 and saved.complete
    assert saved.completion_tokens == 5 * 5
    assert saved.prompt_tokens == round(5 * spent.prompt_tokens / 3)
    assert result.usage.total.calls == spent.calls  # saved is not part of the total


async def test_later_rounds_send_one_request_each(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    answers = iter(["1", "2", "3", "3", "3", "3", "3", "3"])
    fake = make_fake(responder=lambda body, index: f"it is {next(answers)}")
    endpoint = OpenAIEndpoint(fake_url, "fake-model", backoff_base=0.01)
    try:
        spec = FusionSpec(pool=[endpoint], n=8, strategy="vote", adaptive={"step": 1})
        result = await spec.build().arun("q")
    finally:
        await endpoint.aclose()
    assert result.content == "it is 3"
    assert result.sampling is not None
    assert [body.get("n", 1) for body in fake.requests] == result.sampling.rounds
    assert result.sampling.rounds[0] == 3 and set(result.sampling.rounds[1:]) == {1}
    assert result.usage.saved.calls == 8 - result.sampling.samples_used


async def test_consensus_shortcut_saves_the_fusor_call(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    fake = make_fake(responder=_math)
    endpoint = OpenAIEndpoint(fake_url, "fake-model", backoff_base=0.01)
    try:
        spec = FusionSpec(pool=[endpoint], n=3, strategy="fuse", answer_extract="last_number")
        result = await spec.build().arun("What is 3 * 4?")
    finally:
        await endpoint.aclose()
    assert result.content == "Three fours make 12."
    assert len(fake.requests) == 1  # the candidates (n=3), and no fusor request
    assert result.usage.aggregator.calls == 0
    saved = result.usage.saved
    assert saved.calls == 1
    assert saved.completion_tokens == 5
    assert saved.prompt_tokens > 3 * 5

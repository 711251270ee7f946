"""Hedged calls on the fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from polyfuse import FusionSpec, OpenAIEndpoint
from polyfuse.backends.base import StreamAccumulator
from polyfuse.errors import APIStatusError
from polyfuse.hedging import MIN_OBSERVATIONS, HedgeBudget, HedgedBackend
from polyfuse.messages import ChatRequest
from polyfuse.testing import FakeOpenAIServer, Fault, FunctionBackend
from polyfuse.testing.backends import Reply

SLOW = 60.0  # the straggler: far longer than any test may take
AFTER = 0.3  # hedge threshold


async def _disconnected(fake: FakeOpenAIServer, count: int) -> None:
    for _ in range(200):
        if fake.disconnects >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the server saw {fake.disconnects} disconnects, expected {count}")


@pytest.fixture
async def endpoint(fake_url: str) -> AsyncIterator[OpenAIEndpoint]:
    endpoint = OpenAIEndpoint(fake_url, "fake-model", backoff_base=0.01, max_retries=0)
    yield endpoint
    await endpoint.aclose()


async def test_a_late_stream_is_hedged_and_the_loser_closed(
    make_fake: Callable[..., FakeOpenAIServer], endpoint: OpenAIEndpoint
) -> None:
    fake = make_fake()
    fake.inject(Fault("slow_first_byte", delay_s=SLOW))
    hedged = HedgedBackend(endpoint, after=AFTER, budget=HedgeBudget(fraction=1.0))
    acc = StreamAccumulator()
    async for delta in hedged.stream(ChatRequest.build("hello")):
        acc.add(delta)
    completion = acc.completion(0.0)
    assert completion.content
    assert completion.usage.calls == 2 and completion.usage.calls_without_usage == 1
    assert hedged.budget.hedges == 1 and hedged.budget.hedge_wins == 1
    assert len(fake.requests) == 2
    await _disconnected(fake, 1)  # the straggler's stream was closed


async def test_a_late_request_is_hedged(
    make_fake: Callable[..., FakeOpenAIServer], endpoint: OpenAIEndpoint
) -> None:
    fake = make_fake()
    fake.inject(Fault("slow_first_byte", delay_s=SLOW))
    hedged = HedgedBackend(endpoint, after=AFTER, budget=HedgeBudget(fraction=1.0))
    [completion] = await hedged.complete(ChatRequest.build("hello"))
    assert completion.content
    assert completion.usage.calls == 2 and completion.usage.calls_without_usage == 1
    await _disconnected(fake, 1)


async def test_the_duplicate_goes_to_a_named_fallback(
    make_fake: Callable[..., FakeOpenAIServer], endpoint: OpenAIEndpoint, fake_url: str
) -> None:
    fake = make_fake()
    fake.inject(Fault("slow_first_byte", delay_s=SLOW, match_model="fake-model"))
    fallback = OpenAIEndpoint(fake_url, "backup-model", max_retries=0)
    try:
        hedged = HedgedBackend(
            endpoint, after=AFTER, fallback=fallback, budget=HedgeBudget(fraction=1.0)
        )
        [completion] = await hedged.complete(ChatRequest.build("hello"))
    finally:
        await fallback.aclose()
    assert completion.model == "backup-model"
    assert [body["model"] for body in fake.requests] == ["fake-model", "backup-model"]


async def test_the_budget_caps_extra_calls(
    make_fake: Callable[..., FakeOpenAIServer], endpoint: OpenAIEndpoint
) -> None:
    fake = make_fake()
    fake.inject(Fault("slow_first_byte", delay_s=1.0))
    hedged = HedgedBackend(endpoint, after=AFTER, budget=HedgeBudget(fraction=0.0))
    [completion] = await hedged.complete(ChatRequest.build("hello"))
    assert completion.content and completion.usage.calls == 1
    assert len(fake.requests) == 1 and hedged.budget.hedges == 0


async def test_a_failing_hedge_does_not_fail_the_call(
    make_fake: Callable[..., FakeOpenAIServer], endpoint: OpenAIEndpoint
) -> None:
    fake = make_fake()
    fake.inject(Fault("slow_first_byte", delay_s=1.0), Fault("status", status=400))
    hedged = HedgedBackend(endpoint, after=AFTER, budget=HedgeBudget(fraction=1.0))
    [completion] = await hedged.complete(ChatRequest.build("hello"))
    assert completion.content
    assert completion.usage.calls == 2  # the failed hedge is counted as a call
    assert hedged.budget.hedge_failures == 1 and hedged.budget.hedge_wins == 0


async def test_a_fusion_hedges_its_fusor(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    fake = make_fake()
    fake.inject(Fault("slow_first_byte", delay_s=SLOW, match_model="fusor-model"))
    members = OpenAIEndpoint(fake_url, "fake-model", max_retries=0)
    fusor = OpenAIEndpoint(fake_url, "fusor-model", max_retries=0)
    try:
        spec = FusionSpec(pool=[members], fusor=fusor, n=2, hedge={"after": AFTER, "budget": 1.0})
        result = await spec.build().arun("Why is the sky blue?")
    finally:
        await members.aclose()
        await fusor.aclose()
    assert result.content
    assert result.aggregation.calls[0].error is None
    assert result.usage.aggregator.calls == 2
    assert result.usage.aggregator.calls_without_usage == 1
    await _disconnected(fake, 1)


async def test_when_both_fail_the_primarys_error_stands() -> None:
    calls: list[int] = []

    async def reply(request: ChatRequest) -> Reply:
        calls.append(len(calls))
        if len(calls) == 1:
            await asyncio.sleep(2 * AFTER)  # late, then fails
            return APIStatusError("primary broke", endpoint="f", status_code=404)
        return APIStatusError("hedge broke", endpoint="f", status_code=400)

    hedged = HedgedBackend(FunctionBackend(reply), after=AFTER, budget=HedgeBudget(1.0))
    with pytest.raises(APIStatusError) as raised:
        await hedged.complete(ChatRequest.build("hello"))
    assert raised.value.status_code == 404
    assert len(calls) == 2 and hedged.budget.hedge_failures == 1


async def test_a_percentile_threshold_follows_the_endpoint() -> None:
    calls: list[int] = []

    async def reply(request: ChatRequest) -> Reply:
        calls.append(len(calls))
        if len(calls) == MIN_OBSERVATIONS + 1:
            await asyncio.Event().wait()  # this one never answers
        return "fine"

    hedged = HedgedBackend(
        FunctionBackend(reply), after=100.0, budget=HedgeBudget(1.0), percentile=95
    )
    assert hedged.threshold("complete") == 100.0
    for _ in range(MIN_OBSERVATIONS):
        await hedged.complete(ChatRequest.build("hello"))
    assert hedged.threshold("complete") < 5.0
    assert hedged.threshold("stream") == 100.0  # streams are observed separately
    # the fixed 100 s would outlast this bound; the observed p95 hedges at once
    [completion] = await asyncio.wait_for(hedged.complete(ChatRequest.build("hello")), 30)
    assert completion.content == "fine" and hedged.budget.hedges == 1


def test_a_hedged_spec_wraps_each_backend_once_and_keeps_its_state_across_builds() -> None:
    a, b = (
        FunctionBackend(lambda request: "a", name="a"),
        FunctionBackend(lambda request: "b", name="b"),
    )
    spec = FusionSpec(pool=[a, b], n=2, hedge={"after": 5.0, "budget": 0.5})
    hedged = spec.hedged()
    assert hedged.hedge is None and spec.hedge is not None  # the original is left as it was
    members = hedged.make_pool().members
    assert [m.samples for m in members] == [2, 2]
    wrappers = [m.backend for m in members]
    fusor = hedged.fusor_backend
    assert all(isinstance(w, HedgedBackend) for w in wrappers) and fusor is wrappers[0]
    budgets = {id(w.budget) for w in wrappers if isinstance(w, HedgedBackend)}
    assert len(budgets) == 1  # one budget for the whole fusion
    first, second = hedged.build(), hedged.build()
    assert [m.backend for m in first.pool.members] == wrappers
    assert [m.backend for m in second.pool.members] == wrappers  # never wrapped twice
    assert FusionSpec(pool=[a]).hedged().pool == [a]  # no hedge: the spec itself

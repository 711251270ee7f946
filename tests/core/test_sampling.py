"""Sampling a pool: n batching and its fallbacks, seeds, panels, quorum and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from polyfuse import (
    CandidateFailed,
    CandidateFinished,
    CandidateStarted,
    FusionEvent,
    OpenAIEndpoint,
    Pool,
    PoolMember,
    QuorumPolicy,
    SamplingParams,
)
from polyfuse.testing import FakeOpenAIServer, Fault, LatencyModel


async def test_n_honoured_uses_one_request(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint
) -> None:
    candidates = await Pool.repeat(endpoint, 4).sample("hello")
    assert [c.index for c in candidates] == [0, 1, 2, 3]
    assert all(c.ok and c.content for c in candidates)
    assert len(fake.requests) == 1 and fake.requests[0]["n"] == 4
    assert endpoint.supports_n is True
    # usage of the one response is counted once
    assert sum(c.usage.calls for c in candidates) == 1


async def test_n_ignored_fans_out_for_the_rest(
    make_fake: Callable[..., FakeOpenAIServer], endpoint: OpenAIEndpoint
) -> None:
    fake = make_fake(n_mode="ignore")
    candidates = await Pool.repeat(endpoint, 3).sample("hello")
    assert all(c.ok for c in candidates) and len(candidates) == 3
    assert [r.get("n") for r in fake.requests] == [3, None, None]
    assert endpoint.supports_n is False
    await Pool.repeat(endpoint, 3).sample("again")
    assert [r.get("n") for r in fake.requests[3:]] == [None, None, None]


async def test_n_rejected_fans_out(
    make_fake: Callable[..., FakeOpenAIServer], endpoint: OpenAIEndpoint
) -> None:
    fake = make_fake(n_mode="reject")
    candidates = await Pool.repeat(endpoint, 3).sample("hello")
    assert all(c.ok for c in candidates)
    assert endpoint.supports_n is False
    assert len(fake.requests) == 4  # the refused n=3 request, then 3 single ones


async def test_declared_no_n_never_sends_n(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    endpoint = endpoint_factory(supports_n=False)
    await Pool.repeat(endpoint, 3).sample("hello")
    assert len(fake.requests) == 3 and all("n" not in r for r in fake.requests)


async def test_declared_n_failure_is_not_relearned(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    make_fake(n_mode="reject")
    endpoint = endpoint_factory(supports_n=True)
    candidates = await Pool.repeat(endpoint, 2).sample("hello")
    assert all(c.status == "failed" for c in candidates)
    assert candidates[0].error and "Only one completion choice" in candidates[0].error.message
    assert endpoint.supports_n is True


async def test_fanned_out_branches_get_distinct_seeds(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    endpoint = endpoint_factory(supports_n=False)
    candidates = await Pool.repeat(endpoint, 3).sample("hello", seed=100)
    assert sorted(r["seed"] for r in fake.requests) == [100, 101, 102]
    assert [c.seed for c in candidates] == [100, 101, 102]
    assert len({c.content for c in candidates}) == 3


async def test_no_seed_sends_none(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    await Pool.repeat(endpoint_factory(supports_n=False), 2).sample("hello")
    assert all("seed" not in r for r in fake.requests)


async def test_panel_with_per_member_params(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    a = endpoint_factory("model-a")
    b = endpoint_factory("model-b")
    pool = Pool.panel(
        [
            PoolMember(a, params=SamplingParams(temperature=0.1)),
            PoolMember(b, samples=2, params=SamplingParams(temperature=0.9)),
        ]
    )
    assert pool.size == 3
    candidates = await pool.sample("hello", max_tokens=50)
    assert [c.backend for c in candidates] == ["model-a", "model-b", "model-b"]
    by_model = {r["model"]: r for r in fake.requests}
    assert by_model["model-a"]["temperature"] == 0.1 and by_model["model-b"]["temperature"] == 0.9
    assert all(r["max_tokens"] == 50 for r in fake.requests)
    assert by_model["model-b"]["n"] == 2


async def test_failures_are_recorded_per_candidate(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    endpoint = endpoint_factory(supports_n=False, max_retries=0)
    fake.inject(Fault("status", status=400, body={"error": {"message": "bad prompt"}}))
    events: list[FusionEvent] = []
    candidates = await Pool.repeat(endpoint, 3).sample("hello", on_event=events.append)
    failed = [c for c in candidates if c.status == "failed"]
    assert len(failed) == 1 and failed[0].error is not None
    assert failed[0].error.type == "BadRequestError" and failed[0].error.status_code == 400
    assert "bad prompt" in failed[0].error.message
    assert sum(isinstance(e, CandidateStarted) for e in events) == 3
    assert sum(isinstance(e, CandidateFinished) for e in events) == 2
    assert sum(isinstance(e, CandidateFailed) for e in events) == 1


def _straggling(make_fake: Callable[..., FakeOpenAIServer], every: int) -> FakeOpenAIServer:
    """Every ``every``-th request takes 1000x longer (10 s): a straggler, cancellable upstream."""
    return make_fake(
        latency=LatencyModel(ttft_s=0.01, straggler_every=every, straggler_factor=1000)
    )


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)


async def test_quorum_cancels_the_straggler(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake = _straggling(make_fake, every=3)
    endpoint = endpoint_factory(supports_n=False)
    candidates = await Pool.repeat(endpoint, 3).sample("q", policy=QuorumPolicy(quorum=2))
    assert sorted(c.status for c in candidates) == ["cancelled", "ok", "ok"]
    straggler = next(c for c in candidates if c.status == "cancelled")
    assert straggler.error is not None and "quorum of 2" in straggler.error.message
    assert straggler.usage.calls_without_usage == 1
    # the upstream request was really closed, not left generating
    await _until(lambda: fake.disconnects == 1 and fake.active == 0)
    assert fake.disconnects == 1 and fake.active == 0


async def test_deadline_cancels_stragglers_once_enough_are_in(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake = _straggling(make_fake, every=2)
    endpoint = endpoint_factory(supports_n=False)
    candidates = await Pool.repeat(endpoint, 3).sample("q", policy=QuorumPolicy(deadline=0.3))
    assert sorted(c.status for c in candidates) == ["cancelled", "ok", "ok"]
    straggler = next(c for c in candidates if c.status == "cancelled")
    assert straggler.error is not None and "deadline of 0.3s" in straggler.error.message
    await _until(lambda: fake.active == 0)
    assert fake.active == 0


async def test_deadline_waits_for_min_candidates(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    make_fake(latency=LatencyModel(ttft_s=0.2))
    endpoint = endpoint_factory(supports_n=False)
    policy = QuorumPolicy(deadline=0.01, min_candidates=2)
    candidates = await Pool.repeat(endpoint, 2).sample("q", policy=policy)
    assert [c.status for c in candidates] == ["ok", "ok"]


async def test_streamed_candidates_record_ttft(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint
) -> None:
    candidates = await Pool.repeat(endpoint, 2).sample(
        "hello", policy=QuorumPolicy(stream_candidates=True)
    )
    assert all(c.ok and c.ttft_s is not None and c.latency_s is not None for c in candidates)
    assert all(r["stream"] is True and "n" not in r for r in fake.requests)
    assert all(c.usage.calls == 1 and c.usage.complete for c in candidates)


async def test_cancelling_the_caller_cancels_upstream(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake = make_fake(latency=LatencyModel(ttft_s=30))
    endpoint = endpoint_factory(supports_n=False)
    task = asyncio.ensure_future(Pool.repeat(endpoint, 2).sample("q"))
    await _until(lambda: fake.active == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _until(lambda: fake.active == 0)
    assert fake.active == 0 and fake.disconnects == 2

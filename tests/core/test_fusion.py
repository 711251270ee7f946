"""The Fusion engine end to end: usage honesty, streaming events, sync wrappers, results."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

import polyfuse
from polyfuse import (
    AggregationStarted,
    CandidateFinished,
    CandidateStarted,
    Fuse,
    FusedToken,
    Fusion,
    FusionDone,
    FusionResult,
    MajorityVote,
    NoCandidatesError,
    OpenAIEndpoint,
    Pool,
    QuorumPolicy,
)
from polyfuse.testing import FakeOpenAIServer, FakeReply, Fault, LatencyModel

FUSOR_MODEL = "fusor-model"


def fixed_usage(body: dict[str, Any], index: int) -> FakeReply:
    """Candidates and the fusor (its own model name, not its prompt, tells them apart)."""
    if body["model"] == FUSOR_MODEL:
        return FakeReply(content="the fused answer", prompt_tokens=100, completion_tokens=7)
    return FakeReply(content=f"candidate {body.get('seed')}", prompt_tokens=10, completion_tokens=3)


async def test_usage_is_the_exact_sum_of_every_call(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    make_fake(responder=fixed_usage)
    endpoint = endpoint_factory(supports_n=False)
    fusor = Fuse(endpoint_factory(FUSOR_MODEL))
    result = await Fusion(Pool.repeat(endpoint, 4), fusor).arun("q", seed=0)
    assert result.content == "the fused answer"
    assert result.usage.candidates.model_dump() == {
        "prompt_tokens": 40,
        "completion_tokens": 12,
        "total_tokens": 52,
        "calls": 4,
        "calls_without_usage": 0,
    }
    assert result.usage.aggregator.total_tokens == 107 and result.usage.aggregator.calls == 1
    assert result.total_usage.total_tokens == 159 and result.total_usage.calls == 5
    assert result.total_usage.complete


async def test_usage_with_n_batching_counts_the_response_once(
    make_fake: Callable[..., FakeOpenAIServer], endpoint: OpenAIEndpoint
) -> None:
    make_fake(responder=fixed_usage)
    result = await Fusion(Pool.repeat(endpoint, 3)).arun("q")
    # one n=3 response: prompt counted once, completions summed over choices by the server
    assert result.usage.candidates.calls == 1
    assert result.usage.candidates.prompt_tokens == 10
    assert result.usage.candidates.completion_tokens == 9


async def test_missing_usage_is_reported_not_invented(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    make_fake(usage=False)
    result = await Fusion(Pool.repeat(endpoint_factory(supports_n=False), 2)).arun("q")
    assert result.total_usage.calls == 3 and result.total_usage.calls_without_usage == 3
    assert result.total_usage.total_tokens == 0 and not result.total_usage.complete


async def test_no_candidates_error_names_each_failure(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    endpoint = endpoint_factory(supports_n=False, max_retries=0, name="gpu-box")
    fake.inject(
        Fault("status", status=401, body={"error": {"message": "bad key"}}),
        Fault("status", status=500, body={"error": {"message": "oom"}}),
    )
    with pytest.raises(NoCandidatesError) as info:
        await Fusion(Pool.repeat(endpoint, 2)).arun("q")
    text = str(info.value)
    assert "all 2 candidates failed" in text
    assert "#0 (gpu-box)" in text and "#1 (gpu-box)" in text
    assert "bad key" in text and "oom" in text
    assert len(info.value.failures) == 2


async def test_survivors_are_fused_when_some_fail(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake = make_fake(responder=fixed_usage)
    endpoint = endpoint_factory(supports_n=False, max_retries=0)
    fake.inject(Fault("malformed_json"))
    fusor = Fuse(endpoint_factory(FUSOR_MODEL))
    result = await Fusion(Pool.repeat(endpoint, 3), fusor).arun("q", seed=0)
    assert len(result.succeeded) == 2 and len(result.failed) == 1
    assert result.failed[0].error is not None and result.failed[0].error.type == "ProtocolError"
    assert result.content == "the fused answer"
    assert result.usage.candidates.calls == 3  # the failed call is counted, with no tokens


async def test_stream_events_in_order_and_tokens_make_the_answer(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint
) -> None:
    fusion = Fusion(Pool.repeat(endpoint, 3))
    events = [event async for event in fusion.astream("Tell me about the sea")]
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["CandidateStarted"] * 3
    assert kinds.count("CandidateFinished") == 3
    started_at = kinds.index("AggregationStarted")
    assert all(k == "FusedToken" for k in kinds[started_at + 1 : -1]) and kinds[-1] == "FusionDone"
    done = events[-1]
    assert isinstance(done, FusionDone)
    tokens = "".join(e.delta for e in events if isinstance(e, FusedToken))
    assert (
        tokens == done.result.content and len([e for e in events if isinstance(e, FusedToken)]) > 1
    )
    assert done.result.ttft_s is not None and done.result.ttft_s <= done.result.latency_s
    assert fake.requests[-1]["stream"] is True  # the fusor's tokens were really streamed


async def test_selection_strategies_stream_the_selected_answer(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint
) -> None:
    events = [e async for e in Fusion(Pool.repeat(endpoint, 3), MajorityVote("exact")).astream("q")]
    tokens = [e.delta for e in events if isinstance(e, FusedToken)]
    done = events[-1]
    assert isinstance(done, FusionDone) and tokens == [done.result.content]


async def test_breaking_out_of_a_stream_cancels_upstream(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake = make_fake(
        latency=LatencyModel(ttft_s=0.0, straggler_every=2, straggler_factor=1, tokens_per_s=None)
    )
    fake.inject(Fault("slow_first_byte", delay_s=30))
    endpoint = endpoint_factory(supports_n=False)
    stream = Fusion(Pool.repeat(endpoint, 2)).astream("q")
    async for event in stream:
        if isinstance(event, CandidateFinished):
            break
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(300):
        if fake.active == 0:
            break
        await asyncio.sleep(0.01)
    assert fake.active == 0 and fake.disconnects == 1


async def test_stream_fallback_emits_the_fallback_answer(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    endpoint = endpoint_factory()
    fusor = endpoint_factory("fusor-model", max_retries=0)
    fake.inject(Fault("status", status=503, match_model="fusor-model"))
    events = [e async for e in Fusion(Pool.repeat(endpoint, 2), polyfuse.Fuse(fusor)).astream("q")]
    done = events[-1]
    assert isinstance(done, FusionDone) and done.result.aggregation.fallback_reason
    assert "".join(e.delta for e in events if isinstance(e, FusedToken)) == done.result.content


def test_sync_run_and_stream(fake: FakeOpenAIServer, fake_url: str) -> None:
    fusion = Fusion(Pool.repeat(OpenAIEndpoint(fake_url, "fake-model"), 2))
    result = fusion.run("hello")
    assert isinstance(result, FusionResult) and result.content
    events = list(fusion.stream("hello"))
    assert isinstance(events[0], CandidateStarted) and isinstance(events[-1], FusionDone)
    assert any(isinstance(e, AggregationStarted) for e in events)


async def test_sync_run_inside_a_running_loop(fake: FakeOpenAIServer, fake_url: str) -> None:
    """As in Jupyter: a running loop in this thread, and the user calls the sync method."""
    fusion = Fusion(Pool.repeat(OpenAIEndpoint(fake_url, "fake-model"), 2))
    assert fusion.run("hello").content


def test_sync_run_from_threads(fake: FakeOpenAIServer, fake_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fusion = Fusion(Pool.repeat(OpenAIEndpoint(fake_url, "fake-model"), 2))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: fusion.run(f"question {i}"), range(8)))
    assert all(r.content for r in results)


async def test_result_is_json_serialisable(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint
) -> None:
    result = await Fusion(Pool.repeat(endpoint, 2)).arun("q", tools=None)
    data = json.loads(result.model_dump_json())
    assert data["message"]["role"] == "assistant"
    assert len(data["candidates"]) == 2 and data["candidates"][0]["usage"]["calls"] >= 0
    assert data["aggregation"]["method"] == "fuse"
    again = FusionResult.model_validate_json(result.model_dump_json())
    assert again.content == result.content and again.usage.total == result.usage.total


async def test_policy_quorum_through_fusion(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    make_fake(latency=LatencyModel(ttft_s=0.01, straggler_every=5, straggler_factor=1000))
    endpoint = endpoint_factory(supports_n=False)
    fusion = Fusion(Pool.repeat(endpoint, 5), policy=QuorumPolicy(quorum=4))
    result = await fusion.arun("q")
    assert len(result.succeeded) == 4 and [c.status for c in result.failed] == ["cancelled"]
    assert result.usage.candidates.calls_without_usage == 1


async def test_logs_never_contain_the_key_or_prompt(
    fake: FakeOpenAIServer,
    endpoint_factory: Callable[..., OpenAIEndpoint],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="polyfuse")
    endpoint = endpoint_factory(api_key="sk-secret-999", supports_n=None, max_retries=1)
    fake.inject(Fault("status", status=500), Fault("status", status=400))
    fusion = Fusion(Pool.repeat(endpoint, 2))
    await fusion.arun("my private question about taxes")
    text = caplog.text
    assert caplog.records  # something was logged (the retry, the n refusal)
    assert "sk-secret-999" not in text and "private question" not in text


def test_public_api_is_exported_and_sorted() -> None:
    assert polyfuse.__all__ == sorted(polyfuse.__all__, key=str)
    for name in polyfuse.__all__:
        assert getattr(polyfuse, name) is not None

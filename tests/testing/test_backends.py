"""FunctionBackend and ScriptedBackend: in-process fakes that see why they are called."""

from __future__ import annotations

import asyncio

import pytest

from polyfuse import (
    Backend,
    BestOfN,
    ChatRequest,
    Completion,
    FusedToken,
    Fusion,
    FusionSpec,
    InvalidRequestError,
    LLMJudge,
    MixtureOfAgents,
    NoCandidatesError,
    Pool,
    RateLimitError,
    ToolCall,
    ToolCallFunction,
    UniversalSelfConsistency,
)
from polyfuse.testing import FunctionBackend, ScriptedBackend


def test_is_a_backend() -> None:
    assert isinstance(FunctionBackend(lambda request: "x"), Backend)
    assert isinstance(ScriptedBackend({"candidate": "x"}), Backend)


async def test_every_role_reaches_the_function() -> None:
    seen: list[tuple[str | None, int | None]] = []

    def reply(request: ChatRequest) -> str:
        seen.append((request.role, request.params.seed))
        if request.role == "judge":
            return "Score: 5"
        if request.role == "selector":
            return "The most consistent response is Response 1"
        return f"{request.role} answer"

    backend = FunctionBackend(reply)
    pool = Pool.repeat(backend, 2)
    await Fusion(pool).arun("q", seed=10)
    await Fusion(pool, BestOfN(LLMJudge(backend))).arun("q")
    await Fusion(pool, UniversalSelfConsistency(backend)).arun("q")
    await Fusion(pool, MixtureOfAgents(backend, layers=2)).arun("q")
    roles = {role for role, _ in seen}
    assert roles == {"candidate", "fusor", "judge", "selector", "proposer"}
    assert seen[:2] == [("candidate", 10), ("candidate", 11)]  # one call per sample, seeded
    assert [r.role for r in backend.requests_for("fusor")] == ["fusor"] * 2  # fuse + MoA


async def test_the_role_is_not_sent_as_a_sampling_parameter() -> None:
    backend = FunctionBackend(lambda request: "ok")
    await Fusion(Pool.repeat(backend, 1)).arun("q", temperature=0.5)
    body = backend.requests[0].params.to_body()
    assert body == {"temperature": 0.5}


async def test_async_functions_completions_and_exceptions() -> None:
    async def reply(request: ChatRequest) -> Completion | str | Exception:
        await asyncio.sleep(0)
        if request.role == "fusor":
            call = ToolCall(
                id="c1", function=ToolCallFunction(name="lookup", arguments='{"q": "x"}')
            )
            return Completion(content=None, tool_calls=[call], finish_reason="tool_calls")
        if request.params.seed == 1:
            return RateLimitError("slow down", endpoint="fn", status_code=429)
        return "draft"

    backend = FunctionBackend(reply, name="fn")
    result = await Fusion(Pool.repeat(backend, 3)).arun("q", seed=0)
    assert [c.ok for c in result.candidates] == [True, False, True]
    assert result.candidates[1].error is not None
    assert result.candidates[1].error.type == "RateLimitError"
    assert result.message.tool_calls is not None
    assert result.message.tool_calls[0].function.name == "lookup"


async def test_streamed_answers_arrive_in_pieces_with_usage() -> None:
    backend = ScriptedBackend(
        {"candidate": ["a b", "c d"], "fusor": "the fused answer"}, chunk_words=1
    )
    fusion = Fusion(Pool.repeat(backend, 2))
    tokens = [e.delta async for e in fusion.astream("q") if isinstance(e, FusedToken)]
    assert tokens == ["the", " fused", " answer"]
    result = await fusion.arun("q")
    assert result.usage.aggregator.completion_tokens == 3
    assert result.usage.candidates.calls == 2


async def test_scripted_replies_go_in_turn_and_the_last_repeats() -> None:
    backend = ScriptedBackend({"candidate": ["1", "2"], "judge": ["Score: 2", "Score: 9"]})
    fusion = FusionSpec(pool=[backend], n=3, strategy="best-of-n").build()
    result = await fusion.arun("q")
    assert [c.text for c in result.candidates] == ["1", "2", "2"]
    assert result.aggregation.scores == {0: 2.0, 1: 9.0, 2: 9.0}
    assert result.content == "2"


async def test_an_unscripted_role_is_a_visible_failure() -> None:
    backend = ScriptedBackend({"candidate": ["x", "y"]}, name="scripted")
    result = await Fusion(Pool.repeat(backend, 2)).arun("q")
    # the fusor call failed (no script for it): the fusion fell back and says why
    assert result.aggregation.fallback_reason is not None
    assert "no scripted reply for a fusor call" in result.aggregation.fallback_reason


def test_bad_construction() -> None:
    with pytest.raises(InvalidRequestError, match="function of the request"):
        FunctionBackend("not callable")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="is empty"):
        ScriptedBackend({"candidate": []})


async def test_a_bad_reply_type_names_the_fix() -> None:
    backend = FunctionBackend(lambda request: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(NoCandidatesError, match="return text, a Completion or an exception"):
        await Fusion(Pool.repeat(backend, 1)).arun("q")

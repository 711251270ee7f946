"""A reward model that answers 404/401/422 is a configuration error, raised; an unreachable
or failing one still lets the fusion fall back (recorded). Unknown sampling fields name the
working ``extra_body`` form."""

from __future__ import annotations

from typing import Any

import pytest

from polyfuse import (
    BestOfN,
    ChatRequest,
    Fusion,
    InvalidRequestError,
    OpenAIEndpoint,
    Pool,
    QuorumPolicy,
    RewardModelScorer,
)
from polyfuse.testing import FakeOpenAIServer, Fault, serve


async def test_a_reward_model_url_that_answers_404_raises(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint, fake_url: str
) -> None:
    # The fake server answers 404 for a path it does not serve: a typo in the scorer's URL.
    scorer = RewardModelScorer(fake_url.removesuffix("/v1") + "/scroe")
    with pytest.raises(InvalidRequestError, match=r"answered HTTP 404.*RewardModelScorer's url"):
        await Fusion(Pool.repeat(endpoint, 2), BestOfN(scorer)).arun("q")


@pytest.mark.parametrize("status", [401, 422])
async def test_other_configuration_statuses_raise_even_with_fallbacks_on(
    status: int, endpoint: OpenAIEndpoint
) -> None:
    reward = FakeOpenAIServer()
    reward.inject(Fault("status", status=status, body={"error": "nope"}, times=5))
    with serve(reward) as served:
        scorer = RewardModelScorer(served.base_url + "/chat/completions", api_key="k")
        fusion = Fusion(
            Pool.repeat(endpoint, 2),
            BestOfN(scorer),
            policy=QuorumPolicy(fallback_on_aggregator_error=True),
        )
        with pytest.raises(InvalidRequestError, match=f"HTTP {status}"):
            await fusion.arun("q")


async def test_a_server_error_still_falls_back_and_records_why(endpoint: OpenAIEndpoint) -> None:
    reward = FakeOpenAIServer()
    reward.inject(Fault("status", status=503, times=5))
    with serve(reward) as served:
        scorer = RewardModelScorer(served.base_url + "/chat/completions")
        result = await Fusion(Pool.repeat(endpoint, 2), BestOfN(scorer)).arun("q")
    assert result.aggregation.selected == 0
    assert "503" in (result.aggregation.fallback_reason or "")


def test_an_unknown_sampling_field_names_the_extra_body_form() -> None:
    with pytest.raises(InvalidRequestError) as err:
        ChatRequest.build("q", top_k=5)
    message = str(err.value)
    assert "top_k: unknown parameter" in message
    assert "extra_body={'top_k': 5}" in message
    assert "model_kwargs={'extra_body': {'top_k': 5}}" in message
    request = ChatRequest.build("q", extra_body={"top_k": 5})
    body: dict[str, Any] = request.params.model_dump(exclude_none=True)
    assert body["extra_body"] == {"top_k": 5}

"""Bad input is caught at the edge with messages that say what to do."""

from __future__ import annotations

import pytest

from polyfuse import (
    ChatRequest,
    Fusion,
    InvalidRequestError,
    MajorityVote,
    OpenAIEndpoint,
    Pool,
    PoolMember,
    QuorumPolicy,
)


def test_empty_messages() -> None:
    with pytest.raises(InvalidRequestError, match="messages is empty"):
        ChatRequest.build([])
    with pytest.raises(InvalidRequestError, match="prompt is empty"):
        ChatRequest.build("   ")


def test_unknown_role() -> None:
    with pytest.raises(InvalidRequestError, match="unknown role 'robot'.*use one of"):
        ChatRequest.build([{"role": "robot", "content": "hi"}])


def test_message_not_a_dict() -> None:
    with pytest.raises(InvalidRequestError, match="message 0 is a str"):
        ChatRequest.build(["hello"])  # type: ignore[list-item]


def test_tool_message_needs_call_id() -> None:
    with pytest.raises(InvalidRequestError, match="tool_call_id"):
        ChatRequest.build([{"role": "tool", "content": "42"}])


def test_user_message_needs_content() -> None:
    with pytest.raises(InvalidRequestError, match="needs 'content'"):
        ChatRequest.build([{"role": "user"}])


def test_unknown_parameter_points_to_extra_body() -> None:
    with pytest.raises(InvalidRequestError, match="temprature.*extra_body"):
        ChatRequest.build("hi", temprature=0.5)


def test_bad_parameter_value() -> None:
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        ChatRequest.build("hi", max_tokens=0)


def test_extra_body_is_forwarded() -> None:
    request = ChatRequest.build("hi", extra_body={"top_k": 20})
    assert request.params.to_body() == {"top_k": 20}


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://x/v1", "", "http://"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidRequestError, match="not an http"):
        OpenAIEndpoint(url, "m")


def test_missing_model() -> None:
    with pytest.raises(InvalidRequestError, match="model"):
        OpenAIEndpoint("http://127.0.0.1:1/v1", "")


def test_url_with_chat_completions_suffix_is_trimmed() -> None:
    endpoint = OpenAIEndpoint("http://127.0.0.1:1/v1/chat/completions/", "m")
    assert endpoint.base_url == "http://127.0.0.1:1/v1"


def test_unknown_endpoint_setting() -> None:
    # Explicit keyword arguments: a typo is a TypeError that names it (and type checkers see it).
    with pytest.raises(TypeError, match="max_concurency"):
        OpenAIEndpoint("http://127.0.0.1:1/v1", "m", max_concurency=3)  # type: ignore[call-arg]


def test_n_below_one() -> None:
    endpoint = OpenAIEndpoint("http://127.0.0.1:1/v1", "m")
    with pytest.raises(InvalidRequestError, match="n must be an integer >= 1"):
        Pool.repeat(endpoint, 0)
    with pytest.raises(InvalidRequestError, match="samples must be an integer >= 1"):
        PoolMember(endpoint, samples=-1)


def test_empty_pool_and_non_backend_member() -> None:
    with pytest.raises(InvalidRequestError, match="pool is empty"):
        Pool([])
    with pytest.raises(InvalidRequestError, match="a panel needs at least one backend"):
        Pool.panel([])
    with pytest.raises(InvalidRequestError, match="not a polyfuse Backend"):
        Pool.panel(["http://127.0.0.1:1/v1"])  # type: ignore[list-item]


def test_fusion_checks_its_parts() -> None:
    with pytest.raises(InvalidRequestError, match="must be a polyfuse Pool"):
        Fusion("pool")  # type: ignore[arg-type]
    pool = Pool.repeat(OpenAIEndpoint("http://127.0.0.1:1/v1", "m"), 2)
    with pytest.raises(InvalidRequestError, match="must be a polyfuse Aggregator"):
        Fusion(pool, "fuse")  # type: ignore[arg-type]


def test_quorum_below_min_candidates() -> None:
    with pytest.raises(ValueError, match="quorum=1 is below min_candidates=2"):
        QuorumPolicy(quorum=1, min_candidates=2)


def test_unknown_vote_extractor() -> None:
    with pytest.raises(ValueError, match="unknown extractor 'middle'"):
        MajorityVote("middle")  # type: ignore[arg-type]


def test_api_key_is_secret() -> None:
    endpoint = OpenAIEndpoint("http://127.0.0.1:1/v1", "m", api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(endpoint)
    assert "sk-very-secret" not in repr(endpoint.config)
    assert "sk-very-secret" not in endpoint.config.model_dump_json()

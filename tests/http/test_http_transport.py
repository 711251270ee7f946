"""One transport for every HTTP call: the ``transport=`` seam, ``timeout=`` and the shared
retry policy, checked on the endpoint, the reward scorer, the embeddings and the health check."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from http_servers import chat_body

from llama_index.embeddings.polyfuse import OpenAICompatibleEmbedding
from polyfuse import APIConnectionError, InvalidRequestError, OpenAIEndpoint, RateLimitError
from polyfuse.aggregators.scorers import RewardModelScorer
from polyfuse.local.model import _poll_health
from polyfuse.messages import ChatRequest
from polyfuse.testing import serve
from polyfuse.transport import HTTPTransport, MockTransport, Request, Response, TransportError


def _chat(content: str) -> Response:
    return Response(200, content=chat_body(content), headers={"Content-Type": "application/json"})


async def test_endpoint_through_a_mock_transport_retries_by_the_policy() -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        if len(seen) == 1:
            raise TransportError("ConnectError", "refused")
        if len(seen) == 2:
            return Response(
                429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "0"}
            )
        return _chat(f"answer to {request.json()['messages'][-1]['content']}")

    endpoint = OpenAIEndpoint(
        "http://mock/v1", "m", api_key="sk-1", backoff_base=0.01, transport=MockTransport(handler)
    )
    [completion] = await endpoint.complete(ChatRequest.build("hello"))
    assert completion.content == "answer to hello" and completion.retries == 2
    assert [r.url for r in seen] == ["http://mock/v1/chat/completions"] * 3
    assert seen[0].method == "POST" and seen[0].headers["authorization"] == "Bearer sk-1"


async def test_sse_through_a_mock_transport() -> None:
    events = [
        {"choices": [{"index": 0, "delta": {"content": "hi "}}]},
        {"choices": [{"index": 0, "delta": {"content": "there"}, "finish_reason": "stop"}]},
    ]
    stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"

    async def handler(request: Request) -> Response:
        assert request.json()["stream"] is True
        return Response(200, content=stream.encode(), headers={"content-type": "text/event-stream"})

    endpoint = OpenAIEndpoint("http://mock/v1", "m", transport=MockTransport(handler))
    parts = [d.content async for d in endpoint.stream(ChatRequest.build("x")) if d.content]
    assert "".join(parts) == "hi there"


async def test_status_errors_are_typed_and_counted() -> None:
    def handler(request: Request) -> Response:
        return Response(429, json={"error": {"message": "busy"}}, headers={"retry-after": "0"})

    endpoint = OpenAIEndpoint(
        "http://mock/v1", "m", max_retries=1, transport=MockTransport(handler)
    )
    with pytest.raises(RateLimitError, match="busy") as failure:
        await endpoint.complete(ChatRequest.build("x"))
    assert failure.value.retries == 1


def test_timeout_has_httpx_meaning() -> None:
    assert OpenAIEndpoint("http://h/v1", "m", timeout=7)._timeouts.read == 7.0
    both = OpenAIEndpoint("http://h/v1", "m", timeout=7, connect_timeout=2)._timeouts
    assert (both.connect, both.read, both.write) == (2.0, 7.0, 7.0)
    shaped = OpenAIEndpoint(
        "http://h/v1", "m", timeout=httpx.Timeout(5.0, connect=1.0, read=30.0)
    )._timeouts
    assert (shaped.connect, shaped.read, shaped.write) == (1.0, 30.0, 5.0)
    none = OpenAIEndpoint("http://h/v1", "m", timeout=None)._timeouts
    assert (none.connect, none.read, none.write) == (None, None, None)
    default = OpenAIEndpoint("http://h/v1", "m")._timeouts
    assert (default.connect, default.read) == (10.0, 300.0)
    with pytest.raises(InvalidRequestError, match="timeout"):
        OpenAIEndpoint("http://h/v1", "m", timeout="soon")  # pyright: ignore[reportArgumentType]
    with pytest.raises(InvalidRequestError, match="transport"):
        OpenAIEndpoint("http://h/v1", "m", verify=False, transport=HTTPTransport())


def test_with_options_keeps_the_transport_and_settings() -> None:
    transport = MockTransport(lambda request: _chat("x"))
    endpoint = OpenAIEndpoint("http://h/v1", "m", transport=transport, timeout=3)
    copy = endpoint.with_options(max_retries=5)
    assert copy.transport is transport and copy.config.max_retries == 5
    assert copy._timeouts.read == 3.0
    assert endpoint.with_options(timeout=9)._timeouts.connect == 9.0


async def test_reward_scorer_through_a_mock_transport() -> None:
    calls: list[dict[str, Any]] = []

    def handler(request: Request) -> Response:
        calls.append(request.json())
        if len(calls) == 1:
            return Response(503, json={"error": "warming up"})
        return Response(200, json={"scores": [0.1, 0.9]})

    scorer = RewardModelScorer(
        "http://rm/score", model="rm", transport=MockTransport(handler), max_retries=1
    )
    from polyfuse.results import Candidate

    candidates = [Candidate(index=i, backend="b", content=t) for i, t in enumerate(["a", "b"])]
    result = await scorer.score(ChatRequest.build("q"), candidates)
    assert result.scores == [0.1, 0.9] and len(calls) == 2
    assert calls[1]["responses"] == ["a", "b"] and calls[1]["model"] == "rm"


async def test_reward_scorer_failure_is_recorded_with_its_retries() -> None:
    def handler(request: Request) -> Response:
        raise TransportError("ReadError", "reset")

    scorer = RewardModelScorer("http://rm/score", transport=MockTransport(handler), max_retries=0)
    from polyfuse.results import Candidate

    result = await scorer.score(ChatRequest.build("q"), [Candidate(index=0, backend="b")])
    assert result.scores == [None]
    error = result.calls[0].error
    assert error is not None and error.type == "APIConnectionError"


def test_embeddings_through_a_mock_transport() -> None:
    def handler(request: Request) -> Response:
        texts = request.json()["input"]
        data = [{"index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(texts)]
        return Response(200, json={"data": data})

    embed = OpenAICompatibleEmbedding(
        "http://emb/v1", model_name="e", transport=MockTransport(handler)
    )
    assert embed.get_text_embedding_batch(["ab", "abcd"]) == [[2.0, 1.0], [4.0, 1.0]]


def test_embeddings_unreachable_is_a_typed_error() -> None:
    def handler(request: Request) -> Response:
        raise TransportError("ConnectError", "cannot connect to emb:80")

    embed = OpenAICompatibleEmbedding(
        "http://emb/v1", model_name="e", max_retries=0, transport=MockTransport(handler)
    )
    with pytest.raises(APIConnectionError, match="emb:80"):
        embed.get_query_embedding("x")


class _Health:
    """``/health`` that answers 503 (loading) ``loading`` times, then 200."""

    def __init__(self, loading: int = 2) -> None:
        self.calls = 0
        self.loading = loading

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        status = 503 if self.calls <= self.loading else 200
        body = json.dumps({"status": "loading" if status == 503 else "ok"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def test_local_model_health_check_through_the_transport() -> None:
    app = _Health()
    with serve(app) as served:
        assert await _poll_health(served.root_url, time.monotonic() + 30) is None
    assert app.calls == 3
    with serve(_Health(loading=10**9)) as served:  # never ready: the last status is reported
        last = await _poll_health(served.root_url, time.monotonic() + 0.3)
    assert last == "HTTP 503"

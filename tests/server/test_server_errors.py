"""Every bad input, and every upstream failure, answered with the right status and an
OpenAI-shaped error body."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from server_helpers import RunningServer, wait_until

from polyfuse.testing import FakeOpenAIServer, FakeReply, Fault, LatencyModel

USER = [{"role": "user", "content": "hi"}]


def post(server: RunningServer, body: Any, **kwargs: Any) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        kwargs.setdefault("headers", {"content-type": "application/json"})
        return httpx.post(server.chat_url, content=body, timeout=10, **kwargs)
    return httpx.post(server.chat_url, json=body, timeout=10, **kwargs)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": USER}, "model", "Field required"),
        ({"model": "fusion/fast"}, "messages", "Field required"),
        ({"model": "fusion/fast", "messages": []}, "messages", "at least 1"),
        ({"model": "fusion/fast", "messages": "hi"}, "messages", "valid list"),
        ({"model": 3, "messages": USER}, "model", "valid string"),
        (
            {"model": "fusion/fast", "messages": [{"role": "wizard", "content": "x"}]},
            "messages",
            "unknown role 'wizard'",
        ),
        (
            {"model": "fusion/fast", "messages": [{"role": "tool", "content": "x"}]},
            "messages",
            "tool_call_id",
        ),
        ({"model": "fusion/fast", "messages": USER, "temperature": "hot"}, "temperature", "number"),
        ({"model": "fusion/fast", "messages": USER, "temperature": 3}, "temperature", "less than"),
        ({"model": "fusion/fast", "messages": USER, "max_tokens": 0}, "max_tokens", "greater"),
        ({"model": "fusion/fast", "messages": USER, "stream": "yes"}, "stream", "boolean"),
        ({"model": "fusion/fast", "messages": USER, "n": 2}, "n", "n must be 1"),
        ({"model": "fusion/fast", "messages": USER, "logprobs": True}, "logprobs", "logprobs"),
        ({"model": "fusion/fast", "messages": USER, "top_k": 5}, "top_k", "forward_params"),
        (
            {"model": "fusion/fast", "messages": USER, "functions": []},
            "functions",
            "use 'tools'",
        ),
        (
            {"model": "fusion/fast", "messages": USER, "tools": [{"type": "function"}]},
            "tools.0.function",
            "Field required",
        ),
        (
            {"model": "fusion/fast", "messages": USER, "tool_choice": "sometimes"},
            "tool_choice",
            "",
        ),
        (
            {"model": "fusion/fast", "messages": USER, "response_format": {"type": "yaml"}},
            "response_format.type",
            "",
        ),
        (
            {"model": "fusion/fast", "messages": USER, "response_format": {"type": "json_schema"}},
            "response_format",
            "needs a 'json_schema'",
        ),
        (
            {"model": "fusion/fast", "messages": USER, "polyfuse": {"candidates": True}},
            "polyfuse.candidates",
            "Extra inputs",
        ),
    ],
)
def test_schema_errors_are_400_naming_the_field(
    server: RunningServer, fake: FakeOpenAIServer, body: dict[str, Any], param: str, fragment: str
) -> None:
    error = error_of(post(server, body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in error["message"]
    assert fake.requests == []  # nothing went upstream


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"model": "fusion/fast", "messages": [', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
    ],
)
def test_malformed_bodies_are_400(server: RunningServer, raw: bytes, fragment: str) -> None:
    error = error_of(post(server, raw), 400)
    assert fragment in error["message"]


def test_unknown_model_is_404(server: RunningServer, fake: FakeOpenAIServer) -> None:
    error = error_of(post(server, {"model": "fusion/slow", "messages": USER}), 404)
    assert error["code"] == "model_not_found"
    assert "known models: fusion/fast, fusion/vote" in error["message"]
    assert fake.requests == []


def test_unknown_route_and_method_use_the_error_shape(server: RunningServer) -> None:
    error_of(httpx.get(server.root_url + "/v1/embeddings", timeout=5), 404)
    error_of(httpx.get(server.chat_url, timeout=5), 405)


def test_oversized_body_is_413(make_server: Callable[..., RunningServer]) -> None:
    server = make_server(server={"max_body_bytes": 2048})
    big = {"model": "fusion/fast", "messages": [{"role": "user", "content": "x" * 4096}]}
    error = error_of(post(server, big), 413)
    assert error["code"] == "request_too_large"
    assert "2048" in error["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"model": "fusion/fast", "messages": [{"role": "user", "content": "'
        for _ in range(8):
            yield b"y" * 512
        yield b'"}]}'

    response = httpx.post(
        server.chat_url,
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert error_of(response, 413)["code"] == "request_too_large"
    # A body under the limit still works.
    assert post(server, {"model": "fusion/fast", "messages": USER}).status_code == 200


def test_return_candidates_is_off_by_default(make_server: Callable[..., RunningServer]) -> None:
    server = make_server()
    body = {"model": "fusion/fast", "messages": USER, "polyfuse": {"return_candidates": True}}
    error = error_of(post(server, body), 400)
    assert error["param"] == "polyfuse.return_candidates"


def test_vendor_params_are_forwarded_when_allowed(
    make_server: Callable[..., RunningServer], fake: FakeOpenAIServer
) -> None:
    server = make_server(server={"forward_params": ["top_k"]})
    body = {"model": "fusion/fast", "messages": USER, "top_k": 5, "metadata": {"a": "b"}}
    assert post(server, body).status_code == 200
    assert all(b["top_k"] == 5 for b in fake.requests)
    assert all("metadata" not in b for b in fake.requests)


# --------------------------------------------------------------------------- auth


@pytest.fixture
def keyed_server(
    make_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> RunningServer:
    monkeypatch.setenv("TEST_POLYFUSE_KEYS", "sk-env-one, sk-env-two")
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# accepted keys\nsk-file-key\n\n")
    return make_server(
        server={"api_keys_env": "TEST_POLYFUSE_KEYS", "api_keys_file": str(key_file)}
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer sk-wrong"}, {"authorization": "Basic c2stZW52LW9uZQ=="}],
    ids=["missing", "wrong", "not-bearer"],
)
def test_requests_without_a_valid_key_are_refused(
    keyed_server: RunningServer, fake: FakeOpenAIServer, headers: dict[str, str]
) -> None:
    body = {"model": "fusion/fast", "messages": USER}
    error = error_of(post(keyed_server, body, headers=headers), 401)
    assert error["code"] == "invalid_api_key"
    response = httpx.get(keyed_server.base_url + "/models", headers=headers, timeout=5)
    assert error_of(response, 401)["code"] == "invalid_api_key"
    assert response.headers["www-authenticate"] == "Bearer"
    assert fake.requests == []


def test_keys_from_env_and_file_are_accepted(
    keyed_server: RunningServer, fake: FakeOpenAIServer
) -> None:
    for key in ("sk-env-one", "sk-env-two", "sk-file-key"):
        oai = openai.OpenAI(base_url=keyed_server.base_url, api_key=key, max_retries=0)
        assert oai.chat.completions.create(model="fusion/fast", messages=USER).choices  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed_server.base_url, api_key="nope", max_retries=0).models.list()
    # Health and metrics stay open for probes and scrapers.
    assert httpx.get(keyed_server.root_url + "/health", timeout=5).status_code == 200
    metrics = httpx.get(keyed_server.root_url + "/metrics", timeout=5).text
    assert 'polyfuse_requests_total{model="-",status="401"} 1.0' in metrics
    assert "sk-env-one" not in metrics


# --------------------------------------------------------------------------- concurrency


def test_saturated_server_answers_429_with_retry_after(
    make_server: Callable[..., RunningServer], make_fake: Callable[..., FakeOpenAIServer]
) -> None:
    make_fake(latency=LatencyModel(tokens_per_s=20, output_tokens=20))  # ~1s per call
    server = make_server(server={"max_concurrent_requests": 1, "retry_after_s": 3})
    body = {"model": "fusion/fast", "messages": USER, "stream": True}
    with httpx.stream("POST", server.chat_url, json=body, timeout=30) as held:
        assert wait_until(lambda: server.in_flight() == 1, timeout=5)
        refused = post(server, {"model": "fusion/fast", "messages": USER})
        error = error_of(refused, 429)
        assert refused.headers["retry-after"] == "3"
        assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
        assert held.status_code == 200
        assert b"[DONE]" in held.read()
    assert wait_until(lambda: server.in_flight() == 0, timeout=5)
    make_fake()
    assert post(server, {"model": "fusion/fast", "messages": USER}).status_code == 200


# --------------------------------------------------------------------------- upstream failures


def test_all_candidates_failing_is_502_with_reasons(
    server: RunningServer, fake: FakeOpenAIServer
) -> None:
    fake.inject(Fault("status", status=503, match_model="fake-model", times=5))
    error = error_of(post(server, {"model": "fusion/fast", "messages": USER}), 502)
    assert error["type"] == "server_error" and error["code"] == "no_candidates"
    assert error["message"].startswith("all 3 candidates failed")
    for index in range(3):
        assert f"#{index} (fake)" in error["message"]
    assert "HTTP 503" in error["message"]


def test_all_candidates_failing_in_a_stream_is_a_real_502(
    server: RunningServer, fake: FakeOpenAIServer
) -> None:
    fake.inject(Fault("status", status=500, match_model="fake-model", times=5))
    with pytest.raises(openai.InternalServerError) as info:
        openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0).chat.completions.create(
            model="fusion/fast",
            messages=USER,  # type: ignore[arg-type]
            stream=True,
        )
    assert info.value.status_code == 502
    assert fake.requests and not [b for b in fake.requests if b["model"] == "fusor-model"]


def test_upstream_rejecting_the_request_is_400(
    server: RunningServer, fake: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject(
        Fault(
            "status",
            status=400,
            body={"error": {"message": "response_format is not supported by this model"}},
            match_model="fake-model",
        )
    )
    error = error_of(post(server, {"model": "fusion/fast", "messages": USER}), 400)
    assert error["code"] == "upstream_rejected_request"
    # The client gets the status and a short reason; the upstream's words are in the log.
    assert "HTTP 400: the endpoint rejected the request as invalid" in error["message"]
    assert "response_format is not supported" not in error["message"]
    assert "response_format is not supported" in caplog.text


def test_upstream_auth_failure_is_502_and_leaks_no_key(
    make_server: Callable[..., RunningServer],
    fake: FakeOpenAIServer,
    fake_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "sk-upstream-secret-0123456789"
    monkeypatch.setenv("TEST_UPSTREAM_KEY", secret)
    server = make_server(
        endpoints={
            "fake": {
                "base_url": fake_url,
                "model": "fake-model",
                "max_retries": 0,
                "api_key_env": "TEST_UPSTREAM_KEY",
            }
        }
    )
    fake.inject(
        Fault(
            "status",
            status=401,
            body={"error": {"message": f"Incorrect API key provided: {secret[:12]}...6789"}},
        )
    )
    response = post(server, {"model": "fusion/fast", "messages": USER})
    error = error_of(response, 502)
    assert "rejected the server's credentials" in error["message"]
    assert secret[:12] not in response.text and "6789" not in response.text
    assert fake.request_headers[0]["authorization"] == f"Bearer {secret}"


def test_partial_candidate_failure_still_answers(
    make_server: Callable[..., RunningServer],
    make_fake: Callable[..., FakeOpenAIServer],
    fake_url: str,
) -> None:
    server = make_server(
        endpoints={
            "fake": {"base_url": fake_url, "model": "fake-model", "max_retries": 0},
            "fusor": {"base_url": fake_url, "model": "fusor-model", "supports_n": False},
        },
        server={"allow_return_candidates": True},
    )
    fake = make_fake(n_mode="reject")  # the pool learns to make three separate calls
    body: dict[str, Any] = {"model": "fusion/fast", "messages": USER}
    assert post(server, body).status_code == 200
    fake.inject(Fault("status", status=503, match_model="fake-model", times=2))
    body["polyfuse"] = {"return_candidates": True}
    response = post(server, body)
    assert response.status_code == 200, response.text
    ext = response.json()["polyfuse"]
    assert ext["candidates_failed"] == 2 and ext["candidates_ok"] == 1
    metrics = httpx.get(server.root_url + "/metrics", timeout=5).text
    assert 'polyfuse_candidates_failed_total{model="fast",status="failed"}' in metrics


def test_fusor_failing_mid_stream_ends_the_stream_with_an_error_event(
    server: RunningServer, make_fake: Callable[..., FakeOpenAIServer]
) -> None:
    fake = make_fake()
    fake.inject(Fault("error_mid_stream", match_model="fusor-model"))
    body = {"model": "fusion/fast", "messages": USER, "stream": True}
    with httpx.stream("POST", server.chat_url, json=body, timeout=10) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "answer_restarted"
    assert json.loads(events[1])["choices"][0]["delta"]["content"]  # some text had gone out
    with pytest.raises(openai.APIError, match="failed mid-stream"):
        fake.inject(Fault("error_mid_stream", match_model="fusor-model"))
        oai = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        list(oai.chat.completions.create(model="fusion/fast", messages=USER, stream=True))  # type: ignore[arg-type]


def test_fusor_failing_without_stream_falls_back_to_a_candidate(
    server: RunningServer, fake: FakeOpenAIServer
) -> None:
    fake.inject(Fault("status", status=500, match_model="fusor-model"))
    body = {"model": "fusion/fast", "messages": USER, "polyfuse": {"return_candidates": True}}
    response = post(server, body)
    assert response.status_code == 200
    data = response.json()
    assert data["polyfuse"]["fallback_reason"]
    assert data["choices"][0]["message"]["content"].startswith("Answer ")


def test_responder_echo_is_plain_text(server: RunningServer, make_fake: Any) -> None:
    make_fake(responder=lambda body, i: FakeReply(content="x"))
    assert (
        post(server, {"model": "fusion/vote", "messages": USER}).json()["choices"][0]["message"][
            "content"
        ]
        == "x"
    )

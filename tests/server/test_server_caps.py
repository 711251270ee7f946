"""Request caps: each gives a 400 that names the limit, before anything goes upstream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from server_helpers import RunningServer

from polyfuse.testing import FakeOpenAIServer

USER = [{"role": "user", "content": "hi"}]
JSON = {"content-type": "application/json"}


def refusal(response: httpx.Response, setting: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert f"[server] {setting}" in error["message"]
    return error


def post_raw(server: RunningServer, raw: bytes) -> httpx.Response:
    return httpx.post(server.chat_url, content=raw, headers=JSON, timeout=30)


def test_message_and_tool_counts_are_capped(server: RunningServer, fake: FakeOpenAIServer) -> None:
    many = [{"role": "user", "content": "x"}] * 3000
    error = refusal(
        httpx.post(server.chat_url, json={"model": "fusion/fast", "messages": many}, timeout=30),
        "max_messages",
    )
    assert (
        error["param"] == "messages" and "3000" in error["message"] and "2048" in error["message"]
    )
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    body = {"model": "fusion/fast", "messages": USER, "tools": [tool] * 200}
    error = refusal(httpx.post(server.chat_url, json=body, timeout=30), "max_tools")
    assert error["param"] == "tools" and "128" in error["message"]
    assert fake.requests == []


def test_total_content_size_is_capped(
    make_server: Callable[..., RunningServer], fake: FakeOpenAIServer
) -> None:
    server = make_server(server={"max_content_chars": 1000})
    messages = [{"role": "user", "content": "a" * 600}, {"role": "user", "content": "b" * 600}]
    error = refusal(
        httpx.post(
            server.chat_url, json={"model": "fusion/fast", "messages": messages}, timeout=30
        ),
        "max_content_chars",
    )
    assert "1208 characters" in error["message"]  # every string of the messages counts
    assert fake.requests == []
    small = {"model": "fusion/fast", "messages": [{"role": "user", "content": "a" * 900}]}
    assert httpx.post(server.chat_url, json=small, timeout=30).status_code == 200


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deep_json_is_a_400_not_a_500(
    server: RunningServer, fake: FakeOpenAIServer, depth: int
) -> None:
    raw = (
        b'{"model": "fusion/fast", "messages": [{"role": "user", "content": "hi"}], '
        b'"metadata": ' + b"[" * depth + b"]" * depth + b"}"
    )
    error = refusal(post_raw(server, raw), "max_json_depth")
    assert "64 levels" in error["message"]
    assert fake.requests == []
    assert httpx.get(server.root_url + "/health", timeout=5).status_code == 200


def test_max_tokens_has_a_ceiling(server: RunningServer, fake: FakeOpenAIServer) -> None:
    for field, value in (("max_tokens", 10**20), ("max_completion_tokens", 40_000)):
        body = {"model": "fusion/fast", "messages": USER, field: value}
        error = refusal(httpx.post(server.chat_url, json=body, timeout=30), "max_tokens_ceiling")
        assert error["param"] == field and "32768" in error["message"]
    assert fake.requests == []
    body = {"model": "fusion/fast", "messages": USER, "max_tokens": 1000}
    assert httpx.post(server.chat_url, json=body, timeout=30).status_code == 200
    assert all(request["max_tokens"] == 1000 for request in fake.requests)


def test_ceiling_is_configurable(make_server: Callable[..., RunningServer]) -> None:
    server = make_server(server={"max_tokens_ceiling": 256})
    body = {"model": "fusion/fast", "messages": USER, "max_tokens": 257}
    assert (
        "256"
        in refusal(httpx.post(server.chat_url, json=body, timeout=30), "max_tokens_ceiling")[
            "message"
        ]
    )


def test_lone_surrogates_are_a_400(server: RunningServer, fake: FakeOpenAIServer) -> None:
    raw = b'{"model": "fusion/fast", "messages": [{"role": "user", "content": "hi \\ud800"}]}'
    response = post_raw(server, raw)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_unicode" and error["param"] == "messages"
    raw = b'{"model": "fusion/fast", "messages": [{"role": "user", "content": "x"}], "user": "\\udfff"}'
    assert post_raw(server, raw).json()["error"]["param"] == "user"
    assert fake.requests == []
    pair = b'{"model": "fusion/fast", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'
    assert post_raw(server, pair).status_code == 200  # an escaped surrogate *pair* is fine

"""``POST /v1/fusion/events`` on a real ``polyfuse serve``, read with httpx."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playground_helpers import (
    ANSWERS,
    API_KEY,
    FUSED,
    LEAK_TRIGGER,
    UPSTREAM_SECRET,
    Served,
    presets_config,
    read_events,
    wait_until,
)

from polyfuse.presets import load_config
from polyfuse.server import create_app
from polyfuse.server import events as events_module
from polyfuse.server.events import EVENT_TYPES
from polyfuse.testing import FakeOpenAIServer, Fault, serve

QUESTION = [{"role": "user", "content": "Why is the sky blue?"}]


def stream(server: Served, body: dict[str, Any], query: str = "") -> list[dict[str, Any]]:
    with httpx.stream(
        "POST", server.events_url + query, json=body, headers=server.auth(), timeout=60
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return read_events(response)


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def test_events_follow_the_fusion_from_start_to_result(server: Served) -> None:
    events = stream(server, {"model": "fusion/panel", "messages": QUESTION})
    assert {e["type"] for e in events} <= set(EVENT_TYPES)
    assert events[0]["type"] == "fusion.started"
    assert events[-1]["type"] == "done"
    started = events[0]
    assert started["model"] == "fusion/panel" and started["method"] == "fuse"
    assert [c["model"] for c in started["candidates"]] == ["alpha", "beta", "gamma"]
    assert started["candidate_tokens"] is True

    for index, model in enumerate(["alpha", "beta", "gamma"]):
        mine = [
            e
            for e in events
            if e.get("index") == index or e.get("candidate", {}).get("index") == index
        ]
        kinds = [e["type"] for e in mine]
        assert kinds[0] == "candidate.started" and kinds[-1] == "candidate.finished"
        assert set(kinds[1:-1]) == {"candidate.token"}
        streamed = "".join(e["delta"] for e in mine if e["type"] == "candidate.token")
        assert streamed == ANSWERS[model] == mine[-1]["candidate"]["content"]

    position = {id(e): i for i, e in enumerate(events)}
    aggregation = of_type(events, "aggregation.started")[0]
    assert aggregation == {"type": "aggregation.started", "method": "fuse", "candidates": 3}
    assert all(
        position[id(e)] < position[id(aggregation)] for e in of_type(events, "candidate.finished")
    )
    fused = of_type(events, "fused.token")
    assert fused and all(position[id(e)] > position[id(aggregation)] for e in fused)
    assert "".join(e["delta"] for e in fused) == FUSED

    result = events[-1]["result"]
    assert result["message"]["content"] == FUSED
    assert [c["status"] for c in result["candidates"]] == ["ok", "ok", "ok"]
    assert set(result["aggregation"]["contributions"]) == {"0", "1", "2"}
    usage = result["usage"]
    assert usage["total"]["calls"] == 4  # three candidates and the fusor
    assert usage["total"]["total_tokens"] == (
        usage["candidates"]["total_tokens"] + usage["aggregator"]["total_tokens"]
    )
    assert set(result["metadata"]) <= {"n", "prompt_version"}  # no endpoint URLs
    passages = events[-1]["passages"]
    assert "".join(p["text"] for p in passages) == FUSED
    assert [p["sources"] for p in passages] == [[0], [1], [2]]


def test_candidate_tokens_false_keeps_the_presets_sampling(server: Served) -> None:
    events = stream(
        server, {"model": "fusion/panel", "messages": QUESTION}, "?candidate_tokens=false"
    )
    assert events[0]["candidate_tokens"] is False
    assert not of_type(events, "candidate.token")
    assert len(of_type(events, "candidate.finished")) == 3
    assert events[-1]["type"] == "done"


def test_a_failed_candidate_reports_type_and_status_never_the_upstream_text(
    server: Served, upstream: FakeOpenAIServer
) -> None:
    with httpx.stream(
        "POST",
        server.events_url,
        json={"model": "fusion/failing", "messages": QUESTION},
        headers=server.auth(),
        timeout=60,
    ) as response:
        raw = response.read().decode()
    assert UPSTREAM_SECRET not in raw and "internal detail" not in raw
    events = read_events(httpx.Response(200, content=raw.encode()))
    (failed,) = of_type(events, "candidate.failed")
    assert failed["candidate"]["index"] == 1
    assert failed["candidate"]["status"] == "failed"
    assert failed["candidate"]["error"] == {
        "type": "ServerError",
        "status_code": 500,
        "message": "[broken] HTTP 500: the endpoint failed (server error)",
    }
    result = events[-1]["result"]
    assert [c["status"] for c in result["candidates"]] == ["ok", "failed", "ok"]
    assert of_type(events, "aggregation.started")[0]["candidates"] == 2


def test_a_straggler_is_cancelled_when_the_quorum_is_reached(
    server: Served, upstream: FakeOpenAIServer
) -> None:
    events = stream(server, {"model": "fusion/quorum", "messages": QUESTION})
    (cancelled,) = of_type(events, "candidate.cancelled")
    assert cancelled["reason"] == "quorum"
    assert cancelled["candidate"]["index"] == 2
    assert cancelled["candidate"]["status"] == "cancelled"
    assert cancelled["candidate"]["error"]["message"] == "cancelled: quorum of 2 reached"
    assert not of_type(events, "candidate.failed")  # cancelled is its own event
    result = events[-1]["result"]
    assert [c["status"] for c in result["candidates"]] == ["ok", "ok", "cancelled"]


def test_a_failed_fusor_falls_back_with_a_reduced_reason(server: Served) -> None:
    events = stream(server, {"model": "fusion/badfusor", "messages": QUESTION})
    result = events[-1]["result"]
    assert result["aggregation"]["fallback_reason"] == (
        "AggregationError: the fusor broken failed: [broken] HTTP 500: the endpoint failed "
        "(server error); returned candidate #0 instead"
    )
    assert result["aggregation"]["selected"] == 0
    assert result["message"]["content"] == ANSWERS["alpha"]
    (fusor_call,) = result["aggregation"]["calls"]
    assert fusor_call["error"]["message"] == "[broken] HTTP 500: the endpoint failed (server error)"
    assert "".join(e["delta"] for e in of_type(events, "fused.token")) == ANSWERS["alpha"]
    assert UPSTREAM_SECRET not in json.dumps(events)


def test_a_fusor_failing_mid_answer_restarts_it(server: Served, upstream: FakeOpenAIServer) -> None:
    upstream.inject(Fault("error_mid_stream", match_model="fusor"))
    events = stream(server, {"model": "fusion/panel", "messages": QUESTION})
    kinds = [e["type"] for e in events]
    restart = kinds.index("answer.restarted")
    assert "fused.token" in kinds[:restart]  # part of an answer was sent, then voided
    after = [e["delta"] for e in events[restart:] if e["type"] == "fused.token"]
    assert "".join(after) == ANSWERS["alpha"] == events[-1]["result"]["message"]["content"]
    assert events[restart]["reason"].startswith("AggregationError: ")
    assert events[-1]["result"]["aggregation"]["fallback_reason"].endswith(
        "returned candidate #0 instead"
    )


def test_a_straggler_is_cancelled_at_the_deadline(
    server: Served, upstream: FakeOpenAIServer
) -> None:
    events = stream(server, {"model": "fusion/deadline", "messages": QUESTION})
    assert events[0]["deadline"] == 1.0
    (cancelled,) = of_type(events, "candidate.cancelled")
    assert cancelled["reason"] == "deadline"
    assert cancelled["candidate"]["error"]["message"] == "cancelled: deadline of 1.0s passed"
    result = events[-1]["result"]
    assert [c["status"] for c in result["candidates"]] == ["ok", "cancelled"]


def test_known_keys_never_leave_in_model_text(server: Served) -> None:
    body = {"model": "fusion/panel", "messages": [{"role": "user", "content": LEAK_TRIGGER}]}
    with httpx.stream(
        "POST", server.events_url, json=body, headers=server.auth(), timeout=60
    ) as response:
        raw = response.read().decode()
    assert API_KEY not in raw
    events = read_events(httpx.Response(200, content=raw.encode()))
    for index in range(3):
        tokens = [e["delta"] for e in of_type(events, "candidate.token") if e["index"] == index]
        assert "".join(tokens) == "the key is *** ok"
    fused = "".join(e["delta"] for e in of_type(events, "fused.token"))
    assert fused == events[-1]["result"]["message"]["content"] == "fused: the key is *** ok"
    assert "".join(p["text"] for p in events[-1]["passages"]) == fused


def test_every_candidate_failing_ends_with_an_error_event(server: Served) -> None:
    events = stream(server, {"model": "fusion/allfail", "messages": QUESTION})
    assert len(of_type(events, "candidate.failed")) == 2
    error = events[-1]
    assert error["type"] == "error"
    assert error["status"] == 502
    assert error["error"]["code"] == "no_candidates"
    assert UPSTREAM_SECRET not in str(error)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing API key"),
        ({"Authorization": "Bearer wrong-key"}, "Incorrect API key provided"),
    ],
)
def test_the_same_api_keys_as_chat_completions(
    server: Served, headers: dict[str, str], message: str
) -> None:
    response = httpx.post(
        server.events_url,
        json={"model": "fusion/panel", "messages": QUESTION},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 401
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "query", "status", "fragment"),
    [
        ({"model": "fusion/nope", "messages": QUESTION}, "", 404, "does not exist"),
        ({"model": "fusion/panel", "messages": []}, "", 400, "messages"),
        ({"model": "fusion/panel", "messages": QUESTION, "n": 2}, "", 400, "n must be 1"),
        (b"{not json", "", 400, "not valid JSON"),
        ({"model": "fusion/panel", "messages": QUESTION}, "?candidate_tokens=maybe", 400, "true"),
    ],
)
def test_requests_are_validated_like_chat_completions(
    server: Served, body: Any, query: str, status: int, fragment: str
) -> None:
    kwargs: dict[str, Any] = (
        {"content": body, "headers": {**server.auth(), "content-type": "application/json"}}
        if isinstance(body, bytes)
        else {"json": body, "headers": server.auth()}
    )
    response = httpx.post(server.events_url + query, timeout=30, **kwargs)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


def test_the_preset_list_and_the_page_are_served(server: Served) -> None:
    models = httpx.get(server.root_url + "/v1/models", headers=server.auth(), timeout=30).json()
    assert "fusion/panel" in [m["id"] for m in models["data"]]
    for path in ("/", "/playground"):
        page = httpx.get(server.root_url + path, timeout=30)  # no key: the page is public
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script src="/playground/playground.js" defer>' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
    for name, kind in (("playground.js", "text/javascript"), ("playground.css", "text/css")):
        asset = httpx.get(f"{server.root_url}/playground/{name}", timeout=30)
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(kind)
        assert "content-security-policy" in asset.headers
    for path in (
        "/playground/index.html?name=../app.py",
        "/playground/../server/app.py",
        "/playground/playground.js?name=../app.py&media_type=text/plain",
    ):
        response = httpx.get(server.root_url + path, timeout=30)
        assert "create_app" not in response.text, path  # only the listed files are served


# -- servers with their own settings (in this process)


@pytest.fixture
def local_server(
    _fake_switch: tuple[Any, str], upstream: FakeOpenAIServer
) -> Iterator[Callable[..., str]]:
    """Start an in-process server with custom ``[server]`` settings; returns its root URL."""
    with contextlib.ExitStack() as stack:

        def start(**settings: Any) -> str:
            app = create_app(load_config(presets_config(_fake_switch[1], server=settings)))
            served = stack.enter_context(serve(app, lifespan="on"))
            return served.root_url

        yield start


def test_events_and_chat_completions_share_the_concurrency_limit(
    local_server: Callable[..., str], upstream: FakeOpenAIServer
) -> None:
    root = local_server(max_concurrent_requests=1)
    body = {"model": "fusion/stuck", "messages": QUESTION}
    with httpx.stream("POST", root + "/v1/fusion/events", json=body, timeout=60) as held:
        lines = held.iter_lines()
        assert next(lines) == "event: fusion.started"
        assert wait_until(lambda: upstream.active == 1)
        for path in ("/v1/fusion/events", "/v1/chat/completions"):
            refused = httpx.post(root + path, json=body, timeout=30)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"


def test_events_share_the_body_size_cap(local_server: Callable[..., str]) -> None:
    root = local_server(max_body_bytes=1024)
    big = [{"role": "user", "content": "x" * 2000}]
    response = httpx.post(
        root + "/v1/fusion/events", json={"model": "fusion/panel", "messages": big}, timeout=30
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_events_are_refused_when_candidates_may_not_be_returned(
    local_server: Callable[..., str],
) -> None:
    root = local_server(allow_return_candidates=False)
    response = httpx.post(
        root + "/v1/fusion/events", json={"model": "fusion/panel", "messages": QUESTION}, timeout=30
    )
    assert response.status_code == 403
    assert "allow_return_candidates" in response.json()["error"]["message"]


def test_long_silences_get_heartbeats_and_leaving_still_cancels(
    local_server: Callable[..., str], upstream: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "HEARTBEAT_S", 0.2)
    root = local_server()
    body = {"model": "fusion/stuck", "messages": QUESTION}
    with httpx.stream("POST", root + "/v1/fusion/events", json=body, timeout=60) as response:
        lines = response.iter_lines()
        heartbeats = 0
        for line in lines:
            if line == ": keep-alive":
                heartbeats += 1
                if heartbeats == 3:
                    break  # leave while the candidate is still being waited for
    assert wait_until(lambda: upstream.active == 0 and upstream.disconnects == 1, timeout=30)


def test_a_client_that_leaves_cancels_the_upstream_calls(
    server: Served, upstream: FakeOpenAIServer
) -> None:
    body = {"model": "fusion/stuck", "messages": QUESTION}
    with httpx.stream(
        "POST", server.events_url, json=body, headers=server.auth(), timeout=60
    ) as response:
        lines = response.iter_lines()
        assert next(lines) == "event: fusion.started"
        assert wait_until(lambda: upstream.active == 1)
    assert wait_until(lambda: upstream.active == 0 and upstream.disconnects == 1, timeout=30)

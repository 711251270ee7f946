"""Tests of polyfuse.testing: the fake OpenAI-compatible server, served by uvicorn."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from polyfuse.testing import (
    FakeOpenAIServer,
    FakeReply,
    Fault,
    LatencyModel,
    ServedApp,
    default_responder,
    schema_instance,
    serve,
)

USER = [{"role": "user", "content": "What is the capital of France? Answer briefly please."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
                "note": {"type": "string"},
            },
            "required": ["city", "days", "metric"],
        },
    },
}


@pytest.fixture(scope="module")
def served() -> Iterator[ServedApp]:
    with serve(FakeOpenAIServer()) as s:
        yield s


@pytest.fixture()
def app(served: ServedApp) -> Iterator[FakeOpenAIServer]:
    fake: FakeOpenAIServer = served.app
    fake.reset()
    yield fake
    fake.reset()
    fake.n_mode = "honour"
    fake.usage = True
    fake.stream_chunk_size = 1
    fake.responder = None
    fake.latency = None


@pytest.fixture()
def client(served: ServedApp, app: FakeOpenAIServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base_url, timeout=5.0) as c:
        yield c


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    body.setdefault("model", "fake-model")
    body.setdefault("messages", USER)
    return client.post("/chat/completions", json=body)


def sse_events(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    events = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data:"):
                events.append(line[5:].strip())
    return events


def stream_chunks(client: httpx.Client, **body: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Parsed JSON chunks and raw events of a streamed chat request."""
    response = chat(client, stream=True, **body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    return chunks, events


def joined_content(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        c["delta"].get("content") or ""
        for chunk in chunks
        for c in chunk["choices"]
        if c["index"] == index
    )


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    return error


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --- routes ---------------------------------------------------------------------------------


def test_health_models_and_404(client: httpx.Client, served: ServedApp) -> None:
    assert served.base_url == f"http://127.0.0.1:{served.port}/v1"
    assert served.port > 0
    health = httpx.get(f"{served.root_url}/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    models = client.get("/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["fake-model"]
    assert_openai_error(client.get("/nope"), 404)
    assert_openai_error(client.post("/embeddings", json={}), 404)
    assert_openai_error(client.get("/chat/completions"), 405)


def test_unversioned_chat_path(served: ServedApp, app: FakeOpenAIServer) -> None:
    response = httpx.post(f"{served.root_url}/chat/completions", json={"messages": USER})
    assert response.status_code == 200
    assert response.json()["model"] == "fake-model"


def test_bad_requests(client: httpx.Client, app: FakeOpenAIServer) -> None:
    bad = client.post(
        "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_openai_error(bad, 400)
    assert_openai_error(client.post("/chat/completions", json=[1, 2]), 400)
    assert_openai_error(client.post("/chat/completions", json={"model": "m"}), 400)
    assert_openai_error(chat(client, messages=[]), 400)
    assert_openai_error(chat(client, n=0), 400)
    assert_openai_error(chat(client, n="two"), 400)
    assert app.active == 0
    assert app.completed == 6
    # The server still answers after bad input.
    assert chat(client).status_code == 200


# --- shapes ---------------------------------------------------------------------------------


def test_non_stream_shape(client: httpx.Client, app: FakeOpenAIServer) -> None:
    data = chat(client, model="some-model").json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert isinstance(data["created"], int)
    assert data["model"] == "some-model"
    [choice] = data["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert content == "Answer 0: What is the capital of France? Answer briefly please."
    usage = data["usage"]
    assert usage["prompt_tokens"] == 9
    assert usage["completion_tokens"] == len(content.split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert app.requests[-1]["model"] == "some-model"
    assert app.request_headers[-1]["content-type"] == "application/json"
    assert app.completed == 1 and app.active == 0


def test_stream_shape(client: httpx.Client) -> None:
    expected = chat(client).json()["choices"][0]["message"]["content"]
    chunks, events = stream_chunks(client)
    assert events[-1] == "[DONE]"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert joined_content(chunks) == expected
    # One word per chunk by default; no usage chunk without include_usage.
    assert len(chunks) == 2 + len(expected.split())
    assert all("usage" not in c for c in chunks)


def test_stream_chunk_size(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.stream_chunk_size = 4
    chunks, _ = stream_chunks(client)
    content = joined_content(chunks)
    assert len(chunks) == 2 + -(-len(content.split()) // 4)


def test_include_usage_final_chunk(client: httpx.Client) -> None:
    chunks, events = stream_chunks(client, n=2, stream_options={"include_usage": True})
    assert events[-1] == "[DONE]"
    last = chunks[-1]
    assert last["choices"] == []
    usage = last["usage"]
    words = len(joined_content(chunks, 0).split()) + len(joined_content(chunks, 1).split())
    assert usage["completion_tokens"] == words
    assert usage["total_tokens"] == usage["prompt_tokens"] + words
    assert all("usage" not in c for c in chunks[:-1])


def test_usage_off(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.usage = False
    assert "usage" not in chat(client).json()
    chunks, _ = stream_chunks(client, stream_options={"include_usage": True})
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_seed_changes_content(client: httpx.Client) -> None:
    a = chat(client, seed=1).json()["choices"][0]["message"]["content"]
    b = chat(client, seed=2).json()["choices"][0]["message"]["content"]
    again = chat(client, seed=1).json()["choices"][0]["message"]["content"]
    assert a != b and a == again


def test_max_tokens_truncates(client: httpx.Client) -> None:
    choice = chat(client, max_tokens=3).json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == "Answer 0: What"


WEIRD_BODIES: list[Any] = [
    {"messages": [1, None, "x"]},
    {"messages": [{"role": "user", "content": 5}], "seed": {"a": 1}, "max_tokens": "many"},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, 3]}]},
    {"messages": USER, "tools": [1, {"function": "x"}, {"function": {"parameters": "p"}}]},
    {"messages": USER, "tools": "nope", "tool_choice": {"function": 1}},
    {"messages": USER, "response_format": {"type": "json_schema", "json_schema": "x"}},
    {"messages": USER, "response_format": "text", "stream_options": "yes", "stream": True},
    {"messages": USER, "stream": "yes", "n": None, "model": 7},
    {"messages": USER, "n": True},
    {"messages": [{"role": "tool"}], "max_completion_tokens": 0},
]


@pytest.mark.parametrize("body", WEIRD_BODIES)
def test_weird_bodies_never_crash(client: httpx.Client, app: FakeOpenAIServer, body: Any) -> None:
    response = client.post("/chat/completions", json=body)
    assert response.status_code in (200, 400)
    assert app.active == 0
    assert chat(client).status_code == 200


# --- n ----------------------------------------------------------------------------------------


def test_n_honour(client: httpx.Client) -> None:
    data = chat(client, n=3).json()
    contents = [c["message"]["content"] for c in data["choices"]]
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert len(set(contents)) == 3
    assert data["usage"]["completion_tokens"] == sum(len(c.split()) for c in contents)
    chunks, _ = stream_chunks(client, n=3)
    assert [joined_content(chunks, i) for i in range(3)] == contents
    finishes = [c for chunk in chunks for c in chunk["choices"] if c["finish_reason"]]
    assert sorted(c["index"] for c in finishes) == [0, 1, 2]


def test_n_ignore(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.n_mode = "ignore"
    assert len(chat(client, n=4).json()["choices"]) == 1
    chunks, _ = stream_chunks(client, n=4)
    assert {c["index"] for chunk in chunks for c in chunk["choices"]} == {0}


def test_n_reject(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.n_mode = "reject"
    error = assert_openai_error(chat(client, n=2), 400)
    assert error["message"] == "Only one completion choice is allowed"
    assert chat(client, n=1).status_code == 200
    assert chat(client).status_code == 200


# --- default responder: tools and structured output -------------------------------------------


def test_default_tool_call(client: httpx.Client) -> None:
    data = chat(client, tools=[WEATHER_TOOL]).json()
    [choice] = data["choices"]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "get_weather"
    args = json.loads(call["function"]["arguments"])
    assert args == {"city": "a", "days": 3, "metric": True}

    chunks, _ = stream_chunks(client, tools=[WEATHER_TOOL])
    deltas = [
        tc
        for chunk in chunks
        for c in chunk["choices"]
        for tc in c["delta"].get("tool_calls") or []
    ]
    assert deltas[0]["id"] == call["id"]
    assert deltas[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert all(d["index"] == 0 for d in deltas)
    assert len(deltas) in (2, 3)
    arguments = "".join(d["function"].get("arguments", "") for d in deltas)
    assert json.loads(arguments) == args
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_choice_none_and_tool_result(client: httpx.Client) -> None:
    text = chat(client, tools=[WEATHER_TOOL], tool_choice="none").json()
    assert text["choices"][0]["message"]["content"].startswith("Answer 0:")
    messages = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "call_0_0", "content": "sunny, 21C"},
    ]
    data = chat(client, tools=[WEATHER_TOOL], messages=messages).json()
    assert data["choices"][0]["message"]["content"] == "The tool said: sunny, 21C"
    assert data["choices"][0]["finish_reason"] == "stop"


def test_named_tool_choice(client: httpx.Client) -> None:
    other = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    choice = {"type": "function", "function": {"name": "lookup"}}
    data = chat(client, tools=[WEATHER_TOOL, other], tool_choice=choice).json()
    call = data["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "lookup", "arguments": "{}"}


def test_json_schema_response_format(client: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "score": {"type": "number", "minimum": 5},
            "tags": {"type": "array", "items": {"type": "string"}},
            "level": {"enum": ["low", "high"]},
            "owner": {"$ref": "#/$defs/Person"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
        },
        "required": ["name", "score"],
        "$defs": {
            "Person": {
                "type": "object",
                "properties": {"age": {"type": "integer"}, "ok": {"type": "boolean"}},
            }
        },
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    content = chat(client, response_format=response_format).json()["choices"][0]["message"]
    assert json.loads(content["content"]) == {
        "name": "a",
        "score": 5.0,
        "tags": [],
        "level": "low",
        "owner": {"age": 3, "ok": True},
        "maybe": 3,
    }
    chunks, _ = stream_chunks(client, response_format=response_format)
    assert json.loads(joined_content(chunks)) == json.loads(content["content"])

    obj = chat(client, response_format={"type": "json_object"}).json()
    assert json.loads(obj["choices"][0]["message"]["content"])["answer"].startswith("Answer 0:")


def test_schema_instance_unit() -> None:
    assert schema_instance({"type": "integer", "exclusiveMinimum": 10}) == 11
    assert schema_instance({"type": ["string", "null"], "format": "date"}) == "2024-01-01"
    assert schema_instance({"type": "array", "minItems": 2, "items": {"const": 7}}) == [7, 7]
    partial = {"properties": {"a": {"type": "integer"}, "b": {}}, "required": ["a", "c"]}
    assert schema_instance(partial, all_properties=False) == {"a": 3, "c": "a"}
    recursive = {"$ref": "#"}
    assert schema_instance(recursive) is None


def test_default_responder_direct() -> None:
    reply = default_responder({"messages": USER, "seed": 9}, 2)
    assert reply.content is not None and reply.content.startswith("Answer 2 (seed 9): What")
    assert len(reply.content.split(": ", 1)[1].split()) == 9


# --- custom responders ----------------------------------------------------------------------


def test_custom_responders(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.responder = lambda body, i: f"custom {i}"
    data = chat(client, n=2).json()
    assert [c["message"]["content"] for c in data["choices"]] == ["custom 0", "custom 1"]

    def tool_reply(body: dict[str, Any], i: int) -> FakeReply:
        call = {"function": {"name": "f", "arguments": {"x": 1}}}
        return FakeReply(tool_calls=[call], prompt_tokens=42, completion_tokens=7)

    app.responder = tool_reply
    data = chat(client).json()
    call = data["choices"][0]["message"]["tool_calls"][0]
    assert call["id"] and call["type"] == "function"
    assert json.loads(call["function"]["arguments"]) == {"x": 1}
    assert data["usage"] == {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}

    async def async_reply(body: dict[str, Any], i: int) -> FakeReply:
        await asyncio.sleep(0)
        return FakeReply(content="async", finish_reason="length")

    app.responder = async_reply
    choice = chat(client).json()["choices"][0]
    assert choice["message"]["content"] == "async" and choice["finish_reason"] == "length"

    def broken(body: dict[str, Any], i: int) -> str:
        raise RuntimeError("boom")

    app.responder = broken
    assert "boom" in assert_openai_error(chat(client), 500)["message"]


# --- faults ---------------------------------------------------------------------------------


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault("nonsense")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fault("status", times=0)


def test_fault_status(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.inject(Fault("status", status=429, headers={"Retry-After": "1"}, times=2))
    for _ in range(2):
        response = chat(client)
        error = assert_openai_error(response, 429)
        assert error["type"] == "rate_limit_error"
        assert response.headers["retry-after"] == "1"
    assert chat(client).status_code == 200
    assert not app.faults

    app.inject(Fault("status", status=422, body={"detail": "bad"}))
    response = chat(client)
    assert response.status_code == 422 and response.json() == {"detail": "bad"}
    app.inject(Fault("status", status=502, body="<html>bad gateway</html>"))
    response = chat(client)
    assert response.status_code == 502 and "bad gateway" in response.text


def test_fault_match_model(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.inject(Fault("status", status=503, match_model="b"))
    assert chat(client, model="a").status_code == 200
    assert chat(client, model="b").status_code == 503
    assert chat(client, model="b").status_code == 200


def test_fault_slow_first_byte(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.inject(Fault("slow_first_byte", delay_s=0.2))
    start = time.monotonic()
    assert chat(client).status_code == 200
    assert time.monotonic() - start >= 0.15
    app.inject(Fault("slow_first_byte", delay_s=30))
    with httpx.Client(base_url=client.base_url, timeout=0.2) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            chat(impatient)
    assert wait_for(lambda: app.disconnects == 1)
    assert app.active == 0


def test_fault_hang_mid_stream(served: ServedApp, app: FakeOpenAIServer) -> None:
    # A finite stall: the stream completes after it.
    app.inject(Fault("hang_mid_stream", delay_s=0.2))
    with httpx.Client(base_url=served.base_url, timeout=5.0) as c:
        start = time.monotonic()
        chunks, events = stream_chunks(c)
        assert time.monotonic() - start >= 0.15
        assert events[-1] == "[DONE]" and joined_content(chunks).startswith("Answer 0:")
        # Non-streaming: a partial body, a stall, then the rest.
        app.inject(Fault("hang_mid_stream", delay_s=0.2))
        assert chat(c).json()["choices"][0]["finish_reason"] == "stop"

    # A hang forever: the client sees the first chunks, then a read timeout.
    app.inject(Fault("hang_mid_stream"))
    timeout = httpx.Timeout(5.0, read=0.3)
    seen: list[str] = []
    with httpx.Client(base_url=served.base_url, timeout=timeout) as c:
        body = {"model": "m", "messages": USER, "stream": True}
        with pytest.raises(httpx.ReadTimeout):
            with c.stream("POST", "/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        seen.append(line)
    assert len(seen) == 2  # the role chunk and one content chunk
    assert wait_for(lambda: app.disconnects == 1)
    assert app.active == 0


def test_fault_malformed_json(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.inject(Fault("malformed_json"))
    response = chat(client)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_fault_malformed_sse(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.inject(Fault("malformed_sse"))
    response = chat(client, stream=True)
    events = sse_events(response.text)
    assert "{not json" in events
    with pytest.raises(json.JSONDecodeError):
        for event in events:
            if event != "[DONE]":
                json.loads(event)


@pytest.mark.parametrize("stream", [False, True])
def test_fault_drop_connection(client: httpx.Client, app: FakeOpenAIServer, stream: bool) -> None:
    app.inject(Fault("drop_connection"))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        chat(client, stream=stream)
    assert chat(client, stream=stream).status_code == 200
    assert app.active == 0


def test_fault_empty_content(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.inject(Fault("empty_content", times=2))
    data = chat(client).json()
    assert data["choices"][0]["message"]["content"] == ""
    assert data["usage"]["completion_tokens"] >= 0 and data["usage"]["prompt_tokens"] > 0
    chunks, events = stream_chunks(client)
    assert joined_content(chunks) == "" and events[-1] == "[DONE]"


def test_fault_wrong_choices(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.inject(Fault("wrong_choices", choices=0), Fault("wrong_choices", choices=2))
    assert chat(client, n=3).json()["choices"] == []
    assert len(chat(client, n=1).json()["choices"]) == 2
    app.inject(Fault("wrong_choices", choices=2))
    chunks, _ = stream_chunks(client)
    assert {c["index"] for chunk in chunks for c in chunk["choices"]} == {0, 1}


def test_fault_error_mid_stream(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.inject(Fault("error_mid_stream"))
    response = chat(client, stream=True)
    events = [json.loads(e) for e in sse_events(response.text) if e != "[DONE]"]
    assert "[DONE]" not in sse_events(response.text)
    assert events[1]["choices"][0]["delta"]["content"]
    assert events[-1]["error"]["type"] == "server_error"
    app.inject(Fault("error_mid_stream"))
    assert "error" in chat(client).json()


def test_faults_apply_in_order_and_reset(client: httpx.Client, app: FakeOpenAIServer) -> None:
    app.inject(Fault("status", status=500), Fault("status", status=503))
    assert chat(client).status_code == 500
    app.reset()
    assert chat(client).status_code == 200
    assert len(app.requests) == 1 and len(app.request_headers) == 1


# --- auth -------------------------------------------------------------------------------------


def test_api_key() -> None:
    with serve(FakeOpenAIServer(api_key="sk-test")) as s:
        url = f"{s.base_url}/chat/completions"
        body = {"model": "m", "messages": USER}
        error = assert_openai_error(httpx.post(url, json=body), 401)
        assert error["code"] == "invalid_api_key"
        wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"})
        assert_openai_error(wrong, 401)
        ok = httpx.post(url, json=body, headers={"Authorization": "Bearer sk-test"})
        assert ok.status_code == 200
        assert s.app.request_headers[-1]["authorization"] == "Bearer sk-test"


# --- latency, capacity and disconnects --------------------------------------------------------


def test_capacity_queues_requests() -> None:
    app = FakeOpenAIServer(latency=LatencyModel(ttft_s=0.1, capacity=1))
    with serve(app) as s, httpx.Client(base_url=s.base_url, timeout=5.0) as c:
        start = time.monotonic()
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda i: chat(c, stream=bool(i % 2)), range(3)))
        elapsed = time.monotonic() - start
        assert [r.status_code for r in results] == [200, 200, 200]
        assert elapsed >= 0.25  # one at a time: at least three time-to-first-tokens
        assert app.completed == 3 and app.active == 0


def test_paced_stream_and_output_tokens() -> None:
    latency = LatencyModel(tokens_per_s=400.0, output_tokens=20, jitter=0.1)
    app = FakeOpenAIServer(latency=latency, seed=3)
    with serve(app) as s, httpx.Client(base_url=s.base_url, timeout=5.0) as c:
        start = time.monotonic()
        chunks, _ = stream_chunks(c, stream_options={"include_usage": True})
        assert time.monotonic() - start >= 0.03
        content = joined_content(chunks)
        assert len(content.split()) == 20 and content.endswith("tok")
        assert chunks[-1]["usage"]["completion_tokens"] == 20
        assert (
            len([c for c in chunks if c["choices"] and "content" in c["choices"][0]["delta"]]) == 21
        )
        data = chat(c, max_tokens=5).json()
        assert data["choices"][0]["finish_reason"] == "length"
        assert data["usage"]["completion_tokens"] == 5


def test_straggler_is_slower() -> None:
    latency = LatencyModel(ttft_s=0.02, straggler_every=2, straggler_factor=10.0)
    with serve(FakeOpenAIServer(latency=latency)) as s, httpx.Client(base_url=s.base_url) as c:
        times = []
        for _ in range(2):
            start = time.monotonic()
            assert chat(c).status_code == 200
            times.append(time.monotonic() - start)
        assert times[1] >= 0.15 and times[1] > times[0]


def test_disconnect_is_counted() -> None:
    app = FakeOpenAIServer(latency=LatencyModel(tokens_per_s=20.0, output_tokens=100))
    with serve(app) as s, httpx.Client(base_url=s.base_url, timeout=5.0) as c:
        body = {"model": "m", "messages": USER, "stream": True}
        with c.stream("POST", "/chat/completions", json=body) as response:
            chunks = response.iter_bytes()  # keep a reference: a dropped iterator closes
            next(chunks)
            assert app.active == 1
        assert wait_for(lambda: app.disconnects == 1)
        assert wait_for(lambda: app.active == 0)
        assert app.completed == 0


def test_disconnect_while_queued() -> None:
    app = FakeOpenAIServer(latency=LatencyModel(ttft_s=0.3, capacity=1))
    with serve(app) as s, httpx.Client(base_url=s.base_url, timeout=5.0) as c:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(chat, c)
            assert wait_for(lambda: app.active == 1)
            with httpx.Client(base_url=s.base_url, timeout=0.1) as impatient:
                with pytest.raises(httpx.ReadTimeout):
                    chat(impatient)
            assert first.result().status_code == 200
        assert wait_for(lambda: app.disconnects == 1)
        # The queued request gave its slot back: a new one is served.
        assert chat(c).status_code == 200
        assert app.active == 0


def test_exit_does_not_wait_for_hung_requests() -> None:
    app = FakeOpenAIServer()
    app.inject(Fault("hang_mid_stream"))
    errors: list[BaseException] = []

    def hang(url: str) -> None:
        try:
            body = {"messages": USER, "stream": True}
            httpx.post(f"{url}/chat/completions", json=body, timeout=10)
        except httpx.HTTPError as exc:
            errors.append(exc)

    with serve(app) as s:
        thread = threading.Thread(target=hang, args=(s.base_url,), daemon=True)
        thread.start()
        assert wait_for(lambda: app.active == 1)
        start = time.monotonic()
    assert time.monotonic() - start < 3.0
    thread.join(5)
    assert errors and app.active == 0


def test_lifespan_and_direct_asgi() -> None:
    async def main() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: Any) -> None:
            sent.append(message)

        await FakeOpenAIServer()({"type": "lifespan"}, receive, send)
        return sent

    types = [m["type"] for m in asyncio.run(main())]
    assert types == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_port_in_use_raises() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError):
            with serve(FakeOpenAIServer(), port=taken.getsockname()[1], log_level="critical"):
                pass


def test_import_does_not_need_uvicorn() -> None:
    code = "import sys, polyfuse.testing; assert 'uvicorn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

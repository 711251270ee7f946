"""OpenAIEndpoint against a real (fake) server: wire format, streaming, faults, retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from polyfuse import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ChatRequest,
    NotFoundError,
    OpenAIEndpoint,
    ProtocolError,
    RateLimitError,
    ServerError,
)
from polyfuse.backends import StreamAccumulator
from polyfuse.testing import FakeOpenAIServer, FakeReply, Fault

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


async def collect(endpoint: OpenAIEndpoint, request: ChatRequest) -> StreamAccumulator:
    acc = StreamAccumulator()
    async for delta in endpoint.stream(request):
        acc.add(delta)
    return acc


async def test_complete_sends_params_and_parses(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint
) -> None:
    request = ChatRequest.build(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
        temperature=0.3,
        top_p=0.9,
        max_tokens=20,
        stop=["\n\n"],
        seed=7,
        response_format={"type": "json_object"},
        extra_body={"top_k": 5},
    )
    [completion] = await endpoint.complete(request)
    body = fake.requests[-1]
    assert body["model"] == "fake-model"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    for key, value in {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 20,
        "stop": ["\n\n"],
        "seed": 7,
        "response_format": {"type": "json_object"},
        "top_k": 5,
    }.items():
        assert body[key] == value
    assert "n" not in body and "stream" not in body
    assert json.loads(completion.content or "")  # the fake answers json_object with JSON
    assert completion.finish_reason == "stop"
    assert completion.usage.calls == 1 and completion.usage.complete
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


async def test_api_key_sent_as_bearer(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake = make_fake(api_key="sk-test-123")
    good = endpoint_factory(api_key="sk-test-123")
    [completion] = await good.complete(ChatRequest.build("hi"))
    assert completion.content
    assert fake.request_headers[-1]["authorization"] == "Bearer sk-test-123"
    bad = endpoint_factory(api_key="sk-wrong-456", name="hosted")
    with pytest.raises(AuthenticationError) as info:
        await bad.complete(ChatRequest.build("hi"))
    assert info.value.status_code == 401 and info.value.endpoint == "hosted"
    assert "sk-wrong-456" not in str(info.value)


async def test_tools_and_tool_turns_round_trip(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint
) -> None:
    request = ChatRequest.build("Weather in Paris?", tools=[WEATHER_TOOL], tool_choice="auto")
    [completion] = await endpoint.complete(request)
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls and completion.tool_calls[0].function.name == "get_weather"
    assert completion.tool_calls[0].parsed_arguments() == {"city": "a"}
    assert fake.requests[-1]["tools"] == [WEATHER_TOOL]
    assert fake.requests[-1]["tool_choice"] == "auto"

    call = completion.tool_calls[0]
    follow_up = ChatRequest.build(
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ],
        tools=[WEATHER_TOOL],
    )
    [answer] = await endpoint.complete(follow_up)
    assert answer.content == "The tool said: sunny, 21C"
    sent = fake.requests[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}


async def test_stream_text_and_usage(fake: FakeOpenAIServer, endpoint: OpenAIEndpoint) -> None:
    acc = await collect(endpoint, ChatRequest.build("tell me something"))
    body = fake.requests[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    [expected] = await endpoint.complete(ChatRequest.build("tell me something"))
    assert acc.text == expected.content
    assert acc.usage is not None and acc.usage == expected.usage
    assert acc.finish_reason == "stop"


async def test_stream_tool_call_deltas(endpoint: OpenAIEndpoint) -> None:
    acc = await collect(endpoint, ChatRequest.build("Weather?", tools=[WEATHER_TOOL]))
    calls = acc.tool_calls()
    assert calls and calls[0].function.name == "get_weather"
    assert calls[0].parsed_arguments() == {"city": "a"} and calls[0].id


async def test_no_usage_is_reported_not_invented(
    make_fake: Callable[..., FakeOpenAIServer], endpoint: OpenAIEndpoint
) -> None:
    make_fake(usage=False)
    [completion] = await endpoint.complete(ChatRequest.build("hi"))
    assert completion.usage.calls_without_usage == 1 and completion.usage.total_tokens == 0
    acc = await collect(endpoint, ChatRequest.build("hi"))
    assert acc.usage is None
    assert acc.completion(0.1).usage.calls_without_usage == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (422, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
    ],
)
async def test_client_errors_are_not_retried(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint, status: int, error: type[Exception]
) -> None:
    fake.inject(
        Fault("status", status=status, body={"error": {"message": "nope: fix it"}}, times=5)
    )
    with pytest.raises(error, match="nope: fix it"):
        await endpoint.complete(ChatRequest.build("hi"))
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"object": "error", "message": "flat shape", "type": "BadRequestError"}, "flat shape"),
        ({"error": "tgi shape", "error_type": "validation"}, "tgi shape"),
        ({"detail": [{"msg": "field required", "loc": ["body", "messages"]}]}, "field required"),
        ("plain text failure", "plain text failure"),
    ],
)
async def test_error_body_shapes(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint, body: object, message: str
) -> None:
    fake.inject(Fault("status", status=400, body=body))
    with pytest.raises(BadRequestError, match=message):
        await endpoint.complete(ChatRequest.build("hi"))


async def test_server_errors_are_retried_then_succeed(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint
) -> None:
    fake.inject(Fault("status", status=500, times=1), Fault("status", status=503, times=1))
    [completion] = await endpoint.complete(ChatRequest.build("hi"))
    assert completion.content and len(fake.requests) == 3


async def test_retries_exhausted(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake.inject(Fault("status", status=502, times=10))
    endpoint = endpoint_factory(max_retries=1)
    with pytest.raises(ServerError) as info:
        await endpoint.complete(ChatRequest.build("hi"))
    assert info.value.status_code == 502 and len(fake.requests) == 2


async def test_retry_after_seconds_is_honoured(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint
) -> None:
    fake.inject(Fault("status", status=429, headers={"Retry-After": "0.05"}))
    [completion] = await endpoint.complete(ChatRequest.build("hi"))
    assert completion.content and len(fake.requests) == 2


async def test_retry_after_http_date(fake: FakeOpenAIServer, endpoint: OpenAIEndpoint) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=1)
    fake.inject(
        Fault("status", status=429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    )
    [completion] = await endpoint.complete(ChatRequest.build("hi"))
    assert completion.content and len(fake.requests) == 2


async def test_retry_after_too_long_is_raised(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake.inject(Fault("status", status=429, headers={"Retry-After": "3600"}))
    endpoint = endpoint_factory(max_retry_after=5)
    with pytest.raises(RateLimitError) as info:
        await endpoint.complete(ChatRequest.build("hi"))
    assert info.value.retry_after == pytest.approx(3600)
    assert len(fake.requests) == 1


async def test_read_timeout(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake.inject(Fault("slow_first_byte", delay_s=5.0, times=5))
    endpoint = endpoint_factory(read_timeout=0.2, max_retries=0)
    with pytest.raises(APITimeoutError):
        await endpoint.complete(ChatRequest.build("hi"))


async def test_total_timeout_on_hang(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake.inject(Fault("hang_mid_stream", times=5))
    endpoint = endpoint_factory(total_timeout=0.3, max_retries=0)
    with pytest.raises(APITimeoutError, match="total_timeout"):
        await endpoint.complete(ChatRequest.build("hi"))


async def test_stream_hang_hits_read_timeout(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake.inject(Fault("hang_mid_stream", times=5))
    endpoint = endpoint_factory(read_timeout=0.3, max_retries=0)
    with pytest.raises(APITimeoutError):
        await collect(endpoint, ChatRequest.build("hi"))


async def test_connection_refused(endpoint_factory: Callable[..., OpenAIEndpoint]) -> None:
    endpoint = endpoint_factory(base_url="http://127.0.0.1:9/v1", max_retries=1)
    with pytest.raises(APIConnectionError):
        await endpoint.complete(ChatRequest.build("hi"))


async def test_dropped_connection_is_retried(
    fake: FakeOpenAIServer, endpoint: OpenAIEndpoint
) -> None:
    fake.inject(Fault("drop_connection"))
    [completion] = await endpoint.complete(ChatRequest.build("hi"))
    assert completion.content and len(fake.requests) == 2


async def test_dropped_connection_exhausted(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake.inject(Fault("drop_connection", times=5))
    with pytest.raises(APIConnectionError):
        await endpoint_factory(max_retries=0).complete(ChatRequest.build("hi"))


async def test_malformed_json(fake: FakeOpenAIServer, endpoint: OpenAIEndpoint) -> None:
    fake.inject(Fault("malformed_json"))
    with pytest.raises(ProtocolError, match="not valid JSON"):
        await endpoint.complete(ChatRequest.build("hi"))


async def test_malformed_sse(fake: FakeOpenAIServer, endpoint: OpenAIEndpoint) -> None:
    fake.inject(Fault("malformed_sse"))
    with pytest.raises(ProtocolError, match="malformed SSE"):
        await collect(endpoint, ChatRequest.build("hi"))


async def test_error_mid_stream(
    fake: FakeOpenAIServer, endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    fake.inject(Fault("error_mid_stream"))
    with pytest.raises(ServerError, match="mid-stream"):
        await collect(endpoint_factory(max_retries=0), ChatRequest.build("hi"))


async def test_error_in_200_body(fake: FakeOpenAIServer, endpoint: OpenAIEndpoint) -> None:
    fake.inject(Fault("error_mid_stream"))
    with pytest.raises(ProtocolError, match="answered 200 with an error"):
        await endpoint.complete(ChatRequest.build("hi"))


async def test_zero_choices(fake: FakeOpenAIServer, endpoint: OpenAIEndpoint) -> None:
    fake.inject(Fault("wrong_choices", choices=0))
    with pytest.raises(ProtocolError, match="no choices"):
        await endpoint.complete(ChatRequest.build("hi"))


async def test_extra_choices_are_cut(fake: FakeOpenAIServer, endpoint: OpenAIEndpoint) -> None:
    fake.inject(Fault("wrong_choices", choices=3))
    completions = await endpoint.complete(ChatRequest.build("hi"), n=2)
    assert len(completions) == 2


async def test_empty_content_is_an_answer(fake: FakeOpenAIServer, endpoint: OpenAIEndpoint) -> None:
    fake.inject(Fault("empty_content"))
    [completion] = await endpoint.complete(ChatRequest.build("hi"))
    assert completion.content == ""


async def test_n_choices_share_one_usage(fake: FakeOpenAIServer, endpoint: OpenAIEndpoint) -> None:
    completions = await endpoint.complete(ChatRequest.build("hi"), n=3)
    assert [c.content for c in completions] == [
        c.content for c in sorted(completions, key=lambda c: c.content or "")
    ]
    assert fake.requests[-1]["n"] == 3
    assert completions[0].usage.calls == 1
    assert all(c.usage.calls == 0 and c.usage.total_tokens == 0 for c in completions[1:])


async def test_concurrency_is_bounded(
    make_fake: Callable[..., FakeOpenAIServer], endpoint_factory: Callable[..., OpenAIEndpoint]
) -> None:
    peak: list[int] = []
    fake: FakeOpenAIServer

    async def responder(body: dict[str, object], index: int) -> FakeReply:
        peak.append(fake.active)
        await asyncio.sleep(0.02)
        return FakeReply(content="ok")

    fake = make_fake(responder=responder)
    endpoint = endpoint_factory(max_concurrency=2)
    await asyncio.gather(*(endpoint.complete(ChatRequest.build(f"q{i}")) for i in range(8)))
    assert len(peak) == 8 and max(peak) <= 2


async def test_closing_a_stream_closes_the_upstream_request(
    make_fake: Callable[..., FakeOpenAIServer], endpoint: OpenAIEndpoint
) -> None:
    async def long_answer(body: dict[str, object], index: int) -> str:
        return " ".join(["word"] * 2000)

    from polyfuse.testing import LatencyModel

    fake = make_fake(responder=long_answer, latency=LatencyModel(tokens_per_s=200))
    iterator = endpoint.stream(ChatRequest.build("write a lot"))
    async for _ in iterator:
        break
    await iterator.aclose()  # type: ignore[attr-defined]
    for _ in range(200):
        if fake.disconnects == 1 and fake.active == 0:
            break
        await asyncio.sleep(0.01)
    assert fake.disconnects == 1 and fake.active == 0


async def test_one_client_per_event_loop(endpoint: OpenAIEndpoint) -> None:
    """A client belongs to the loop it was made in; other loops get their own."""
    await endpoint.complete(ChatRequest.build("hi"))

    def in_other_loop() -> str | None:
        async def go() -> str | None:
            try:
                return (await endpoint.complete(ChatRequest.build("hi")))[0].content
            finally:
                await endpoint.aclose()

        return asyncio.run(go())

    assert await asyncio.to_thread(in_other_loop)
    assert (await endpoint.complete(ChatRequest.build("again")))[0].content

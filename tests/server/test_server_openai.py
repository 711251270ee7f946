"""The official openai client against a running polyfuse server (fake upstream)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from pydantic import BaseModel
from server_helpers import RunningServer

from polyfuse.testing import FakeOpenAIServer, FakeReply, LatencyModel

QUESTION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Why is the sky blue?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def chat_bodies(fake: FakeOpenAIServer, model: str) -> list[dict[str, Any]]:
    return [body for body in fake.requests if body.get("model") == model]


def test_non_streaming_answer_is_fused_with_honest_usage(
    server: RunningServer, fake: FakeOpenAIServer
) -> None:
    response = client(server).chat.completions.create(
        model="fusion/fast",
        messages=QUESTION,  # type: ignore[arg-type]
        extra_body={"polyfuse": {"return_candidates": True}},
    )
    assert response.object == "chat.completion"
    assert response.model == "fusion/fast"
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content
    # The answer is the fusor's: the candidates (3, one batched n=3 call) went to fake-model.
    assert len(chat_bodies(fake, "fake-model")) == 1
    assert chat_bodies(fake, "fake-model")[0]["n"] == 3
    assert len(chat_bodies(fake, "fusor-model")) == 1
    ext = response.model_extra["polyfuse"]  # type: ignore[index]
    assert ext["method"] == "fuse"
    assert [c["status"] for c in ext["candidates"]] == ["ok", "ok", "ok"]
    by_role = ext["usage"]
    assert response.usage is not None
    assert response.usage.prompt_tokens == by_role["total"]["prompt_tokens"]
    assert response.usage.completion_tokens == by_role["total"]["completion_tokens"]
    assert response.usage.total_tokens == by_role["total"]["total_tokens"]
    # The usage includes the fusor's call, not only the candidates'.
    assert by_role["aggregator"]["total_tokens"] > 0
    assert response.usage.total_tokens == (
        by_role["candidates"]["total_tokens"] + by_role["aggregator"]["total_tokens"]
    )


def test_candidates_are_left_out_unless_asked(
    server: RunningServer, fake: FakeOpenAIServer
) -> None:
    response = client(server).chat.completions.create(model="fast", messages=QUESTION)  # type: ignore[arg-type]
    assert response.model == "fusion/fast"
    assert "polyfuse" not in (response.model_extra or {})


def test_system_multi_turn_and_params_reach_every_call(
    server: RunningServer, fake: FakeOpenAIServer
) -> None:
    messages = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": "How are you?"},
    ]
    client(server).chat.completions.create(
        model="fusion/fast",
        messages=messages,  # type: ignore[arg-type]
        temperature=0.7,
        top_p=0.9,
        max_completion_tokens=64,
        stop=["END"],
        seed=11,
        presence_penalty=0.5,
        user="u-1",
    )
    (candidates,) = chat_bodies(fake, "fake-model")
    assert candidates["messages"] == messages
    for name, value in {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 64,
        "stop": ["END"],
        "seed": 11,
        "presence_penalty": 0.5,
        "user": "u-1",
    }.items():
        assert candidates[name] == value, name
    (fusor,) = chat_bodies(fake, "fusor-model")
    assert fusor["max_tokens"] == 64
    # The fusor sees the whole conversation, the system prompt included.
    fusor_prompt = json.dumps(fusor["messages"])
    assert "Answer in French." in fusor_prompt and "Bonjour" in fusor_prompt


def test_max_tokens_is_forwarded(server: RunningServer, fake: FakeOpenAIServer) -> None:
    client(server).chat.completions.create(
        model="fusion/fast",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=7,
    )
    assert chat_bodies(fake, "fake-model")[0]["max_tokens"] == 7


async def test_async_client(server: RunningServer, fake: FakeOpenAIServer) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as aclient:
        response = await aclient.chat.completions.create(model="fusion/fast", messages=QUESTION)  # type: ignore[arg-type]
        assert response.choices[0].message.content
        models = await aclient.models.list()
    assert [m.id for m in models.data] == ["fusion/fast", "fusion/vote"]


def _collect(chunks: Any) -> tuple[list[Any], str]:
    seen = list(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in seen if c.choices)
    return seen, text


def test_streaming_chunks_have_the_openai_shape(
    server: RunningServer, fake: FakeOpenAIServer
) -> None:
    oai = client(server)
    expected = oai.chat.completions.create(model="fusion/fast", messages=QUESTION).choices[0]  # type: ignore[arg-type]
    chunks, text = _collect(
        oai.chat.completions.create(
            model="fusion/fast",
            messages=QUESTION,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 3  # token by token, not one chunk at the end
    assert text == expected.message.content
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_streaming_without_usage_has_no_usage_chunk(
    server: RunningServer, fake: FakeOpenAIServer
) -> None:
    chunks, text = _collect(
        client(server).chat.completions.create(
            model="fusion/fast",
            messages=QUESTION,  # type: ignore[arg-type]
            stream=True,
        )
    )
    assert text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_stream_is_real_tokens_arrive_while_the_fusor_still_runs(
    server: RunningServer, make_fake: Any
) -> None:
    long_answer = " ".join(f"w{i}" for i in range(60))

    def responder(body: dict[str, Any], index: int) -> FakeReply:
        return FakeReply(content=long_answer if body["model"] == "fusor-model" else "short")

    fake = make_fake(responder=responder, latency=LatencyModel(tokens_per_s=100))
    stream = client(server).chat.completions.create(
        model="fusion/fast",
        messages=QUESTION,  # type: ignore[arg-type]
        stream=True,
    )
    fusor_running_at_first_token = None
    pieces: list[str] = []
    for chunk in stream:
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            if fusor_running_at_first_token is None:
                fusor_running_at_first_token = fake.active
            pieces.append(delta)
    assert fusor_running_at_first_token == 1
    assert "".join(pieces) == long_answer


async def test_async_streaming(server: RunningServer, fake: FakeOpenAIServer) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as aclient:
        stream = await aclient.chat.completions.create(
            model="fusion/fast",
            messages=QUESTION,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None


def test_streamed_candidates_extension(server: RunningServer, fake: FakeOpenAIServer) -> None:
    chunks, _ = _collect(
        client(server).chat.completions.create(
            model="fusion/fast",
            messages=QUESTION,  # type: ignore[arg-type]
            stream=True,
            extra_body={"polyfuse": {"return_candidates": True}},
        )
    )
    (finish,) = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    ext = finish.model_extra["polyfuse"]  # type: ignore[index]
    assert len(ext["candidates"]) == 3
    assert all("polyfuse" not in (c.model_extra or {}) for c in chunks if c is not finish)


def test_tools_give_fused_tool_calls(server: RunningServer, fake: FakeOpenAIServer) -> None:
    response = client(server).chat.completions.create(
        model="fusion/fast",
        messages=[{"role": "user", "content": "Weather in Paris for 3 days?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="auto",
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "a", "days": 3}
    # Candidates and fusor both got the tools.
    assert chat_bodies(fake, "fake-model")[0]["tools"] == [WEATHER_TOOL]
    assert chat_bodies(fake, "fusor-model")[0]["tools"] == [WEATHER_TOOL]
    assert chat_bodies(fake, "fake-model")[0]["tool_choice"] == "auto"


def test_streamed_tool_calls_arrive_as_tool_call_deltas(
    server: RunningServer, fake: FakeOpenAIServer
) -> None:
    with client(server).chat.completions.stream(
        model="fusion/fast",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        raw = [event.chunk for event in stream if event.type == "chunk"]
        final = stream.get_final_completion()
    deltas = [
        c.choices[0].delta.tool_calls for c in raw if c.choices and c.choices[0].delta.tool_calls
    ]
    assert deltas, "tool calls were not streamed as deltas"
    assert deltas[0][0].id and deltas[0][0].function.name == "get_weather"
    assert final.choices[0].finish_reason == "tool_calls"
    (call,) = final.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"city": "a", "days": 3}


def test_tool_results_round_trip(server: RunningServer, fake: FakeOpenAIServer) -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
    ]
    response = client(server).chat.completions.create(
        model="fusion/vote",
        messages=messages,  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert response.choices[0].message.content == "The tool said: sunny, 21C"
    assert response.choices[0].finish_reason == "stop"
    sent = chat_bodies(fake, "fake-model")[0]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_1"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"}


class Weather(BaseModel):
    city: str
    temperature_c: int
    sunny: bool


def test_structured_output_with_parse(server: RunningServer, fake: FakeOpenAIServer) -> None:
    completion = client(server).chat.completions.parse(
        model="fusion/fast",
        messages=[{"role": "user", "content": "Weather in Paris as JSON"}],
        response_format=Weather,
    )
    parsed = completion.choices[0].message.parsed
    assert parsed == Weather(city="a", temperature_c=3, sunny=True)
    sent = chat_bodies(fake, "fake-model")[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Weather"
    assert chat_bodies(fake, "fusor-model")[0]["response_format"] == sent


def test_models_list_and_retrieve(server: RunningServer) -> None:
    oai = client(server)
    assert [m.id for m in oai.models.list()] == ["fusion/fast", "fusion/vote"]
    assert oai.models.retrieve("fusion/vote").id == "fusion/vote"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("fusion/nope")


def test_unknown_model_is_404_listing_known_ones(server: RunningServer) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(server).chat.completions.create(model="gpt-4o", messages=QUESTION)  # type: ignore[arg-type]
    error = info.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "fusion/fast" in error["message"] and "fusion/vote" in error["message"]

"""ChatFusion end to end on the fake server: results, streaming, strategies, tools, structure,
configuration and errors."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.runnables import ConfigurableField
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_polyfuse import ChatFusion
from polyfuse import (
    InvalidRequestError,
    NoCandidatesError,
    OpenAIEndpoint,
    Pool,
)
from polyfuse.testing import FakeOpenAIServer, Fault


class Person(BaseModel):
    """A person."""

    name: str
    age: int


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return f"It's sunny in {location}."


def _fused(message: AIMessage) -> dict[str, Any]:
    return message.response_metadata["fusion"]


# ---------------------------------------------------------------------- construction errors


def test_no_candidates_is_a_construction_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYFUSE_BASE_URL", raising=False)
    with pytest.raises(InvalidRequestError, match="no candidates"):
        ChatFusion()


def test_empty_candidates_and_endpoints_are_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="candidates is empty"):
        ChatFusion(candidates=[])
    with pytest.raises(InvalidRequestError, match="endpoints is empty"):
        ChatFusion(base_url="http://127.0.0.1:9/v1", endpoints=[])


def test_a_member_that_is_not_a_chat_model_is_rejected() -> None:
    with pytest.raises(InvalidRequestError, match=r"candidates\[1\] is a str"):
        ChatFusion(candidates=[GenericFakeChatModel(messages=iter([])), "gpt-4o"])
    bound = ChatFusion(base_url="http://127.0.0.1:9/v1", model="m").bind_tools([get_weather])
    with pytest.raises(InvalidRequestError, match="not a chat model"):
        ChatFusion(candidates=[bound])
    with pytest.raises(InvalidRequestError, match="put LangChain models in candidates"):
        ChatFusion(endpoints=[GenericFakeChatModel(messages=iter([]))])


def test_other_bad_settings_fail_at_construction() -> None:
    with pytest.raises(InvalidRequestError, match="pool must be a polyfuse Pool"):
        ChatFusion(pool=["not", "a", "pool"])
    with pytest.raises(InvalidRequestError, match="base_url is not set"):
        ChatFusion(model="qwen", base_url=None)
    with pytest.raises(InvalidRequestError, match="quorum 4 exceeds"):
        ChatFusion(base_url="http://127.0.0.1:9/v1", model="m", n=3, quorum=4)
    with pytest.raises(InvalidRequestError, match="not an http"):
        ChatFusion(base_url="ftp://nowhere", model="m")
    with pytest.raises(InvalidRequestError, match="unknown strategy 'majority'"):
        ChatFusion(base_url="http://127.0.0.1:9/v1", model="m", strategy="majority")  # type: ignore[arg-type]


def test_env_settings_and_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYFUSE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("POLYFUSE_API_KEY", "sk-secret")
    model = ChatFusion(model="m")
    assert model.base_url == "http://127.0.0.1:9/v1"
    assert model.api_key is not None
    assert model.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(model)


def test_unsupported_message_types_fail_clearly(lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=2)
    with pytest.raises(InvalidRequestError, match="FunctionMessage"):
        model.invoke([HumanMessage("hi"), FunctionMessage(name="f", content="x")])
    with pytest.raises(InvalidRequestError, match="'critic'"):
        model.invoke([ChatMessage(role="critic", content="hi")])


def test_unknown_call_parameters_fail_clearly(lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=2)
    with pytest.raises(InvalidRequestError, match="extra_body"):
        model.invoke("hi", frobnicate=3)


# ---------------------------------------------------------------------- results


def test_invoke_reports_every_call(lc_fake: FakeOpenAIServer, lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=3, temperature=0.7, max_tokens=50)
    message = model.invoke("Why is the sky blue?")
    fusion = _fused(message)
    assert message.content
    assert message.response_metadata["model_provider"] == "polyfuse"
    assert message.response_metadata["model_name"] == "fake-model"
    assert message.response_metadata["finish_reason"] == "stop"
    assert fusion["method"] == "fuse"
    assert [c["status"] for c in fusion["candidates"]] == ["ok", "ok", "ok"]
    assert all(c["text"].startswith("Answer") for c in fusion["candidates"])
    # one n=3 request for the candidates, one for the fusor; both sent the sampling params
    assert [body.get("n", 1) for body in lc_fake.requests] == [3, 1]
    assert all(body["temperature"] == 0.7 for body in lc_fake.requests)
    # usage is the sum over both calls, exactly as the calls reported it
    per_call = [c["usage"] for c in fusion["candidates"]] + [c["usage"] for c in fusion["calls"]]
    usage = message.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == sum(u["prompt_tokens"] for u in per_call) > 0
    assert usage["output_tokens"] == sum(u["completion_tokens"] for u in per_call) > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert fusion["usage"]["total"]["calls"] == 2
    assert fusion["usage_complete"] is True


def test_usage_without_server_usage_is_a_marked_lower_bound(
    make_fake: Any, _fake_switch: tuple[Any, str]
) -> None:
    make_fake(usage=False)
    model = ChatFusion(base_url=_fake_switch[1], model="fake-model", n=2)
    message = model.invoke("hello")
    assert message.usage_metadata == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    assert _fused(message)["usage_complete"] is False


def test_stream_yields_fused_tokens_then_one_usage_chunk(lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=3)
    chunks = list(model.stream("Tell me about streams"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    text_chunks = [c for c in chunks if c.content]
    assert len(text_chunks) > 1  # the fusor's tokens arrive one by one
    with_usage = [c for c in chunks if c.usage_metadata]
    assert len(with_usage) == 1
    assert with_usage[0] is chunks[-1]
    assert chunks[-1].chunk_position == "last"
    assert sum(1 for c in chunks if c.response_metadata.get("model_name")) == 1
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert full.content == model.invoke("Tell me about streams").content


async def test_astream_and_abatch(lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=2)
    chunks = [c async for c in model.astream("async question")]
    assert chunks[-1].chunk_position == "last"
    assert "".join(str(c.content) for c in chunks).startswith("Answer")
    answers = await model.abatch(["one", "two", "three"])
    assert [_fused(a)["n"] for a in answers] == [2, 2, 2]


async def test_astream_events_show_fused_tokens(lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=2)
    tokens = [
        event["data"]["chunk"].content  # pyright: ignore[reportTypedDictNotRequiredAccess]
        async for event in model.astream_events("events please", version="v2")
        if event["event"] == "on_chat_model_stream"
    ]
    assert len([t for t in tokens if t]) > 1


# ---------------------------------------------------------------------- strategies and policy


@pytest.mark.parametrize(
    ("strategy", "method"),
    [("best-of-n", "best_of_n"), ("vote", "vote"), ("usc", "usc"), ("moa", "moa")],
)
def test_every_strategy_is_a_field(lc_url: str, strategy: str, method: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=3, strategy=strategy)  # type: ignore[arg-type]
    message = model.invoke("What is 2 + 2?")
    fusion = _fused(message)
    assert fusion["method"] == method
    assert message.content
    if method in ("best_of_n", "vote"):
        assert fusion["selected"] is not None


def test_quorum_cancels_a_hung_member(make_fake: Any, _fake_switch: tuple[Any, str]) -> None:
    fake = make_fake()
    fake.inject(Fault("hang_mid_stream", delay_s=0, match_model="slow"))
    model = ChatFusion(
        base_url=_fake_switch[1],
        model="fake-model",
        endpoints=["fast-a", "fast-b", "slow"],
        quorum=2,
        timeout=30,
    )
    message = model.invoke("hello")
    statuses = {c["backend"]: c["status"] for c in _fused(message)["candidates"]}
    assert statuses == {"fast-a": "ok", "fast-b": "ok", "slow": "cancelled"}


def test_all_candidates_failing_raises(make_fake: Any, _fake_switch: tuple[Any, str]) -> None:
    fake = make_fake()
    fake.inject(Fault("status", status=400, times=10))
    model = ChatFusion(base_url=_fake_switch[1], model="fake-model", n=2)
    with pytest.raises(NoCandidatesError, match="candidates failed"):
        model.invoke("hello")


def test_panel_of_endpoints_and_a_separate_fusor(lc_fake: FakeOpenAIServer, lc_url: str) -> None:
    model = ChatFusion(
        base_url=lc_url,
        endpoints=["model-a", {"base_url": lc_url, "model": "model-b"}],
        fusor="judge-model",
        fusor_params={"temperature": 0.0},
    )
    message = model.invoke("compare")
    fusion = _fused(message)
    assert [c["model"] for c in fusion["candidates"]] == ["model-a", "model-b"]
    assert fusion["calls"][0]["model"] == "judge-model"
    assert message.response_metadata["model_name"] == "judge-model"
    assert lc_fake.requests[-1]["temperature"] == 0.0


def test_a_ready_pool(lc_url: str) -> None:
    pool = Pool.repeat(OpenAIEndpoint(lc_url, "pool-model"), 4)
    model = ChatFusion(pool=pool)
    assert model.label == "pool-model"
    assert _fused(model.invoke("hi"))["n"] == 4
    with pytest.raises(InvalidRequestError, match="n does not apply"):
        ChatFusion(pool=pool, n=2)


# ---------------------------------------------------------------------- configuration


def test_configurable_n_strategy_and_fusor(lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=3).configurable_fields(
        n=ConfigurableField(id="n"),
        strategy=ConfigurableField(id="strategy"),
        fusor=ConfigurableField(id="fusor"),
    )
    default = model.invoke("hi")
    assert _fused(default)["n"] == 3
    tuned = model.invoke("hi", config={"configurable": {"n": 5, "strategy": "vote"}})
    assert (_fused(tuned)["n"], _fused(tuned)["method"]) == (5, "vote")
    other = model.invoke("hi", config={"configurable": {"fusor": "big-fusor"}})
    assert _fused(other)["calls"][0]["model"] == "big-fusor"


def test_per_call_model_override(lc_fake: FakeOpenAIServer, lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=2)
    message = model.invoke("hi", model="other-model")
    assert {body["model"] for body in lc_fake.requests} == {"other-model"}
    assert message.response_metadata["model_name"] == "other-model"
    params = model._get_ls_params(model="other-model")
    assert params.get("ls_model_name") == "other-model"
    panel = ChatFusion(base_url=lc_url, endpoints=["a", "b"])
    with pytest.raises(InvalidRequestError, match="not built from base_url= and model="):
        panel.invoke("hi", model="other-model")


def test_stop_sequences_are_sent(lc_fake: FakeOpenAIServer, lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=2, stop=["END"])
    model.invoke("hi")
    model.invoke("hi", stop=["HALT"])
    assert [body.get("stop") for body in lc_fake.requests] == [["END"]] * 2 + [["HALT"]] * 2


# ---------------------------------------------------------------------- tools and structure


@pytest.mark.parametrize("choice", ["any", "required", "get_weather", True])
def test_forced_tool_calls_are_fused_into_one_valid_call(
    lc_fake: FakeOpenAIServer, lc_url: str, choice: Any
) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=3).bind_tools(
        [get_weather], tool_choice=choice
    )
    message = model.invoke("What is the weather in 'Paris'?")
    assert isinstance(message, AIMessage)
    assert message.tool_calls == [
        {
            "name": "get_weather",
            "args": {"location": "Paris"},
            "id": "call_0_0",
            "type": "tool_call",
        }
    ]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert all(c["tool_calls"] for c in _fused(message)["candidates"])
    sent = lc_fake.requests[0]["tool_choice"]
    expected = (
        {"type": "function", "function": {"name": "get_weather"}}
        if choice == "get_weather"
        else "required"
    )
    assert sent == expected


def test_unknown_tool_choice_fails_at_bind_time(lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model")
    with pytest.raises(InvalidRequestError, match="get_weather"):
        model.bind_tools([get_weather], tool_choice="get_forecast")


def test_streamed_tool_calls(lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=2).bind_tools(
        [get_weather], tool_choice="any"
    )
    full: Any = None
    for chunk in model.stream("weather in 'Oslo'?"):
        full = chunk if full is None else full + chunk
    assert [(c["name"], c["args"]) for c in full.tool_calls] == [
        ("get_weather", {"location": "Oslo"})
    ]


def test_create_agent_runs_the_tool_loop(lc_url: str) -> None:
    from langchain.agents import create_agent

    agent = create_agent(ChatFusion(base_url=lc_url, model="fake-model", n=3), tools=[get_weather])
    result = agent.invoke({"messages": [HumanMessage("What is the weather in 'Rome'?")]})
    kinds = [type(m).__name__ for m in result["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    tool_message = result["messages"][2]
    assert isinstance(tool_message, ToolMessage)
    assert tool_message.content == "It's sunny in Rome."
    final = result["messages"][-1]
    assert not final.tool_calls
    assert final.content


@pytest.mark.parametrize("method", ["function_calling", "json_schema", "json_mode"])
def test_structured_output_methods(lc_url: str, method: Any) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=3)
    prompt = "Return a JSON with 'name' and 'age' keys for Ada."
    if method == "json_mode":
        out = model.with_structured_output(None, method="json_mode").invoke(prompt)
        assert out == {"name": "a", "age": "a"}
        return
    person = model.with_structured_output(Person, method=method).invoke(prompt)  # type: ignore[arg-type]
    assert isinstance(person, Person)
    assert person.age == 3
    raw = model.with_structured_output(
        Person.model_json_schema(),
        method=method,
        include_raw=True,  # type: ignore[arg-type]
    ).invoke(prompt)
    assert isinstance(raw["raw"], AIMessage)
    assert raw["parsing_error"] is None
    assert raw["parsed"]["age"] == 3


def test_structured_output_parse_failure_with_include_raw(lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model", n=2)
    out = model.with_structured_output(Person, method="json_mode", include_raw=True).invoke(
        "no keys are named here"
    )
    assert out["parsed"] is None
    assert out["parsing_error"] is not None
    assert isinstance(out["raw"], AIMessage)


def test_with_structured_output_rejects_unknown_arguments(lc_url: str) -> None:
    model = ChatFusion(base_url=lc_url, model="fake-model")
    with pytest.raises(ValueError, match="unsupported arguments"):
        model.with_structured_output(Person, tools=[get_weather])
    with pytest.raises(ValueError, match="needs a schema"):
        model.with_structured_output(None, method="json_schema")


def test_fusor_failure_falls_back_in_invoke_and_raises_mid_stream(
    make_fake: Any, _fake_switch: tuple[Any, str]
) -> None:
    from polyfuse import AggregationError

    fake = make_fake()
    model = ChatFusion(base_url=_fake_switch[1], model="fake-model", n=2, fusor="fusor-model")
    fake.inject(Fault("error_mid_stream", match_model="fusor-model"))
    message = model.invoke("hello")
    fusion = _fused(message)
    assert fusion["selected"] == 0 and "failed" in fusion["fallback_reason"]
    assert message.content == fusion["candidates"][0]["text"]

    fake.inject(Fault("error_mid_stream", match_model="fusor-model"))
    received: list[str] = []
    with pytest.raises(AggregationError, match="cannot be taken back"):
        for chunk in model.stream("hello"):
            received.append(str(chunk.content))
    assert "".join(received)  # part of the fused answer had been streamed

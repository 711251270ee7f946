"""LangChain's ChatOpenAI pointed at a running polyfuse server."""

from __future__ import annotations

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel
from server_helpers import RunningServer

from polyfuse.testing import FakeOpenAIServer


def chat_model(server: RunningServer, **kwargs: object) -> ChatOpenAI:
    return ChatOpenAI(
        model="fusion/fast",
        base_url=server.base_url,
        api_key="unused",  # type: ignore[arg-type]
        max_retries=0,
        **kwargs,  # type: ignore[arg-type]
    )


@tool
def get_weather(city: str, days: int) -> str:
    """Weather in a city for some days."""
    return f"sunny in {city} for {days} days"


def test_invoke(server: RunningServer, fake: FakeOpenAIServer) -> None:
    message = chat_model(server, temperature=0.2).invoke(
        [SystemMessage("Be brief."), HumanMessage("Why is the sky blue?")]
    )
    assert isinstance(message, AIMessage)
    assert message.content
    assert message.response_metadata["model_name"] == "fusion/fast"
    assert message.response_metadata["finish_reason"] == "stop"
    assert message.usage_metadata is not None and message.usage_metadata["total_tokens"] > 0
    assert all(body["temperature"] == 0.2 for body in fake.requests)


def test_stream(server: RunningServer, fake: FakeOpenAIServer) -> None:
    model = chat_model(server, stream_usage=True)
    expected = model.invoke("Why is the sky blue?").content
    chunks = list(model.stream("Why is the sky blue?"))
    assert len(chunks) > 3
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.content == expected
    assert total.usage_metadata is not None and total.usage_metadata["total_tokens"] > 0
    assert total.response_metadata["finish_reason"] == "stop"


async def test_astream(server: RunningServer, fake: FakeOpenAIServer) -> None:
    chunks = [c async for c in chat_model(server).astream("Why is the sky blue?")]
    assert "".join(str(c.content) for c in chunks)


def test_bind_tools(server: RunningServer, fake: FakeOpenAIServer) -> None:
    message = chat_model(server).bind_tools([get_weather]).invoke("Weather in Paris, 3 days?")
    assert isinstance(message, AIMessage)
    (call,) = message.tool_calls
    assert call["name"] == "get_weather"
    assert call["args"] == {"city": "a", "days": 3}
    assert message.response_metadata["finish_reason"] == "tool_calls"


def test_bind_tools_streaming(server: RunningServer, fake: FakeOpenAIServer) -> None:
    model = chat_model(server).bind_tools([get_weather])
    chunks = list(model.stream("Weather in Paris, 3 days?"))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert isinstance(total, AIMessageChunk)
    (call,) = total.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "a", "days": 3}


class Forecast(BaseModel):
    city: str
    days: int


def test_structured_output(server: RunningServer, fake: FakeOpenAIServer) -> None:
    structured = chat_model(server).with_structured_output(Forecast, method="json_schema")
    assert structured.invoke("Forecast for Paris") == Forecast(city="a", days=3)

"""LangChain's own standard test suites, run against ChatFusion on a real loopback server.

``ChatFusion`` samples 3 candidates from the fake OpenAI-compatible server and fuses them with
a fusor on the same server, so every standard test exercises the whole engine: n-batched
sampling, the fusor call, tool calls, structured output, streaming and usage.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_polyfuse import ChatFusion

_SERVER: dict[str, str] = {}


class TestChatFusionUnit(ChatModelUnitTests):
    """Construction, parameters, tool binding and structured output (no network)."""

    @property
    def chat_model_class(self) -> type[ChatFusion]:
        return ChatFusion

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"base_url": "http://127.0.0.1:9/v1", "model": "fake-model", "n": 3}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"POLYFUSE_BASE_URL": "http://127.0.0.1:9/v1", "POLYFUSE_API_KEY": "env-key"},
            {"model": "fake-model"},
            {"base_url": "http://127.0.0.1:9/v1", "api_key": "env-key"},
        )

    @property
    def supports_json_mode(self) -> bool:
        return True


class TestChatFusionIntegration(ChatModelIntegrationTests):
    """Every call samples 3 candidates and fuses them, all on the fake server."""

    @pytest.fixture(autouse=True)
    def _server(self, lc_url: str) -> None:
        _SERVER["base_url"] = lc_url

    @property
    def chat_model_class(self) -> type[ChatFusion]:
        return ChatFusion

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"base_url": _SERVER["base_url"], "model": "fake-model", "n": 3}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "other-model"


class TestChatFusionIntegrationJsonSchema(TestChatFusionIntegration):
    """The same suite with structured output through ``response_format`` (json_schema)."""

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "json_schema"}

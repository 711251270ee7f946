"""Fixtures for core tests: endpoints on the fake server, closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from polyfuse import OpenAIEndpoint


@pytest.fixture
async def endpoint_factory(fake_url: str) -> AsyncIterator[Callable[..., OpenAIEndpoint]]:
    """Build endpoints on the fake server with fast retries; all closed at teardown."""
    made: list[OpenAIEndpoint] = []

    def build(model: str = "fake-model", **settings: Any) -> OpenAIEndpoint:
        settings.setdefault("backoff_base", 0.01)
        settings.setdefault("backoff_max", 0.05)
        endpoint = OpenAIEndpoint(settings.pop("base_url", fake_url), model, **settings)
        made.append(endpoint)
        return endpoint

    yield build
    for endpoint in made:
        await endpoint.aclose()


@pytest.fixture
def endpoint(endpoint_factory: Callable[..., OpenAIEndpoint]) -> OpenAIEndpoint:
    """One endpoint on the fake server."""
    return endpoint_factory()

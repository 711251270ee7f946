"""Fixtures for the distill tests: the fake server playing teachers, fusor and judge."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from distill_helpers import responder

from polyfuse.testing import FakeOpenAIServer, LatencyModel


@pytest.fixture
def panel_fake(make_fake: Callable[..., FakeOpenAIServer], fake_url: str) -> FakeOpenAIServer:
    """The fake server answering as teachers, fusor and judge (no latency).

    Depends on ``fake_url`` so that it is installed after the default fake that fixture sets.
    """
    return make_fake(responder=responder)


@pytest.fixture
def slow_panel_fake(make_fake: Callable[..., FakeOpenAIServer], fake_url: str) -> FakeOpenAIServer:
    """The same, with a small latency so that runs take a moment."""
    return make_fake(responder=responder, latency=LatencyModel(ttft_s=0.01))

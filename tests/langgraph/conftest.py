"""Fixtures for the LangGraph node tests (the responder lives in ``graph_helpers``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from graph_helpers import agent_responder

from polyfuse.testing import FakeOpenAIServer


@pytest.fixture
def agent_fake(make_fake: Callable[..., FakeOpenAIServer]) -> FakeOpenAIServer:
    """A fresh fake server that answers with :func:`agent_responder`."""
    return make_fake(responder=agent_responder)


@pytest.fixture
def url(_fake_switch: tuple[Any, str], make_fake: Callable[..., FakeOpenAIServer]) -> str:
    """Base URL of the session's fake server: a fresh default fake unless the test installs
    another one (e.g. ``agent_fake``)."""
    return _fake_switch[1]

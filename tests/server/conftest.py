"""A real polyfuse server on 127.0.0.1 whose presets point at the fake OpenAI server."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from server_helpers import RunningServer, presets_for, running


@pytest.fixture(scope="session")
def server(_fake_switch: tuple[Any, str]) -> Iterator[RunningServer]:
    """One polyfuse server for the session, with the default test presets (and the
    ``polyfuse.return_candidates`` extension allowed: several tests read it)."""
    config = presets_for(_fake_switch[1], server={"allow_return_candidates": True})
    with running(config) as served:
        yield served


@pytest.fixture
def make_server(fake_url: str) -> Iterator[Callable[..., RunningServer]]:
    """Start a server with custom presets/settings: ``make_server(server={...})``."""
    stack = contextlib.ExitStack()

    def start(**overrides: Any) -> RunningServer:
        return stack.enter_context(running(presets_for(fake_url, **overrides)))

    with stack:
        yield start

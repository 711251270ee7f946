"""Fixtures: the fake upstream with the playground's answers, and one real ``polyfuse serve``
process for the session (API keys on), shared by the API and the browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playground_helpers import Served, make_upstream, polyfuse_serve, presets_config, write_toml

from polyfuse.testing import FakeOpenAIServer


@pytest.fixture
def upstream(_fake_switch: tuple[Any, str]) -> Iterator[FakeOpenAIServer]:
    """A fresh fake upstream for this test (see ``make_upstream``)."""
    switch, _ = _fake_switch
    fake = make_upstream()
    switch.app = fake
    yield fake
    fake.release_waiters()


@pytest.fixture(scope="session")
def served(
    _fake_switch: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """``polyfuse serve`` on the playground presets, keys required."""
    folder = tmp_path_factory.mktemp("serve")
    config = presets_config(
        _fake_switch[1], server={"api_keys_env": "POLYFUSE_PLAYGROUND_TEST_KEYS"}
    )
    path = write_toml(config, folder / "presets.toml")
    with polyfuse_serve(path, folder / "serve.log") as running:
        yield running


@pytest.fixture
def server(served: Served, upstream: FakeOpenAIServer) -> Served:
    """The session's server, with this test's fresh upstream installed."""
    return served

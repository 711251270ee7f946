"""Shared fixtures: a real fake OpenAI-compatible server on 127.0.0.1.

One uvicorn server runs for the whole session; each test gets a fresh
:class:`~polyfuse.testing.FakeOpenAIServer` app behind it (``fake``), or configures its own
with ``make_fake(n_mode="reject", ...)``. Likewise one embedded llama.cpp model
(``embedded_model``) serves every test that only talks to it, and one local Ray instance
(``local_ray``) every test that needs one: those run last, together, so Ray is up only while
they run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from polyfuse.testing import FakeOpenAIServer, serve

# The suite runs the embedded llama.cpp model next to busy test processes: one thread keeps its
# spinning workers from fighting the tests for the cores (see LocalModel's ``threads``).
os.environ.setdefault("POLYFUSE_LOCAL_THREADS", "1")


class _Switch:
    """An ASGI app that forwards to whichever fake the current test installed."""

    def __init__(self) -> None:
        self.app = FakeOpenAIServer()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests that use ``local_ray`` to the end (in their order): one Ray start serves
    them all, and no other test finds a running Ray (``--ray-address auto`` must not)."""
    items.sort(key=lambda item: "local_ray" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """A local Ray instance (2 CPUs, no dashboard) for the session's ``ray`` tests: starting one
    takes seconds."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def embedded_model() -> Iterator[Any]:
    """The embedded SmolLM2 chat server (4 slots of 2048 tokens: three candidates and a fusor
    at once), started once for the session: each start costs seconds of model loading on CI's
    two cores. Tests that start, stop or configure a model make their own (embeddings too:
    with more than 2 slots llama.cpp's batched embeddings differ from single ones)."""
    pytest.importorskip("xllamacpp", reason="the embedded model needs polyfuse[local]")
    from polyfuse.local import LocalModel

    with LocalModel(slots=4, ctx_per_slot=2048) as model:
        yield model


@pytest.fixture(scope="session")
def _fake_switch() -> Iterator[tuple[_Switch, str]]:
    switch = _Switch()
    with serve(switch) as served:
        yield switch, served.base_url


@pytest.fixture
def make_fake(_fake_switch: tuple[_Switch, str]) -> Callable[..., FakeOpenAIServer]:
    """Install a fake configured with ``FakeOpenAIServer(**kwargs)``; returns it.

    A fresh default fake is installed when this fixture is set up, before any test or fixture
    body runs, so a configuration installed by calling this never gets replaced behind your back.
    """
    switch, _ = _fake_switch
    switch.app = FakeOpenAIServer()

    def install(**kwargs: Any) -> FakeOpenAIServer:
        switch.app = FakeOpenAIServer(**kwargs)
        return switch.app

    return install


@pytest.fixture
def fake(
    _fake_switch: tuple[_Switch, str], make_fake: Callable[..., FakeOpenAIServer]
) -> FakeOpenAIServer:
    """The fresh default fake server installed for this test."""
    return _fake_switch[0].app


@pytest.fixture
def fake_url(_fake_switch: tuple[_Switch, str], make_fake: Callable[..., FakeOpenAIServer]) -> str:
    """Base URL (``http://127.0.0.1:PORT/v1``) of the fake server (fresh for each test)."""
    return _fake_switch[1]

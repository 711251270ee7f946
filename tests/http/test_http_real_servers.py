"""The HTTP layer against servers no one here wrote: uvicorn (h11 and httptools), hypercorn,
and servers that close idle keep-alive connections while requests keep coming."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import pytest

from polyfuse import OpenAIEndpoint
from polyfuse.messages import ChatRequest
from polyfuse.testing import FakeOpenAIServer, FakeReply

BIG = "word " * (2 * (1 << 20) // 5)  # a 2 MiB answer


def _responder(body: dict[str, Any], index: int) -> FakeReply:
    text = body["messages"][-1]["content"]
    if text == "big":
        return FakeReply(content=BIG)
    return FakeReply(content=f"{text} #{index}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _uvicorn(app: Any, http: str, *, keep_alive_s: float = 5.0) -> Generator[str, None, None]:
    import uvicorn

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=http,  # type: ignore[arg-type]
        loop="asyncio",
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=keep_alive_s,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(3000):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def _hypercorn(app: Any, *, keep_alive_s: float = 5.0) -> Generator[str, None, None]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    port = _free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.keep_alive_timeout = keep_alive_s
    config.accesslog = None
    config.errorlog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    async def main() -> None:
        started.set()
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(30)
    for _ in range(3000):  # until it listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            threading.Event().wait(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@contextmanager
def _server(kind: str, app: Any, *, keep_alive_s: float = 5.0) -> Generator[str, None, None]:
    if kind == "hypercorn":
        with _hypercorn(app, keep_alive_s=keep_alive_s) as url:
            yield url
    else:
        with _uvicorn(app, kind, keep_alive_s=keep_alive_s) as url:
            yield url


KINDS = ["h11", "httptools", "hypercorn"]


@pytest.mark.parametrize("kind", KINDS)
async def test_answers_streams_and_large_bodies(kind: str) -> None:
    fake = FakeOpenAIServer(responder=_responder)
    with _server(kind, fake) as url:
        endpoint = OpenAIEndpoint(url, "m", max_retries=0, read_timeout=60.0)
        try:
            answers = await asyncio.gather(
                *(endpoint.complete(ChatRequest.build(f"q{i}")) for i in range(16))
            )
            assert [a[0].content for a in answers] == [f"q{i} #0" for i in range(16)]
            three = await endpoint.complete(ChatRequest.build("n"), n=3)
            assert [c.content for c in three] == ["n #0", "n #1", "n #2"]
            parts = [d.content async for d in endpoint.stream(ChatRequest.build("s")) if d.content]
            assert "".join(parts) == "s #0"
            [big] = await endpoint.complete(ChatRequest.build("big"))
            assert big.content == BIG
            [after] = await endpoint.complete(ChatRequest.build("after"))  # connection reused
            assert after.content == "after #0"
        finally:
            await endpoint.aclose()
    assert len(fake.requests) == 16 + 1 + 1 + 1 + 1


@pytest.mark.parametrize("kind", ["httptools", "hypercorn"])
async def test_server_closing_idle_connections_while_requests_keep_coming(kind: str) -> None:
    """The server closes connections idle for 1 s; the client keeps them for 4 s and sends
    again at gaps around that second. No error surfaces and every request reaches the app
    exactly once (a close that races a request is at worst one counted retry of a request the
    app never read)."""
    fake = FakeOpenAIServer(responder=_responder)
    gaps = [0.0, 1.2, 0.3, 1.05, 0.95, 1.5, 0.1, 1.1]
    with _server(kind, fake, keep_alive_s=1.0) as url:
        endpoint = OpenAIEndpoint(url, "m", backoff_base=0.01, read_timeout=60.0)
        try:
            for round_, gap in enumerate(gaps):
                await asyncio.sleep(gap)
                answers = await asyncio.gather(
                    *(endpoint.complete(ChatRequest.build(f"r{round_}-{i}")) for i in range(4))
                )
                assert [a[0].content for a in answers] == [f"r{round_}-{i} #0" for i in range(4)]
        finally:
            await endpoint.aclose()
    sent = [r["messages"][-1]["content"] for r in fake.requests]
    assert len(sent) == len(set(sent)) == 4 * len(gaps)

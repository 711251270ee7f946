"""A client that leaves cancels the fusion: no upstream request is left running."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import httpx
from server_helpers import RunningServer, wait_until

from polyfuse.testing import FakeOpenAIServer, FakeReply, LatencyModel

USER = [{"role": "user", "content": "Tell me a long story"}]


def slow_fusor(body: dict[str, Any], index: int) -> FakeReply:
    """Short candidates, a long (slowly streamed) fused answer."""
    if body["model"] == "fusor-model":
        return FakeReply(content=" ".join(f"word{i}" for i in range(400)))
    return FakeReply(content="a short draft")


def upstream_quiet(fake: FakeOpenAIServer, server: RunningServer) -> bool:
    return fake.active == 0 and server.in_flight() == 0


def test_disconnect_while_the_fusor_streams_cancels_it(
    server: RunningServer, make_fake: Callable[..., FakeOpenAIServer]
) -> None:
    fake = make_fake(responder=slow_fusor, latency=LatencyModel(tokens_per_s=40))
    body = {"model": "fusion/fast", "messages": USER, "stream": True}
    with httpx.stream("POST", server.chat_url, json=body, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if '"content":"word' in line:
                break  # the fused answer is streaming: leave now
        # the fusor call is in flight; the candidates' call may take a moment to be counted
        # as finished by the fake server
        assert wait_until(lambda: fake.active == 1, timeout=5)
    assert wait_until(lambda: upstream_quiet(fake, server), timeout=10)
    assert fake.disconnects == 1
    assert fake.completed == 1  # the candidates' call finished; the fusor's never did


def test_disconnect_while_candidates_run_cancels_them(
    server: RunningServer, make_fake: Callable[..., FakeOpenAIServer]
) -> None:
    fake = make_fake(latency=LatencyModel(ttft_s=30))
    body = {"model": "fusion/fast", "messages": USER, "stream": True}

    async def leave_early() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            request = client.stream("POST", server.chat_url, json=body)
            task = asyncio.ensure_future(request.__aenter__())
            deadline = asyncio.get_running_loop().time() + 10
            while fake.active == 0 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            task.cancel()  # no header has come back yet: the client gives up

    asyncio.run(leave_early())
    assert wait_until(lambda: upstream_quiet(fake, server), timeout=10)
    assert fake.disconnects == 1
    assert fake.completed == 0


def test_disconnect_of_a_non_streaming_request_cancels_upstream(
    server: RunningServer, make_fake: Callable[..., FakeOpenAIServer]
) -> None:
    fake = make_fake(latency=LatencyModel(ttft_s=30))
    host, port = server.root_url.removeprefix("http://").split(":")
    payload = b'{"model": "fusion/fast", "messages": [{"role": "user", "content": "hi"}]}'
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + payload)
        assert wait_until(lambda: fake.active == 1, timeout=10)
    assert wait_until(lambda: upstream_quiet(fake, server), timeout=10)
    assert fake.disconnects == 1
    metrics = httpx.get(server.root_url + "/metrics", timeout=5).text
    assert 'polyfuse_requests_total{model="fast",status="499"}' in metrics


def test_a_finished_stream_leaves_nothing_running(
    server: RunningServer, fake: FakeOpenAIServer
) -> None:
    body = {"model": "fusion/fast", "messages": USER, "stream": True}
    with httpx.stream("POST", server.chat_url, json=body, timeout=30) as response:
        assert response.read().endswith(b"data: [DONE]\n\n")
    assert wait_until(lambda: upstream_quiet(fake, server), timeout=10)
    assert fake.disconnects == 0

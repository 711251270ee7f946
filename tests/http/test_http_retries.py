"""A POST is never sent again uncounted.

The scenario of issue #15: eight pooled keep-alive connections, then a server that reads each
request and drops the connection without answering. Before the fix, one ``complete()`` with
``max_retries=0`` delivered the same POST nine times (once per pooled connection, then on a new
one).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from http_servers import ThreadServer, chat_body, response, thread_server

from polyfuse import APIConnectionError, InvalidRequestError, OpenAIEndpoint
from polyfuse.aggregators.base import call_model
from polyfuse.messages import ChatRequest, SamplingParams

POOL = 8


def _warm_then_drop(conn: socket.socket, server: ThreadServer) -> None:
    """Answer while ``server.state["mode"]`` is "warm" (all POOL requests held until they have
    all arrived, so that POOL connections open), then read each request and hang up."""
    pending = bytearray()
    while server.read(conn, pending) is not None:
        if server.state["mode"] == "warm":
            server.state["barrier"].wait(timeout=30)
            conn.sendall(response(chat_body("warm")))
            continue
        if server.state.get("answer_after", 10**9) < server.posts:
            conn.sendall(response(chat_body("finally")))
            continue
        conn.shutdown(socket.SHUT_RDWR)
        return


async def _pool_of_eight(endpoint: OpenAIEndpoint, server: ThreadServer) -> None:
    server.state.update(mode="warm", barrier=threading.Barrier(POOL))
    request = ChatRequest.build("warm")
    await asyncio.gather(*(endpoint.complete(request) for _ in range(POOL)))
    assert server.connections == POOL
    server.state["mode"] = "drop"
    server.posts = 0


async def test_max_retries_0_sends_the_post_exactly_once() -> None:
    with thread_server(_warm_then_drop) as server:
        endpoint = OpenAIEndpoint(server.base_url, "m", max_retries=0, read_timeout=30.0)
        await _pool_of_eight(endpoint, server)
        with pytest.raises(APIConnectionError) as failure:
            await endpoint.complete(ChatRequest.build("once"))
        await endpoint.aclose()
        time.sleep(0.05)  # let the server thread count anything late
    assert server.posts == 1
    assert failure.value.retries == 0


async def test_max_retries_2_sends_at_most_three_times_and_counts() -> None:
    with thread_server(_warm_then_drop) as server:
        endpoint = OpenAIEndpoint(
            server.base_url, "m", max_retries=2, backoff_base=0.01, read_timeout=30.0
        )
        await _pool_of_eight(endpoint, server)
        with pytest.raises(APIConnectionError) as failure:
            await endpoint.complete(ChatRequest.build("thrice"))
        await endpoint.aclose()
        time.sleep(0.05)
    assert server.posts == 3
    assert failure.value.retries == 2


async def test_retries_are_recorded_on_the_result() -> None:
    with thread_server(_warm_then_drop) as server:
        endpoint = OpenAIEndpoint(
            server.base_url, "m", max_retries=2, backoff_base=0.01, read_timeout=30.0
        )
        await _pool_of_eight(endpoint, server)
        server.state["answer_after"] = 2  # drop two deliveries, answer the third
        [completion] = await endpoint.complete(ChatRequest.build("third time"))
        assert completion.content == "finally" and completion.retries == 2
        assert server.posts == 3
        server.posts = 0  # an aggregator's call records its retries too
        record = await call_model(
            endpoint, [{"role": "user", "content": "x"}], SamplingParams(), role="aggregator"
        )
        await endpoint.aclose()
    assert record.error is None and record.content == "finally" and record.retries == 2


async def test_idle_connection_closed_by_the_server_is_replaced_without_a_resend() -> None:
    """The one exception: the server had closed the idle connection before the request; the
    event loop has not noticed yet (it is blocked), the check before writing does."""
    closed = threading.Event()

    def answer_then_close(conn: socket.socket, server: ThreadServer) -> None:
        pending = bytearray()
        if server.read(conn, pending) is not None:
            conn.sendall(response(chat_body("ok")))
            conn.shutdown(socket.SHUT_RDWR)  # idle close, as a keep-alive timeout does
            closed.set()

    with thread_server(answer_then_close) as server:
        endpoint = OpenAIEndpoint(server.base_url, "m", max_retries=0, read_timeout=30.0)
        await endpoint.complete(ChatRequest.build("one"))
        assert closed.wait(10)
        time.sleep(0.2)  # the loop is blocked: the end of stream waits unread on the socket
        [completion] = await endpoint.complete(ChatRequest.build("two"))
        await endpoint.aclose()
    assert completion.content == "ok" and completion.retries == 0
    assert server.posts == 2 and server.connections == 2


@pytest.mark.parametrize(
    "settings",
    [
        {"headers": {"x-trace": "a\r\nX-Injected: 1"}},
        {"headers": {"x-trace": "a\nb"}},
        {"headers": {"bad\r\nname": "v"}},
        {"api_key": "sk-secret\r\nX-Injected: 1"},
    ],
)
def test_line_breaks_in_headers_or_key_are_refused(settings: dict[str, str]) -> None:
    with pytest.raises(InvalidRequestError) as failure:
        OpenAIEndpoint("http://127.0.0.1:9/v1", "m", **settings)  # type: ignore[arg-type]
    assert "sk-secret" not in str(failure.value)

"""Bodies of any size: Content-Length and chunked, 2 to 64 MiB, and a 4 MiB SSE event.

Before the httptools rewrite, any body over 1 MiB stalled until the read timeout. The memory
check holds the HTTP layer to one copy of the body.
"""

from __future__ import annotations

import json
import socket
import tracemalloc

import pytest
from http_servers import ThreadServer, chat_body, thread_server

from polyfuse import OpenAIEndpoint
from polyfuse.backends._http import LeanChannel, Timeouts
from polyfuse.messages import ChatRequest

MiB = 1 << 20
GENEROUS = Timeouts(connect=30.0, read=30.0, write=30.0)


def _serve_body(body: bytes, *, chunked: bool, content_type: bytes = b"application/json"):
    def handler(conn: socket.socket, server: ThreadServer) -> None:
        pending = bytearray()
        while server.read(conn, pending) is not None:
            if not chunked:
                head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                conn.sendall(head % (content_type, len(body)))
                conn.sendall(body)
                continue
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                % content_type
            )
            view = memoryview(body)
            for start in range(0, len(body), 3 * MiB + 17):  # chunks that straddle reads
                piece = view[start : start + 3 * MiB + 17]
                conn.sendall(b"%x\r\n" % len(piece))
                conn.sendall(piece)
                conn.sendall(b"\r\n")
            conn.sendall(b"0\r\n\r\n")

    return handler


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size_mib", [2, 16, 64])
async def test_large_body_arrives_whole_with_one_copy(size_mib: int, chunked: bool) -> None:
    body = bytes(range(256)) * (size_mib * MiB // 256)
    with thread_server(_serve_body(body, chunked=chunked)) as server:
        channel = LeanChannel(server.base_url + "/chat/completions", {}, GENEROUS)
        tracemalloc.start()
        try:
            reply = await channel.send(b"{}")
            received = await reply.read()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await channel.aclose()
    assert reply.status == 200
    assert received == body
    # One buffer for the body (a bytearray grows by 1/8 at a time), not two copies.
    assert peak < 1.5 * len(body), f"peak {peak / MiB:.1f} MiB for a {size_mib} MiB body"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_endpoint_reads_a_3_mib_completion(chunked: bool) -> None:
    content = "word " * (3 * MiB // 5)
    with thread_server(_serve_body(chat_body(content), chunked=chunked)) as server:
        endpoint = OpenAIEndpoint(server.base_url, "m", read_timeout=30.0, max_retries=0)
        [completion] = await endpoint.complete(ChatRequest.build("hi"))
        await endpoint.aclose()
    assert completion.content == content


async def test_sse_event_of_4_mib() -> None:
    content = "x" * (4 * MiB)
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": content}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    stream = (
        b"".join(b"data: %s\n\n" % json.dumps(e).encode() for e in events) + b"data: [DONE]\n\n"
    )
    handler = _serve_body(stream, chunked=True, content_type=b"text/event-stream")
    with thread_server(handler) as server:
        endpoint = OpenAIEndpoint(server.base_url, "m", read_timeout=30.0, max_retries=0)
        parts = [
            delta.content
            async for delta in endpoint.stream(ChatRequest.build("hi"))
            if delta.content
        ]
        await endpoint.aclose()
    assert "".join(parts) == content

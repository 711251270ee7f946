"""Resources are bounded before authentication: stalled bodies, slow or huge headers, idle
and surplus connections. Each limit is driven over raw sockets against a real server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from server_helpers import (
    RunningServer,
    parse_raw_response,
    raw_exchange,
    read_until_closed,
    wait_until,
)

from polyfuse.server import ServerSettings
from polyfuse.testing import FakeOpenAIServer

USER = [{"role": "user", "content": "hi"}]
BODY = json.dumps({"model": "fusion/fast", "messages": USER}).encode()


def chat_head(port: int, length: int, *, extra: str = "") -> bytes:
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def error_of(raw: bytes, status: int) -> dict[str, Any]:
    got, headers, body = parse_raw_response(raw)
    assert got == status, raw[:300]
    assert headers["content-type"] == "application/json"
    assert headers.get("connection") == "close"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def ok(server: RunningServer) -> bool:
    response = httpx.post(
        server.chat_url, json={"model": "fusion/fast", "messages": USER}, timeout=20
    )
    return response.status_code == 200


def test_stalled_bodies_get_408_and_never_hold_a_slot(
    make_server: Callable[..., RunningServer], fake: FakeOpenAIServer
) -> None:
    server = make_server(server={"max_concurrent_requests": 2, "body_timeout_s": 8})
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(4)]
    try:
        for sock in stalled:  # headers and half the body, then nothing
            sock.sendall(chat_head(server.port, len(BODY)) + BODY[: len(BODY) // 2])
        # Four stalled bodies and a limit of two slots: everyone else is still served ...
        assert ok(server)
        assert server.in_flight() == 0
        for sock in stalled:  # ... while the stalled ones are still waiting for their 408
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
            sock.setblocking(True)
            sock.settimeout(30)
        for sock in stalled:
            error = error_of(read_until_closed(sock), 408)
            assert error["code"] == "request_timeout"
            assert "body_timeout_s" in error["message"]
    finally:
        for sock in stalled:
            sock.close()
    assert server.in_flight() == 0
    metrics = httpx.get(server.root_url + "/metrics", timeout=5).text
    assert 'polyfuse_requests_total{model="-",status="408"} 4.0' in metrics
    assert ok(server)


def test_slow_headers_are_cut_off_with_408(make_server: Callable[..., RunningServer]) -> None:
    server = make_server(server={"header_timeout_s": 1})
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")  # never finished
        error = error_of(read_until_closed(sock), 408)
    assert error["code"] == "request_timeout" and "header_timeout_s" in error["message"]
    # A silent connection is closed too, and the server keeps serving.
    assert parse_raw_response(raw_exchange(server.port))[0] == 408
    assert httpx.get(server.root_url + "/health", timeout=5).status_code == 200


def test_trickled_headers_do_not_extend_the_deadline(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(server={"header_timeout_s": 1})
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        closed = False
        for _ in range(200):  # one header byte at a time, never the blank line
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            sock.settimeout(0.1)
            try:
                if sock.recv(65536):
                    closed = True
                    break
            except TimeoutError:
                continue
        assert closed, "the server kept a trickling connection open for 20 s"


@pytest.mark.parametrize("size", [5_000, 50_000, 300_000])
def test_oversized_headers_get_431(make_server: Callable[..., RunningServer], size: int) -> None:
    # 5 kB and 50 kB arrive in one read (a complete block); 300 kB in several.
    server = make_server(server={"max_header_bytes": 4096})
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    error = error_of(raw_exchange(server.port, head), 431)
    assert error["code"] == "headers_too_large" and "4096" in error["message"]
    big_but_allowed = {"x-pad": "b" * 2000}
    assert httpx.get(server.root_url + "/health", headers=big_but_allowed, timeout=5).is_success


def test_malformed_requests_get_an_openai_shaped_400(server: RunningServer) -> None:
    error = error_of(raw_exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n"), 400)
    assert error["code"] == "invalid_http"


def test_connections_beyond_the_limit_are_refused_with_503(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(server={"max_connections": 3, "header_timeout_s": 60})
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(3)]
    try:
        error = error_of(raw_exchange(server.port), 503)
        assert error["code"] == "too_many_connections"
        assert "max_connections" in error["message"]
    finally:
        for sock in held:
            sock.close()
    assert wait_until(lambda: httpx.get(server.root_url + "/health", timeout=5).status_code == 200)


def test_idle_keep_alive_connections_are_closed(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(server={"keep_alive_timeout_s": 0.5})
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        raw = read_until_closed(sock)  # returns only because the server closes the connection
    status, headers, _ = parse_raw_response(raw)
    assert status == 200 and headers.get("connection") != "close"


def test_limits_have_safe_defaults() -> None:
    settings = ServerSettings()
    assert settings.body_timeout_s == 30 and settings.header_timeout_s == 10
    assert settings.max_header_bytes == 16384 and settings.max_connections == 512
    assert settings.keep_alive_timeout_s == 5
    with pytest.raises(ValueError, match="max_header_bytes"):
        ServerSettings.from_table({"max_header_bytes": 10})


def test_headers_in_pieces_under_the_limit_are_served(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(server={"max_header_bytes": 1024, "keep_alive_timeout_s": 0.5})
    pieces = [
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        b"X-A: " + b"a" * 900 + b"\r",
        b"\n\r",
        b"\n",
    ]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        for piece in pieces:  # the blank line that ends the block is split across reads
            sock.sendall(piece)
            time.sleep(0.05)
        status, _, _ = parse_raw_response(read_until_closed(sock))
    assert status == 200

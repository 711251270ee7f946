"""Plain HTTP servers in threads on 127.0.0.1, written with the standard library's sockets.

They run outside the test's event loop, so a test can block its loop (``time.sleep``) while the
server acts, and count exactly what reached the server.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from typing import Any

Handler = Callable[[socket.socket, "ThreadServer"], None]


def chat_body(content: str) -> bytes:
    """A chat.completion answer with ``content``."""
    return json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()


def read_request(conn: socket.socket, pending: bytearray) -> bytes | None:
    """Read one request (head and Content-Length body) from ``conn``; None at end of stream."""
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    end = pending.index(b"\r\n\r\n") + 4
    head = bytes(pending[:end])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(pending) < end + length:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    request = bytes(pending[: end + length])
    del pending[: end + length]
    return request


def response(body: bytes, content_type: bytes = b"application/json") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        content_type,
        len(body),
        body,
    )


class ThreadServer:
    """Accepts connections in a thread; each is handed to ``handler(conn, server)`` in its own
    thread. ``posts`` counts requests read with :meth:`read`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.posts = 0
        self.connections = 0
        self.state: dict[str, Any] = {}
        self.lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def read(self, conn: socket.socket, pending: bytearray) -> bytes | None:
        request = read_request(conn, pending)
        if request is not None:
            with self.lock:
                self.posts += 1
        return request

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.handler(conn, self)
            except OSError:
                pass

    def start(self) -> None:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()

    def stop(self) -> None:
        self._closed = True
        self._listener.close()


@contextmanager
def thread_server(handler: Handler) -> Generator[ThreadServer, None, None]:
    server = ThreadServer(handler)
    server.start()
    try:
        yield server
    finally:
        server.stop()

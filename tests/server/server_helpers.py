"""Helpers for the server tests: run a polyfuse server on 127.0.0.1 in a thread."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx

from polyfuse.presets import load_config
from polyfuse.server import create_app
from polyfuse.server.protocol import protocol_for
from polyfuse.testing import serve


@dataclass(frozen=True)
class RunningServer:
    """A polyfuse server running in a thread."""

    root_url: str
    app: Any

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as base_url."""
        return self.root_url + "/v1"

    @property
    def chat_url(self) -> str:
        return self.root_url + "/v1/chat/completions"

    @property
    def port(self) -> int:
        return int(self.root_url.rsplit(":", 1)[1])

    def in_flight(self) -> int:
        return int(httpx.get(self.root_url + "/health", timeout=5).json()["in_flight"])


def presets_for(fake_url: str, **overrides: Any) -> dict[str, Any]:
    """The test presets: endpoints on the fake server, a fusion preset and a vote preset."""
    config: dict[str, Any] = {
        "endpoints": {
            "fake": {
                "base_url": fake_url,
                "model": "fake-model",
                "max_retries": 0,
                "supports_n": True,
            },
            "fusor": {"base_url": fake_url, "model": "fusor-model", "max_retries": 0},
        },
        "presets": {
            "fast": {"pool": ["fake"], "n": 3, "fusor": "fusor"},
            "vote": {"pool": ["fake"], "n": 3, "strategy": "vote", "vote_extract": "exact"},
        },
        "server": {},
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value}
    return config


@contextlib.contextmanager
def running(config: dict[str, Any]) -> Generator[RunningServer, None, None]:
    """Serve ``create_app(config)`` with uvicorn (lifespan on) in a daemon thread."""
    app = create_app(load_config(config))
    # The same guarded protocol (connection, header-size and header-time limits) as
    # `polyfuse serve` runs with.
    protocol: Any = protocol_for(app.state.settings)
    with serve(app, lifespan="on", http=protocol) as served:
        yield RunningServer(root_url=f"http://127.0.0.1:{served.port}", app=app)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


LEAKY_DETAILS = "db password hunter2 at internal host 10.1.2.3:5432"


class EchoingUpstream:
    """An upstream in front of a fake OpenAI server that leaks like some proxies do.

    For the models in ``fail`` it answers the given status with an error body that quotes
    the request's ``Authorization`` header and internal details (``LEAKY_DETAILS``). Models in
    ``fail_mid_stream`` stream one chunk, then an error event quoting the header. Models in
    ``stream_pieces`` stream exactly those content pieces (one chunk each). Requests
    with ``n`` > 1 are refused with 400, quoting the header, when ``refuse_n`` is set. All
    other requests go to ``inner``.
    """

    def __init__(
        self,
        inner: Any,
        *,
        fail: dict[str, int] | None = None,
        fail_mid_stream: frozenset[str] = frozenset(),
        refuse_n: bool = False,
        stream_pieces: dict[str, list[str]] | None = None,
    ) -> None:
        self.inner = inner
        self.fail = dict(fail or {})
        self.fail_mid_stream = fail_mid_stream
        self.stream_pieces = dict(stream_pieces or {})
        self.refuse_n = refuse_n
        self.echoed: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.inner(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        body = json.loads(raw)
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        leak = f"key {auth} is invalid; {LEAKY_DETAILS}"
        model = body.get("model")
        status = self.fail.get(model)
        if status is None and self.refuse_n and (body.get("n") or 1) > 1:
            status = 400
        if status is not None:
            self.echoed.append(auth)
            payload = json.dumps({"error": {"message": leak, "type": "x"}}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        if model in self.stream_pieces and body.get("stream"):
            await _stream(send, model, self.stream_pieces[model])
            return
        if model in self.fail_mid_stream and body.get("stream"):
            self.echoed.append(auth)
            chunk = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": "Partial "}, "finish_reason": None}],
            }
            events = (
                b"data: " + json.dumps(chunk).encode() + b"\n\n"
                b"data: " + json.dumps({"error": {"message": leak}}).encode() + b"\n\n"
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            await send({"type": "http.response.body", "body": events})
            return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await self.inner(scope, replay, send)


async def _stream(send: Any, model: str, pieces: list[str]) -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": model}
        return b"data: " + json.dumps({**body, "choices": [choice]}).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in pieces]
    events += [chunk({}, "stop"), b"data: [DONE]\n\n"]
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"".join(events)})


def raw_exchange(port: int, data: bytes = b"", *, timeout: float = 20.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if data:
            try:
                sock.sendall(data)
            except OSError:  # the server may close before everything is sent (a limit)
                pass
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the timeout)."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def parse_raw_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-cased names) and body of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body

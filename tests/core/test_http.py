"""The lean HTTP/1.1 channel of OpenAIEndpoint, against scripted servers on real loopback sockets.

Each test runs an ``asyncio`` server that answers with exact bytes, so framing, keep-alive and
failure paths are checked on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from polyfuse.backends._http import (
    HttpxChannel,
    LeanChannel,
    Timeouts,
    TransportError,
    lean_allowed,
    open_channel,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
FAST = Timeouts(connect=2.0, read=2.0, write=2.0)


class Scripted:
    """A loopback server: counts connections, records requests, hands each to ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Read one request; return its head and its Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@pytest.fixture
async def channels() -> AsyncIterator[Callable[..., LeanChannel]]:
    made: list[LeanChannel] = []

    def build(url: str, timeouts: Timeouts = FAST) -> LeanChannel:
        channel = LeanChannel(url, {"authorization": "Bearer k", "x-test": "1"}, timeouts)
        made.append(channel)
        return channel

    yield build
    for channel in made:
        await channel.aclose()


async def post(channel: LeanChannel, body: bytes = b"{}") -> tuple[int, bytes | bytearray]:
    reply = await channel.send(body)
    return reply.status, await reply.read()


async def test_request_bytes_and_keep_alive(channels: Callable[..., LeanChannel]) -> None:
    heads: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, body = await read_request(reader)
            heads.append(head)
            writer.write(ok(b"echo:" + body))

    scripted = Scripted(echo)
    async with scripted as url:
        channel = channels(url)
        for i in range(5):
            assert await post(channel, b"n%d" % i) == (200, b"echo:n%d" % i)
    assert scripted.connections == 1
    lines = heads[0].split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert lines[1].startswith(b"Host: 127.0.0.1:")
    assert b"authorization: Bearer k" in lines and b"Content-Length: 2" in lines


async def test_chunked_lines_with_trailers(channels: Callable[..., LeanChannel]) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"9;ext=1\r\ndata: a\r\n\r\n4\r\ndata\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"6\r\n: b\n\nh\r\n0\r\nX-Trailer: t\r\n\r\n")
        await read_request(reader)  # the connection is reused afterwards
        writer.write(ok(b"again"))

    scripted = Scripted(chunked)
    async with scripted as url:
        channel = channels(url)
        reply = await channel.send(b"{}")
        assert reply.header("TRANSFER-ENCODING") == "chunked"
        lines = [line async for line in reply.lines()]
        await reply.aclose()
        assert lines == ["data: a", "data: b", "", "h"]
        assert await post(channel) == (200, b"again")
    assert scripted.connections == 1


async def test_connection_close_is_honoured(channels: Callable[..., LeanChannel]) -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"bye", b"Connection: close\r\n"))
        await writer.drain()

    scripted = Scripted(closing)
    async with scripted as url:
        channel = channels(url)
        for _ in range(3):
            assert await post(channel) == (200, b"bye")
    assert scripted.connections == 3


async def test_http10_body_until_close(channels: Callable[..., LeanChannel]) -> None:
    async def old(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await writer.drain()

    async with Scripted(old) as url:
        assert await post(channels(url)) == (200, b"all of it")


async def test_interim_response_is_skipped(channels: Callable[..., LeanChannel]) -> None:
    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final", b"Retry-After: 3\r\n"))

    async with Scripted(interim) as url:
        reply = await channels(url).send(b"{}")
        assert (reply.status, reply.header("retry-after")) == (200, "3")
        assert await reply.read() == b"final"


async def test_stale_keep_alive_connection_is_replaced(
    channels: Callable[..., LeanChannel],
) -> None:
    async def one_shot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"served"))  # keep-alive promised, then the server closes it
        await writer.drain()

    scripted = Scripted(one_shot)
    async with scripted as url:
        channel = channels(url)
        assert await post(channel) == (200, b"served")
        await asyncio.sleep(0.05)  # the close reaches the idle pooled connection
        assert await post(channel) == (200, b"served")
    assert scripted.connections == 2


async def test_close_mid_body_is_a_protocol_error(channels: Callable[..., LeanChannel]) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async with Scripted(truncated) as url:
        with pytest.raises(TransportError) as failure:
            await post(channels(url))
        assert failure.value.kind == "RemoteProtocolError" and not failure.value.timeout


async def test_no_response_is_a_protocol_error(channels: Callable[..., LeanChannel]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with Scripted(silent) as url:
        with pytest.raises(TransportError) as failure:
            await post(channels(url))
        assert failure.value.kind == "RemoteProtocolError" and not failure.value.timeout


async def test_malformed_status_line(channels: Callable[..., LeanChannel]) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async with Scripted(garbage) as url:
        with pytest.raises(TransportError, match="malformed response"):
            await post(channels(url))


async def test_read_timeout(channels: Callable[..., LeanChannel]) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with Scripted(slow) as url:
        with pytest.raises(TransportError) as failure:
            await post(channels(url, Timeouts(connect=1.0, read=0.1, write=1.0)))
        assert failure.value.kind == "ReadTimeout" and failure.value.timeout


async def test_connection_refused(channels: Callable[..., LeanChannel]) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(TransportError) as failure:
        await post(channels(f"http://127.0.0.1:{port}/v1/chat/completions"))
    assert failure.value.kind == "ConnectError"


async def test_abandoned_stream_closes_the_connection(
    channels: Callable[..., LeanChannel],
) -> None:
    left = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"5\r\ndata\n\r\n")
            await writer.drain()
            try:
                if not await asyncio.wait_for(reader.read(1), 0.01):
                    break  # end of stream: the client closed the connection
            except asyncio.TimeoutError:
                continue
        left.set()

    async with Scripted(endless) as url:
        reply = await channels(url).send(b"{}")
        async for _ in reply.lines():
            break
        await reply.aclose()
        await asyncio.wait_for(left.wait(), 2.0)


def test_environment_proxy_selects_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    url = "http://llm.example:8000/v1/chat/completions"
    assert lean_allowed(url)
    assert isinstance(open_channel(url, {}, FAST, 4), LeanChannel)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert not lean_allowed(url)
    assert isinstance(open_channel(url, {}, FAST, 4), HttpxChannel)
    assert lean_allowed("https://llm.example/v1/chat/completions")
    monkeypatch.setenv("NO_PROXY", "llm.example")
    assert lean_allowed(url)


async def test_httpx_channel_same_interface() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 429 Too Many\r\nRetry-After: 2\r\nContent-Length: 4\r\n\r\nslow")

    async with Scripted(chunked) as url:
        channel = HttpxChannel(url, {"x-test": "1"}, FAST, 4)
        try:
            reply = await channel.send(b"{}")
            assert (reply.status, reply.header("retry-after")) == (429, "2")
            assert await reply.read() == b"slow"
            await reply.aclose()
        finally:
            await channel.aclose()


async def test_httpx_channel_translates_errors() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    channel = HttpxChannel(f"http://127.0.0.1:{port}/v1/chat/completions", {}, FAST, 4)
    try:
        with pytest.raises(TransportError) as failure:
            await channel.send(b"{}")
        assert failure.value.kind == "ConnectError"
    finally:
        await channel.aclose()


async def test_query_string_and_default_port_in_request_head() -> None:
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        heads.append(head)
        writer.write(ok(b"{}"))

    async with Scripted(record) as url:
        channel = LeanChannel(url + "?api-version=1", {}, FAST)
        try:
            assert (await channel.send(b"{}")).status == 200
        finally:
            await channel.aclose()
    assert heads[0].startswith(b"POST /v1/chat/completions?api-version=1 HTTP/1.1\r\n")


def test_importing_polyfuse_does_not_import_httpx() -> None:
    import subprocess
    import sys

    code = "import sys, polyfuse; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


async def test_stream_stopped_at_done_keeps_the_connection(
    channels: Callable[..., LeanChannel],
) -> None:
    async def sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            event = b"data: [DONE]\n\n"
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"%x\r\n%b\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(0.02)  # the terminating chunk comes after the reader stopped
            writer.write(b"0\r\n\r\n")

    scripted = Scripted(sse)
    async with scripted as url:
        channel = channels(url)
        for _ in range(3):
            reply = await channel.send(b"{}")
            async for line in reply.lines():
                if line == "data: [DONE]":
                    break  # as OpenAIEndpoint does
            await asyncio.sleep(0.06)  # the terminating chunk has arrived meanwhile
            await reply.aclose()
    assert scripted.connections == 1


@pytest.mark.parametrize("size_line", [b"-5", b"0x5", b"5_0", b" 5", b"+5"])
async def test_malformed_chunk_size_is_refused(
    channels: Callable[..., LeanChannel], size_line: bytes
) -> None:
    """``int(x, 16)`` accepted these; llhttp refuses them."""

    async def bad_chunk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(size_line + b"\r\nhello\r\n0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)

    async with Scripted(bad_chunk) as url:
        reply = await channels(url).send(b"{}")
        with pytest.raises(TransportError) as failure:
            await reply.read()
    assert failure.value.kind == "RemoteProtocolError"


async def test_conflicting_content_lengths_are_refused(
    channels: Callable[..., LeanChannel],
) -> None:
    async def two_lengths(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        await asyncio.sleep(0.5)

    async with Scripted(two_lengths) as url:
        with pytest.raises(TransportError) as failure:
            reply = await channels(url).send(b"{}")
            await reply.read()
    assert failure.value.kind == "RemoteProtocolError"

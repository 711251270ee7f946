"""The lean HTTP/1.1 transport under httpx, against scripted servers on real loopback sockets.

Each test runs an ``asyncio`` server that answers with exact bytes, so framing, keep-alive and
failure paths are checked on the wire, not through a mock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from polyfuse.backends._transport import FastTransport, fast_transport_allowed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    """A loopback server: counts connections, hands each one to ``handler``."""

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
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one request (head and Content-Length body); return its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=FastTransport(), timeout=2.0) as c:
        yield c


async def test_keep_alive_reuses_one_connection(client: httpx.AsyncClient) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await read_request(reader)
            writer.write(ok(b"echo:" + body))

    scripted = Scripted(echo)
    async with scripted as url:
        for i in range(5):
            response = await client.post(url + "/x", content=b"n%d" % i)
            assert response.status_code == 200
            assert response.content == b"echo:n%d" % i
    assert scripted.connections == 1


async def test_chunked_body_with_trailers(client: httpx.AsyncClient) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"5;ext=1\r\nhello\r\n1\r\n \r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
        await read_request(reader)  # the connection must be reusable afterwards
        writer.write(ok(b"again"))

    scripted = Scripted(chunked)
    async with scripted as url:
        async with client.stream("POST", url, content=b"{}") as response:
            pieces = [piece async for piece in response.aiter_bytes()]
        assert b"".join(pieces) == b"hello world"
        assert (await client.post(url, content=b"{}")).content == b"again"
    assert scripted.connections == 1


async def test_connection_close_is_honoured(client: httpx.AsyncClient) -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"bye", b"Connection: close\r\n"))
        await writer.drain()

    scripted = Scripted(closing)
    async with scripted as url:
        for _ in range(3):
            assert (await client.post(url, content=b"{}")).content == b"bye"
    assert scripted.connections == 3


async def test_http10_body_until_close(client: httpx.AsyncClient) -> None:
    async def old(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await writer.drain()

    async with Scripted(old) as url:
        assert (await client.post(url, content=b"{}")).content == b"all of it"


async def test_interim_100_response_is_skipped(client: httpx.AsyncClient) -> None:
    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final"))

    async with Scripted(interim) as url:
        response = await client.post(url, content=b"{}")
    assert (response.status_code, response.content) == (200, b"final")


async def test_stale_keep_alive_connection_is_replaced(client: httpx.AsyncClient) -> None:
    async def one_shot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"served"))  # keep-alive promised, then the server closes it
        await writer.drain()

    scripted = Scripted(one_shot)
    async with scripted as url:
        assert (await client.post(url, content=b"{}")).content == b"served"
        await asyncio.sleep(0.05)  # the close reaches the idle pooled connection
        assert (await client.post(url, content=b"{}")).content == b"served"
    assert scripted.connections == 2


async def test_close_mid_body_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async with Scripted(truncated) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"{}")


async def test_no_response_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with Scripted(silent) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"{}")


async def test_read_timeout() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with httpx.AsyncClient(transport=FastTransport(), timeout=0.1) as client:
        async with Scripted(slow) as url:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(url, content=b"{}")


async def test_connection_refused() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with httpx.AsyncClient(transport=FastTransport(), timeout=1.0) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://127.0.0.1:{port}/", content=b"{}")


async def test_abandoned_stream_closes_the_connection(client: httpx.AsyncClient) -> None:
    left = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"4\r\ndata\r\n")
            await writer.drain()
            if reader.at_eof() or writer.is_closing():
                break
            try:
                await asyncio.wait_for(reader.read(1), 0.01)
            except asyncio.TimeoutError:
                continue
            break
        left.set()

    async with Scripted(endless) as url:
        async with client.stream("POST", url, content=b"{}") as response:
            async for _ in response.aiter_bytes():
                break
        await asyncio.wait_for(left.wait(), 2.0)


def test_environment_proxy_selects_httpx_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert fast_transport_allowed("http://llm.example:8000/v1")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert not fast_transport_allowed("http://llm.example:8000/v1")
    assert fast_transport_allowed("https://llm.example/v1")
    monkeypatch.setenv("NO_PROXY", "llm.example")
    assert fast_transport_allowed("http://llm.example:8000/v1")

"""The CPU floor: HTTP/1.1 by hand over asyncio streams, with a keep-alive connection pool.

No HTTP library, no models, no validation: the request is a pre-built byte string with the
body appended, the response is read by ``Content-Length`` (or chunked, for streams) and decoded
with one ``json.loads``. Whatever a real client does on top of this is its overhead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .base import Contender

__all__ = ["RawHTTP", "RawNContender", "RawSocketContender"]


class RawHTTP:
    """A minimal keep-alive HTTP/1.1 client for one ``http://host:port/prefix`` base URL."""

    def __init__(self, base_url: str, api_key: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the raw client speaks plain http only, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        path = parts.path.rstrip("/") + "/chat/completions"
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {api_key}\r\n"
            "Content-Length: "
        ).encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.pop()
        return await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    async def _send(self, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict]:
        reader, writer = await self._connection()
        writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
        return reader, writer, headers

    async def post(self, body: bytes) -> Any:
        """POST a chat request; return the decoded JSON response."""
        reader, writer, headers = await self._send(body)
        if "content-length" in headers:
            payload = await reader.readexactly(int(headers["content-length"]))
        else:
            payload = b"".join([piece async for piece in self._chunks(reader)])
        self._release(reader, writer, headers)
        return json.loads(payload)

    async def stream(self, body: bytes, on_first_token: Callable[[], None]) -> str:
        """POST a streaming chat request; return the streamed text."""
        reader, writer, headers = await self._send(body)
        parts: list[str] = []
        buffer = b""
        async for piece in self._chunks(reader):
            buffer += piece
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                if not event.startswith(b"data: ") or event == b"data: [DONE]":
                    continue
                choices = json.loads(event[6:]).get("choices")
                text = choices[0]["delta"].get("content") if choices else None
                if text:
                    if not parts:
                        on_first_token()
                    parts.append(text)
        self._release(reader, writer, headers)
        return "".join(parts)

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> Any:
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return
            chunk = await reader.readexactly(size + 2)
            yield chunk[:-2]

    def _release(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict
    ) -> None:
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))

    def close(self) -> None:
        """Close every idle connection."""
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


class RawSocketContender(Contender):
    """N raw requests in ``asyncio.gather``, then the fusor request."""

    name: ClassVar[str] = "raw"
    label: ClassVar[str] = "raw asyncio sockets (floor)"
    n_batched: ClassVar[bool] = False

    async def open(self) -> None:
        w = self.workload
        self.clients: dict[str, RawHTTP] = {}
        for url in (*w.candidate_urls, w.fusor_url):
            if url not in self.clients:
                self.clients[url] = RawHTTP(url, w.api_key)
        head = {"model": w.model, "temperature": w.temperature, "max_tokens": w.max_tokens}
        messages = [{"role": "user", "content": w.prompt}]
        self.candidate_body = json.dumps({**head, "messages": messages}).encode()
        self.batched_body = json.dumps({**head, "n": w.n, "messages": messages}).encode()

    async def _candidates(self) -> list[str]:
        w = self.workload
        if self.n_batched:
            data = await self.clients[w.candidate_urls[0]].post(self.batched_body)
            return [c["message"]["content"] or "" for c in data["choices"]]
        replies = await asyncio.gather(
            *(self.clients[url].post(self.candidate_body) for url in w.candidate_urls)
        )
        return [r["choices"][0]["message"]["content"] or "" for r in replies]

    def _fusor_body(self, drafts: list[str], stream: bool) -> bytes:
        w = self.workload
        body: dict[str, Any] = {"model": w.model, "max_tokens": w.max_tokens}
        if stream:
            body["stream"] = True
        body["messages"] = w.fusor_messages(drafts)
        return json.dumps(body).encode()

    async def fuse(self) -> str:
        drafts = await self._candidates()
        data = await self.clients[self.workload.fusor_url].post(self._fusor_body(drafts, False))
        return data["choices"][0]["message"]["content"] or ""

    async def fuse_stream(self, on_first_token: Callable[[], None]) -> str:
        drafts = await self._candidates()
        client = self.clients[self.workload.fusor_url]
        return await client.stream(self._fusor_body(drafts, True), on_first_token)

    async def aclose(self) -> None:
        for client in self.clients.values():
            client.close()


class RawNContender(RawSocketContender):
    """The same floor with one ``n=N`` request for the candidates."""

    name: ClassVar[str] = "raw-n"
    label: ClassVar[str] = "raw asyncio sockets, n=N (floor)"
    n_batched: ClassVar[bool] = True

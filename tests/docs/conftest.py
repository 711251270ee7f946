"""One fake OpenAI-compatible server (plus an embeddings route) for every documentation page."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polyfuse.testing import FakeOpenAIServer, FakeReply, default_responder, serve

sys.path.insert(0, str(Path(__file__).resolve().parent))

EMBEDDING_DIM = 64


def embed(text: str) -> list[float]:
    """A deterministic bag-of-words vector: texts sharing words are close."""
    vector = [0.0] * EMBEDDING_DIM
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
        vector[int.from_bytes(digest, "little") % EMBEDDING_DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _system(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    first = messages[0] if messages and isinstance(messages[0], dict) else {}
    return str(first.get("content") or "") if first.get("role") == "system" else ""


def docs_responder(body: dict[str, Any], index: int) -> FakeReply | str:
    """The fake's default replies, plus what a real model does for polyfuse's own judge and
    selector prompts (a score line; a response number), so pages can show Best-of-N,
    preference pairs and USC."""
    system = _system(body)
    if "Score: N" in system:
        last = str((body.get("messages") or [{}])[-1].get("content") or "")
        return f"A fair answer.\nScore: {3 + len(last) % 7}"
    if "most consistent" in system:
        return "The most consistent response is Response 1"
    return default_responder(body, index)


class DocsServer:
    """The fake chat server, plus ``/v1/embeddings`` for the pages' vector indexes."""

    def __init__(self) -> None:
        self.fake = FakeOpenAIServer(responder=docs_responder)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in ("/v1/embeddings", "/embeddings"):
            await self._embeddings(receive, send)
            return
        await self.fake(scope, receive, send)

    async def _embeddings(self, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": embed(str(text))}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(str(t).split()) for t in inputs)
        payload = json.dumps(
            {
                "object": "list",
                "data": data,
                "model": request.get("model", "fake-embed"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        ).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="session")
def docs_server_url() -> Iterator[str]:
    """Base URL of the shared docs server (``http://127.0.0.1:PORT/v1``)."""
    with serve(DocsServer()) as served:
        yield served.base_url


@pytest.fixture
def docs_env(tmp_path: Path) -> dict[str, str]:
    """The environment the pages' commands and blocks run in."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        POLYFUSE_API_KEY="unused",
        OPENAI_API_KEY="unused",
        COLUMNS="100",
        NO_COLOR="1",
        TERM="dumb",
        HOME=env.get("HOME", str(tmp_path)),
        PYTHONUNBUFFERED="1",
    )
    return env

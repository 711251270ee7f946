"""The OpenAI-compatible and local-model embedders, against real servers on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from routing_helpers import planted_records

from polyfuse.cli.app import run
from polyfuse.errors import (
    AuthenticationError,
    InvalidRequestError,
    ProtocolError,
    RateLimitError,
    ServerError,
)
from polyfuse.routing import LocalModelEmbedder, OpenAIEmbedder, load_router, write_routing_log
from polyfuse.testing import serve
from polyfuse.transport import MockTransport, Request, Response


class EmbeddingServer:
    """A minimal /v1/embeddings app: a text's vector is its length and vowel count."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_next: int | None = None
        self.failures: list[int] = []  # statuses for the next requests, in order
        self.api_key: str | None = None  # when set, other bearer tokens get a 401
        self.per_token = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.loads(b"".join(chunks))
        self.bodies.append(body)
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        if self.api_key is not None and self.headers[-1].get("authorization") != (
            f"Bearer {self.api_key}"
        ):
            payload = {"error": {"message": "Incorrect API key provided"}}
            await self._send(send, 401, payload, [])
            return
        if self.fail_next is not None:
            self.failures.insert(0, self.fail_next)
            self.fail_next = None
        if self.failures:
            status = self.failures.pop(0)
            payload = {"error": {"message": "slow down"}}
            await self._send(send, status, payload, [(b"retry-after", b"0")])
            return
        data = []
        for i, text in enumerate(body["input"]):
            vector = [float(len(text)), float(sum(c in "aeiou" for c in text)) + 1.0]
            data.append({"index": i, "embedding": [vector] if self.per_token else vector})
        await self._send(send, 200, {"data": data[::-1]}, [])  # out of order on purpose

    @staticmethod
    async def _send(send: Any, status: int, payload: Any, extra: list[Any]) -> None:
        raw = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": raw})


@pytest.fixture
def server() -> Iterator[tuple[EmbeddingServer, str]]:
    app = EmbeddingServer()
    with serve(app) as served:
        yield app, served.base_url


async def test_openai_embedder_batches_orders_normalises_and_retries(
    server: tuple[EmbeddingServer, str],
) -> None:
    app, url = server
    embedder = OpenAIEmbedder(url, "emb", api_key="sk-secret", batch_size=2, max_retries=1)
    assert embedder.id == f"openai:{url}:emb" and "sk-secret" not in repr(embedder)
    app.fail_next = 429
    vectors = await embedder.aembed(["aa", "bbbb", "ccccc"])
    assert vectors.shape == (3, 2) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    expected = np.array([2.0, 3.0]) / np.linalg.norm([2.0, 3.0])
    np.testing.assert_allclose(vectors[0], expected, rtol=1e-6)
    assert [b["input"] for b in app.bodies] == [["aa", "bbbb"], ["aa", "bbbb"], ["ccccc"]]
    assert app.headers[0]["authorization"] == "Bearer sk-secret"
    app.fail_next = 429
    with pytest.raises(RateLimitError):
        await OpenAIEmbedder(url, "emb", max_retries=0).aembed(["x"])
    app.per_token = True
    with pytest.raises(ProtocolError, match="pooling"):
        await embedder.aembed(["x"])
    await embedder.aclose()


async def test_openai_embedder_retries_5xx_and_types_errors_like_other_callers(
    server: tuple[EmbeddingServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    app, url = server
    embedder = OpenAIEmbedder(url, "emb", max_retries=2)
    caplog.set_level(logging.INFO, logger="polyfuse")
    app.failures = [503]  # one 5xx, then the answer: retried once, logged as retry 1/2
    assert (await embedder.aembed(["aa"])).shape == (1, 2)
    assert len(app.bodies) == 2
    assert "embeddings:emb: ServerError; retry 1/2" in caplog.text
    app.failures = [502, 503, 500]  # more 5xx than retries: the error counts the retries
    with pytest.raises(ServerError) as failed:
        await embedder.aembed(["aa"])
    assert failed.value.retries == 2 and failed.value.status_code == 500
    assert failed.value.endpoint == "embeddings:emb" and len(app.bodies) == 5
    await embedder.aclose()

    app.api_key = "sk-right"
    wrong = OpenAIEmbedder(url, "emb", api_key="sk-wrong-secret", max_retries=2)
    with pytest.raises(AuthenticationError) as denied:
        await wrong.aembed(["aa"])
    assert denied.value.status_code == 401 and denied.value.retries == 0
    assert len(app.bodies) == 6  # an auth error is not retried
    assert "sk-wrong-secret" not in str(denied.value) + caplog.text + repr(wrong)
    await wrong.aclose()
    right = OpenAIEmbedder(url, "emb", api_key="sk-right")
    assert (await right.aembed(["aa"])).shape == (1, 2)
    await right.aclose()


async def test_openai_embedder_sends_dimensions_through_a_given_transport() -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        n = len(request.json()["input"])
        return Response(
            200, json={"data": [{"index": i, "embedding": [3.0, 4.0]} for i in range(n)]}
        )

    embedder = OpenAIEmbedder(
        "http://test/v1/",
        "emb",
        dimensions=2,
        headers={"x-team": "a"},
        transport=MockTransport(handler),
    )
    assert embedder.id == "openai:http://test/v1:emb:2"
    vectors = await embedder.aembed(["a", "b", "c"])
    np.testing.assert_allclose(vectors, [[0.6, 0.8]] * 3, rtol=1e-6)
    assert seen[0].url == "http://test/v1/embeddings" and seen[0].headers["x-team"] == "a"
    assert seen[0].json() == {
        "model": "emb",
        "input": ["a", "b", "c"],
        "encoding_format": "float",
        "dimensions": 2,
    }
    assert (await embedder.aembed([])).shape == (0, 2) and len(seen) == 1


def test_embedder_settings_are_checked() -> None:
    with pytest.raises(InvalidRequestError, match="http"):
        OpenAIEmbedder("127.0.0.1:8000", "m")
    with pytest.raises(InvalidRequestError, match="dimensions"):
        OpenAIEmbedder("http://x/v1", "m", dimensions=0)
    with pytest.raises(InvalidRequestError, match="transport"):
        OpenAIEmbedder(
            "http://x/v1", "m", verify=False, transport=MockTransport(lambda _: Response(500))
        )
    with pytest.raises(InvalidRequestError, match="header"):
        OpenAIEmbedder("http://x/v1", "m", headers={"x-bad": "a\r\nb"})


@pytest.mark.local_model
async def test_the_embedded_model_embeds_queries() -> None:
    from polyfuse.local import LocalModel

    with LocalModel(slots=1, ctx_per_slot=512, embeddings=True, name="embed") as model:
        embedder = LocalModelEmbedder(model)
        vectors = await embedder.aembed(["What is 2 + 2?", "What is 3 + 3?", "Write a poem."])
        await embedder.aclose()
    assert embedder.id.startswith("local:") and vectors.shape[0] == 3
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # two sums are closer to each other than to a poem
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    with pytest.raises(InvalidRequestError, match="embeddings=True"):
        LocalModelEmbedder(LocalModel(slots=1, name="chat"))  # checked before it is started


def test_route_train_sends_the_embedding_key_from_the_environment(
    server: tuple[EmbeddingServer, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, url = server
    app.api_key = "sk-embed-right"
    logs = tmp_path / "train.jsonl"
    write_routing_log(logs, planted_records(8, seed=1), append=False)
    command = ["route", "train", str(logs), "--kind", "knn", "--validation", "0"]
    command += ["--embed-url", url, "--embed-model", "emb", "--cache", str(tmp_path / "c.db")]
    monkeypatch.setenv("POLYFUSE_EMBED_API_KEY", "sk-embed-wrong")
    assert run([*command, "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "Incorrect API key" in err and "sk-embed-wrong" not in err
    monkeypatch.setenv("POLYFUSE_EMBED_API_KEY", "sk-embed-right")
    assert run([*command, "--out", str(tmp_path / "routers")]) == 0, capsys.readouterr().err
    assert app.headers[-1]["authorization"] == "Bearer sk-embed-right"
    assert load_router(tmp_path / "routers" / "router-knn.npz").kind == "knn"
    monkeypatch.delenv("POLYFUSE_EMBED_API_KEY")
    assert run(["route", "train", str(logs), "--embed-api-key", "k", "--out", str(tmp_path)]) == 2
    assert "need --embed-url" in capsys.readouterr().err

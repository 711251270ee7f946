"""Helpers for the LlamaIndex tests: documents, a scripted RAG responder for the fake server,
a tiny embeddings route, an event recorder, and a LlamaIndex LLM built on the openai client."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import openai
from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback

from polyfuse.testing import schema_instance

DOCUMENTS = {
    "eiffel.txt": (
        "The Eiffel Tower was completed in 1889 for the World's Fair in Paris. "
        "It is 330 metres tall and made of wrought iron."
    ),
    "louvre.txt": (
        "The Louvre in Paris is the most visited museum in the world. "
        "It holds the Mona Lisa by Leonardo da Vinci."
    ),
    "everest.txt": (
        "Mount Everest is the highest mountain above sea level at 8849 metres. "
        "It lies on the border of Nepal and China."
    ),
    "bananas.txt": (
        "Bananas are botanically berries and grow on large herbaceous plants. "
        "They are rich in potassium."
    ),
    "nile.txt": (
        "The Nile is a river in north-eastern Africa that flows into the Mediterranean Sea. "
        "It is about 6650 kilometres long."
    ),
}

SOURCE = re.compile(r'<source id="(\d+)">\n(.*?)\n</source>', re.S)
DRAFT = re.compile(r'<draft id="\d+">\n(.*?)\n</draft>', re.S)
_WORD = re.compile(r"[a-z]{4,}")
_STOP = {"what", "when", "where", "which", "does", "that", "with", "from", "this", "there"}
UNSUPPORTED = "It is also made of cheese."


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content or ""


def first_sentence(text: str) -> str:
    """The first sentence of ``text``, with its full stop."""
    return text.strip().split(". ")[0].rstrip(".") + "."


def draft_answer(prompt: str, index: int) -> str:
    """A draft: the first sentence of each source sharing a word with the question, cited;
    odd-numbered drafts add a claim no source supports."""
    sources = SOURCE.findall(prompt)
    question = prompt.rsplit("Question:", 1)[-1].lower()
    words = set(_WORD.findall(question)) - _STOP
    texts = [(n, t.split("\n\n")[-1]) for n, t in sources]  # drop the metadata header
    hits = [(n, t) for n, t in texts if words & set(_WORD.findall(t.lower()))] or texts[:1]
    parts = [f"{first_sentence(t)[:-1]} [{n}]." for n, t in hits]
    if index % 2 == 1:
        parts.append(UNSUPPORTED)
    return " ".join(parts) or "The sources do not say."


def fuse_answer(prompt: str) -> str:
    """A fusor that keeps the drafts' sentences citing sources it was shown, drops the rest."""
    shown = {n for n, _ in SOURCE.findall(prompt)}
    kept: list[str] = []
    for draft in DRAFT.findall(prompt):
        for sentence in re.split(r"(?<=\.)\s+", draft.strip()):
            cites = re.findall(r"\[(\d+)\]", sentence)
            if cites and all(c in shown for c in cites) and sentence not in kept:
                kept.append(sentence)
    return " ".join(kept) or "The sources do not answer the question."


def is_fuse_request(body: dict[str, Any]) -> bool:
    """True for the fusor's request (the default fuse prompt's system message)."""
    messages = body.get("messages") or []
    return bool(messages) and "final editor" in _text(messages[0])


def rag_responder(body: dict[str, Any], index: int) -> str:
    """Drafts cite the sources they are shown; the fusor keeps supported, cited sentences."""
    prompt = _text(body["messages"][-1])
    if not is_fuse_request(body):
        return draft_answer(prompt, index)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        instance = schema_instance(response_format["json_schema"]["schema"])
        if "answer" in instance:
            instance["answer"] = fuse_answer(prompt)
        return json.dumps(instance)
    return fuse_answer(prompt)


# ---------------------------------------------------------------------------- embeddings route


def hashed_embedding(text: str, dims: int = 64) -> list[float]:
    """A deterministic bag-of-words vector (for testing the HTTP client, not retrieval)."""
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        vector[int(hashlib.sha1(word.encode()).hexdigest(), 16) % dims] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class EmbeddingsRoute:
    """An ASGI app serving ``POST /v1/embeddings`` with :func:`hashed_embedding`, and
    forwarding every other request to ``inner`` (a fake chat server).

    ``status`` makes the next ``failures`` embedding requests answer with that HTTP status.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = 500
        self.failures = 0
        self.shape = "ok"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in ("/v1/embeddings", "/embeddings"):
            await self.inner(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        self.requests.append(request)
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        if self.failures:
            self.failures -= 1
            await _send(send, self.status, {"error": {"message": "embedding backend down"}})
            return
        inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_embedding(text)}
            for i, text in enumerate(inputs)
        ]
        if self.shape == "short":
            data = data[:-1]
        data.reverse()  # servers may answer out of order; the client sorts by index
        await _send(send, 200, {"object": "list", "data": data, "model": request["model"]})


async def _send(send: Any, status: int, payload: dict[str, Any]) -> None:
    raw = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": raw})


# ---------------------------------------------------------------------------- instrumentation


class EventRecorder(BaseEventHandler):
    """Keeps every instrumentation event it sees."""

    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "EventRecorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """Record the event."""
        self.events.append(event)

    def names(self) -> list[str]:
        """The recorded events' class names, in order."""
        return [e.class_name() for e in self.events]

    def of(self, name: str) -> Sequence[BaseEvent]:
        """The recorded events of one class."""
        return [e for e in self.events if e.class_name() == name]


# ---------------------------------------------------------------------------- a third-party LLM


class OpenAIClientLLM(CustomLLM):
    """A minimal LlamaIndex LLM on the official ``openai`` client: stands for any LLM a user
    already has (the real test of :class:`LlamaIndexBackend` is that it needs nothing more)."""

    base_url: str
    model: str

    @property
    def metadata(self) -> LLMMetadata:
        """Metadata."""
        return LLMMetadata(context_window=2048, num_output=128, model_name=self.model)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """One chat completion for ``prompt``."""
        client = openai.OpenAI(base_url=self.base_url, api_key="test", max_retries=0)
        response = client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": prompt}], **kwargs
        )
        return CompletionResponse(text=response.choices[0].message.content or "", raw=response)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Stream one chat completion for ``prompt``."""
        client = openai.OpenAI(base_url=self.base_url, api_key="test", max_retries=0)
        stream = client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": prompt}], stream=True, **kwargs
        )

        def gen() -> CompletionResponseGen:
            text = ""
            for chunk in stream:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    text += delta
                    yield CompletionResponse(text=text, delta=delta)

        return gen()


def models_of(requests: Sequence[dict[str, Any]]) -> list[str]:
    """The ``model`` of each recorded request."""
    return [r.get("model", "") for r in requests]

"""The embedded model as a real backend: fusion, streaming, the OpenAI client, embeddings."""

from __future__ import annotations

import asyncio
import gc
import math
import weakref

import pytest
from local_helpers import busy_port, port_closed, process_gone
from openai import AsyncOpenAI

from polyfuse import (
    AggregationStarted,
    CandidateFinished,
    CandidateStarted,
    FusedToken,
    Fusion,
    FusionDone,
    MajorityVote,
    Pool,
)
from polyfuse.local import LocalModel, LocalModelError
from polyfuse.probe import probe_endpoint

pytestmark = pytest.mark.local_model

QUESTION = "Name one primary color."


def test_endpoint_defaults(local_model: LocalModel) -> None:
    endpoint = local_model.endpoint()
    assert endpoint.supports_n is False  # llama.cpp under-counts usage with n > 1
    assert endpoint.config.max_concurrency == local_model.slots
    assert endpoint.name == "local"
    assert endpoint.model == local_model.model == "smollm2-135m-instruct"
    assert endpoint.base_url == local_model.base_url
    assert local_model.base_url.startswith("http://127.0.0.1:")
    custom = local_model.endpoint(name="tiny", max_concurrency=2, supports_n=True)
    assert (custom.name, custom.config.max_concurrency, custom.supports_n) == ("tiny", 2, True)


async def test_fusion_streams_through_the_embedded_model(local_model: LocalModel) -> None:
    endpoint = local_model.endpoint()
    fusion = Fusion(Pool.repeat(endpoint, 3))
    events = [event async for event in fusion.astream(QUESTION, max_tokens=24, temperature=0.8)]
    await fusion.aclose()

    started = [e for e in events if isinstance(e, CandidateStarted)]
    finished = [e for e in events if isinstance(e, CandidateFinished)]
    tokens = [e.delta for e in events if isinstance(e, FusedToken)]
    assert len(started) == 3
    assert len(finished) == 3
    assert any(isinstance(e, AggregationStarted) for e in events)
    assert isinstance(events[-1], FusionDone)
    result = events[-1].result
    assert tokens and "".join(tokens) == result.content
    assert result.content.strip()
    assert result.aggregation.method == "fuse"
    # Fan-out (supports_n=False): one call per candidate, each with its own exact usage.
    assert result.usage.candidates.calls == 3
    assert result.usage.candidates.complete
    for candidate in result.candidates:
        assert candidate.ok
        assert candidate.model == local_model.model
        assert 0 < candidate.usage.completion_tokens <= 24
    if result.aggregation.selected is None:  # the fusor was called (no fallback)
        assert result.usage.aggregator.calls == 1
        assert result.usage.aggregator.prompt_tokens > result.usage.candidates.prompt_tokens / 3


def test_sync_fusion_with_a_selection_method(local_model: LocalModel) -> None:
    fusion = Fusion(Pool.repeat(local_model.endpoint(), 2), MajorityVote("exact"))
    result = fusion.run("Reply with the single word: yes", max_tokens=8, temperature=0.0)
    assert len(result.succeeded) == 2
    assert result.aggregation.selected in (0, 1)
    assert result.content == result.candidates[result.aggregation.selected].content


async def test_official_openai_client(local_model: LocalModel) -> None:
    client = AsyncOpenAI(base_url=local_model.base_url, api_key="unused")
    try:
        completion = await client.chat.completions.create(
            model=local_model.model,
            messages=[
                {"role": "system", "content": "Answer in one short sentence."},
                {"role": "user", "content": QUESTION},
            ],
            max_tokens=16,
        )
        stream = await client.chat.completions.create(
            model=local_model.model,
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    finally:
        await client.close()
    assert completion.model == local_model.model
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert chunks[-1].usage is not None and chunks[-1].choices == []


async def test_probe_reports_the_llama_cpp_profile(local_model: LocalModel) -> None:
    report = await probe_endpoint(local_model.endpoint(), max_tokens=8)
    assert report.n == "honoured"
    assert report.n_usage == "under-counted"  # the quirk LocalModel.endpoint() works around
    assert report.supports_n is False
    assert report.usage and report.streaming and report.stream_usage and report.stream_done
    assert report.served_model == local_model.model
    assert report.ttft_s is not None and report.ttft_s > 0


async def test_two_models_at_once_with_embeddings_then_stop_cleanly() -> None:
    chat = LocalModel(slots=1, ctx_per_slot=1024, name="chat")
    # 3 slots: llama.cpp's embedding mode used to abort unless slots was a power of two
    embed = LocalModel(slots=3, ctx_per_slot=512, name="embed", embeddings=True)
    await asyncio.gather(chat.astart(), embed.astart())
    try:
        assert chat.base_url != embed.base_url
        client = AsyncOpenAI(base_url=embed.base_url, api_key="unused")
        try:
            vectors = await client.embeddings.create(
                model=embed.model, input=["the sky is blue", "the sky is blue", "bananas"]
            )
            # a text gets the same vector alone as in a batch (slots > 1 used to mix them up)
            texts = [
                "What is the capital of France?",
                "Write a Python function that merges two sorted lists please.",
                "Explain quantum entanglement in simple words for a child.",
            ]
            batch = await client.embeddings.create(model=embed.model, input=texts)
            alone = [
                (await client.embeddings.create(model=embed.model, input=[text])).data[0]
                for text in texts
            ]
            answer = await client.chat.completions.create(
                model=embed.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
        finally:
            await client.close()
        first, second, third = (item.embedding for item in vectors.data)
        assert len(first) == 576  # SmolLM2-135M's hidden size
        assert math.isclose(math.fsum(x * x for x in first), 1.0, rel_tol=1e-3)  # L2-normalised
        assert math.isclose(
            math.fsum(a * b for a, b in zip(first, second, strict=True)), 1.0, rel_tol=1e-3
        )
        assert math.fsum(a * b for a, b in zip(first, third, strict=True)) < 0.999
        for batched, single in zip(batch.data, alone, strict=True):
            cosine = math.fsum(
                a * b for a, b in zip(batched.embedding, single.embedding, strict=True)
            )
            assert math.isclose(cosine, 1.0, rel_tol=1e-4)
        assert answer.choices[0].message.content  # chat still works in embedding mode
        pids = [chat.pid, embed.pid]
        urls = [chat.base_url, embed.base_url]
        assert all(pid is not None for pid in pids)
    finally:
        await asyncio.gather(chat.astop(), embed.astop())
    for pid, url in zip(pids, urls, strict=True):
        assert pid is not None and process_gone(pid)
        assert port_closed(url)
    chat.stop()  # idempotent
    assert not chat.running and chat.pid is None
    with pytest.raises(LocalModelError, match="not running"):
        chat.endpoint()


def test_start_is_idempotent(local_model: LocalModel) -> None:
    pid = local_model.pid
    assert local_model.start() is local_model
    assert local_model.pid == pid


def test_port_in_use_is_a_clear_error() -> None:
    with busy_port() as taken:
        port = taken.getsockname()[1]
        model = LocalModel(slots=1, ctx_per_slot=512, port=port)
        with pytest.raises(LocalModelError, match=f"cannot listen on 127.0.0.1:{port}"):
            model.start()
    assert not model.running and model.pid is None


def test_fixed_free_port_is_used() -> None:
    with busy_port() as probe:
        port = probe.getsockname()[1]
    with LocalModel(slots=1, ctx_per_slot=512, port=port) as model:
        assert model.base_url == f"http://127.0.0.1:{port}/v1"


def test_a_dropped_model_keeps_serving_until_stopped() -> None:
    """``LocalModel().start().endpoint()``: the server must outlive the unreferenced model."""
    model = LocalModel(slots=1, ctx_per_slot=512).start()
    endpoint = model.endpoint()
    alive = weakref.ref(model)
    del model
    gc.collect()
    running = alive()
    assert running is not None and running.running
    try:
        result = Fusion(Pool.repeat(endpoint, 1)).run("Hi", max_tokens=4)
        assert result.candidates[0].ok
    finally:
        running.stop()
    assert not running.running

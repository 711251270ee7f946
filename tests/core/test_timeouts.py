"""``timeout=``: one meaning everywhere (httpx's: seconds in total, or a Timeout-like object)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from polyfuse import (
    APITimeoutError,
    ChatRequest,
    Fusion,
    InvalidRequestError,
    OpenAIEndpoint,
    Pool,
    TimeoutLike,
)
from polyfuse.registry import PresetRegistry
from polyfuse.testing import FakeOpenAIServer, Fault, FunctionBackend
from polyfuse.timeouts import endpoint_timeouts

URL = "http://127.0.0.1:9/v1"


class Stalled:
    """Candidates that never answer; records that every one of them was cancelled."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0

    async def __call__(self, request: ChatRequest) -> str:
        if request.role != "candidate":
            return "fused"
        self.started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "never"


async def test_a_number_bounds_the_whole_fusion_and_cancels_the_calls() -> None:
    stalled = Stalled()
    fusion = Fusion(Pool.repeat(FunctionBackend(stalled), 3))
    with pytest.raises(APITimeoutError, match=r"within timeout=0.2s"):
        await fusion.arun("q", timeout=0.2)
    assert stalled.started == 3 and stalled.cancelled == 3


async def test_astream_and_the_sync_api_take_the_same_timeout() -> None:
    fusion = Fusion(Pool.repeat(FunctionBackend(Stalled()), 2))
    with pytest.raises(APITimeoutError):
        async for _ in fusion.astream("q", timeout=0.2):
            pass
    with pytest.raises(APITimeoutError):
        await asyncio.to_thread(fusion.run, "q", timeout=0.2)


async def test_a_fusion_within_its_timeout_is_unaffected() -> None:
    fusion = Fusion(Pool.repeat(FunctionBackend(lambda r: "ok"), 2))
    assert (await fusion.arun("q", timeout=60)).content == "ok"


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "10", True, httpx.Timeout(5.0)])
async def test_bad_fusion_timeouts_name_the_fix(bad: object) -> None:
    fusion = Fusion(Pool.repeat(FunctionBackend(lambda r: "ok"), 1))
    with pytest.raises(InvalidRequestError, match="timeout must be"):
        await fusion.arun("q", timeout=bad)  # type: ignore[arg-type]


def test_endpoint_meaning_number_is_a_total_object_sets_phases() -> None:
    assert endpoint_timeouts(None) == {}
    assert endpoint_timeouts(30) == {"total_timeout": 30.0}
    assert isinstance(httpx.Timeout(5.0), TimeoutLike)
    assert endpoint_timeouts(httpx.Timeout(5.0, read=60.0)) == {
        "connect_timeout": 5.0,
        "read_timeout": 60.0,
    }
    assert endpoint_timeouts(httpx.Timeout(None)) == {"read_timeout": None}
    with pytest.raises(InvalidRequestError, match=r"timeout.connect must be > 0"):
        endpoint_timeouts(httpx.Timeout(5.0, connect=0))


def test_chatfusion_timeout_configures_its_endpoints() -> None:
    from langchain_polyfuse import ChatFusion

    total = ChatFusion(base_url=URL, model="m", timeout=7)
    endpoint = total.spec.fusor_backend
    assert isinstance(endpoint, OpenAIEndpoint) and endpoint.config.total_timeout == 7
    phases = ChatFusion(base_url=URL, model="m2", timeout=httpx.Timeout(3.0, read=45.0))
    endpoint = phases.spec.fusor_backend
    assert isinstance(endpoint, OpenAIEndpoint)
    assert (endpoint.config.connect_timeout, endpoint.config.read_timeout) == (3.0, 45.0)
    aliased = ChatFusion(base_url=URL, model="m3", request_timeout=9)
    assert aliased.timeout == 9
    with pytest.raises(InvalidRequestError, match="timeout must be > 0"):
        ChatFusion(base_url=URL, model="m4", timeout=0)


def test_presets_timeout_is_the_same_meaning(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        f'[endpoints.total]\nbase_url = "{URL}"\nmodel = "a"\ntimeout = 12\n'
        f'[endpoints.phases]\nbase_url = "{URL}"\nmodel = "b"\n'
        "timeout = { connect = 2, read = 50 }\n"
        f'[endpoints.specific]\nbase_url = "{URL}"\nmodel = "c"\nread_timeout = 40\n'
        '[presets.p]\npool = ["total", "phases", "specific"]\n'
    )
    registry = PresetRegistry.from_file(path)
    configs = {
        name: registry.backend(name).config  # type: ignore[attr-defined]
        for name in ("total", "phases", "specific")
    }
    assert configs["total"].total_timeout == 12
    assert (configs["phases"].connect_timeout, configs["phases"].read_timeout) == (2, 50)
    assert configs["specific"].read_timeout == 40 and configs["specific"].total_timeout is None


async def test_fusionllm_timeout_bounds_each_call() -> None:
    from llama_index.llms.polyfuse import FusionLLM

    llm = FusionLLM(Fusion(Pool.repeat(FunctionBackend(Stalled()), 2)), timeout=0.2)
    with pytest.raises(APITimeoutError):
        await llm.acomplete("q")
    quick = FusionLLM(Fusion(Pool.repeat(FunctionBackend(lambda r: "ok"), 2)), timeout=0.2)
    assert (await quick.acomplete("q", timeout=30)).text == "ok"


async def test_a_fusion_timeout_cancels_http_calls_too(
    fake: FakeOpenAIServer, fake_url: str
) -> None:
    fake.inject(Fault("slow_first_byte", delay_s=60, times=3))
    endpoint = OpenAIEndpoint(fake_url, "m", supports_n=False)
    try:
        with pytest.raises(APITimeoutError, match="fusion did not finish"):
            await Fusion(Pool.repeat(endpoint, 3)).arun("q", timeout=0.5)
    finally:
        await endpoint.aclose()

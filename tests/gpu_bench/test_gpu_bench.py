"""The GPU benchmark's drivers, contenders and report, run against the fake server on loopback.

The GPU itself is not needed: these check that every contender makes the calls it claims,
that the load driver counts what finished inside its window, that ``n`` handling is reported
as the server behaves, and that the report renders what a run wrote.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from benchmarks.gpu.contenders import (
    DirectCall,
    DirectMix,
    LangChainFusion,
    LlamaIndexFusion,
    PolyfuseFusion,
    Setting,
    capture_fusor_messages,
    in_flight,
)
from benchmarks.gpu.gpumon import GpuMonitor
from benchmarks.gpu.load import closed_loop, series
from benchmarks.gpu.nbatch import measure_n_vs_separate, random_prompt
from benchmarks.gpu.report import tables, write_report
from benchmarks.gpu.run import Plan, _add_fraction
from benchmarks.gpu.server import ServerSettings

from polyfuse.testing import FakeOpenAIServer, LatencyModel

MAX_TOKENS = 8


@pytest.fixture
def paced(make_fake: Callable[..., FakeOpenAIServer]) -> FakeOpenAIServer:
    """A fake server that takes ~40 ms per call and always answers MAX_TOKENS tokens."""
    return make_fake(
        n_mode="ignore",
        record=False,
        latency=LatencyModel(ttft_s=0.02, tokens_per_s=400, output_tokens=MAX_TOKENS),
    )


def _setting(url: str, **kwargs: Any) -> Setting:
    return Setting(base_url=url, model="fake-model", max_tokens=MAX_TOKENS, **kwargs)


async def test_direct_call_reports_usage_and_streams(paced: FakeOpenAIServer, fake_url: str):
    direct = DirectCall(_setting(fake_url, max_in_flight=2))
    await direct.open()
    try:
        plain = await direct.run()
        streamed = await direct.run_stream()
    finally:
        await direct.aclose()
    assert (plain.calls, plain.completion_tokens) == (1, MAX_TOKENS)
    assert streamed.completion_tokens == MAX_TOKENS
    assert streamed.ttft_s is not None and streamed.ttft_s > 0


async def test_closed_loop_counts_units_in_the_window(paced: FakeOpenAIServer, fake_url: str):
    direct = DirectCall(_setting(fake_url, max_in_flight=4))
    await direct.open()
    try:
        result = await closed_loop(direct.run, workers=4, window_s=0.6, drain_s=0.0)
    finally:
        await direct.aclose()
    assert result.errors == 0
    assert result.units > 0
    assert result.calls_per_s == pytest.approx(result.units_per_s)
    assert result.completion_tokens_per_s == pytest.approx(result.units_per_s * MAX_TOKENS)
    assert result.littles_law_units_per_s is not None
    assert result.oldest_in_flight_s is not None and result.oldest_in_flight_s >= 0


async def test_closed_loop_stops_on_repeated_errors(fake_url: str, fake: FakeOpenAIServer):
    direct = DirectCall(Setting(base_url=fake_url.replace("/v1", "/nowhere"), model="m"))
    await direct.open()
    try:
        result = await closed_loop(direct.run, workers=2, window_s=30.0, drain_s=0.0, max_errors=3)
    finally:
        await direct.aclose()
    assert result.units == 0
    assert result.errors >= 3
    assert "404" in result.error_samples[0]
    assert result.window_s < 30.0


@pytest.mark.parametrize("contender", [PolyfuseFusion, LangChainFusion, LlamaIndexFusion])
async def test_fusions_make_n_plus_one_calls(
    paced: FakeOpenAIServer, fake_url: str, contender: type[PolyfuseFusion]
):
    unit = contender(_setting(fake_url, n=3, max_in_flight=8))
    await unit.open()
    try:
        outcome = await unit.run()
        streamed = await unit.run_stream()
    finally:
        await unit.aclose()
    assert outcome.calls == 4
    assert outcome.completion_tokens == 4 * MAX_TOKENS
    assert streamed.ttft_s is not None
    assert streamed.completion_tokens == 4 * MAX_TOKENS


async def test_polyfuse_stream_splits_the_critical_path(paced: FakeOpenAIServer, fake_url: str):
    unit = PolyfuseFusion(_setting(fake_url, n=3))
    await unit.open()
    try:
        result = await series(unit.run_stream, count=2)
    finally:
        await unit.aclose()
    assert result.count == 2 and not result.errors
    for outcome in result.outcomes:
        assert outcome["slowest_candidate_s"] > 0
        assert outcome["fusor_ttft_s"] > 0
        assert outcome["fusor_prompt_tokens"] > 0
        assert outcome["ttft_s"] >= outcome["slowest_candidate_s"]


async def test_n_vs_separate_reports_ignored_n(paced: FakeOpenAIServer, fake_url: str):
    row = await measure_n_vs_separate(fake_url, "fake-model", n=3, prompt_words=20, trials=2)
    assert row["choices_returned_for_n"] == [1, 1]
    assert set(row["median_s"]) == {"one", "n_same", "n_distinct", "one_with_n"}
    assert row["prompt_tokens"] > 0


async def test_n_vs_separate_sees_honoured_n(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
):
    make_fake(n_mode="honour", record=False)
    row = await measure_n_vs_separate(fake_url, "fake-model", n=3, prompt_words=20, trials=1)
    assert row["choices_returned_for_n"] == [3]


def test_random_prompts_differ_by_seed_only():
    assert random_prompt(50, 1) == random_prompt(50, 1)
    assert random_prompt(50, 1) != random_prompt(50, 2)
    assert len(random_prompt(50, 1).split()) == 50


def test_fusion_workers_fill_the_cap():
    plan = Plan()
    for n in (3, 5):
        workers = plan.fusion_workers(n, 64)
        assert workers * (n + 1) / 2 >= 64  # average demand of the calls covers the cap
    assert Plan(demand_factor=1.0).fusion_workers(3, 64) == 32


def test_fraction_of_bound():
    bound = {"units": 100, "littles_law_units_per_s": 24.0, "units_per_s": 24.0}
    bound["completion_tokens_per_s"] = 3072.0
    row = {"units": 30, "littles_law_units_per_s": 5.4, "units_per_s": 6.0}
    row["completion_tokens_per_s"] = 2764.8
    _add_fraction(row, bound, 3)
    assert row["bound_fusions_per_s"] == pytest.approx(6.0)
    assert row["fraction_of_bound"] == pytest.approx(0.9)
    assert row["fraction_of_bound_by_count"] == pytest.approx(1.0)
    assert row["tokens_fraction_of_bound"] == pytest.approx(0.9)
    empty = {"units": 0, "littles_law_units_per_s": None, "units_per_s": 0.0}
    _add_fraction(empty, bound, 3)
    assert "fraction_of_bound" not in empty


def test_server_command_carries_the_settings():
    command = ServerSettings("/m", port=9, num_blocks=32, max_memory_percent=0.5).command()
    assert command[command.index("serve") + 1] == "/m"
    assert "--continuous-batching" in command and "--cb-use-cuda-graph" in command
    assert command[command.index("--cb-num-blocks") + 1] == "32"
    assert command[command.index("--port") + 1] == "9"
    plain = ServerSettings("/m", continuous_batching=False).command()
    assert "--continuous-batching" not in plain and "--cb-use-cuda-graph" not in plain


def test_monitor_without_nvidia_smi_records_nothing(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with GpuMonitor() as monitor:
        assert monitor.window(0.0, 1e12) == {"samples": 0, "note": "no nvidia-smi"}


def _results() -> dict[str, Any]:
    gpu = {"samples": 5, "util_mean": 99.0}
    direct = [
        {
            "concurrency": c,
            "units": 10,
            "littles_law_units_per_s": c / 2.0,
            "units_per_s": c / 2.0,
            "completion_tokens_per_s": c * 64.0,
            "latency_p50_s": 2.0,
            "gpu": gpu,
            "window_start_s": 1.0 + c,
            "window_end_s": 2.0 + c,
        }
        for c in (1, 64)
    ]
    fusion = [
        {
            "contender": "polyfuse",
            "label": "polyfuse Fusion",
            "n": 3,
            "cap": 64,
            "units": 20,
            "littles_law_units_per_s": 7.7,
            "units_per_s": 7.5,
            "bound_fusions_per_s": 8.0,
            "fraction_of_bound": 0.96,
            "fraction_of_bound_by_count": 0.94,
            "completion_tokens_per_s": 3900.0,
            "latency_p50_s": 6.0,
            "gpu": gpu,
            "errors": 0,
            "window_start_s": 70.0,
            "window_end_s": 85.0,
        },
        {"contender": "langchain-chatfusion", "n": 3, "cap": 64, "unavailable": "missing"},
    ]
    ttft = [
        {"contender": "direct", "label": "direct call", "n": None, "ttft_p50_s": 0.05},
        {
            "contender": "polyfuse",
            "label": "polyfuse Fusion",
            "n": 3,
            "ttft_p50_s": 3.5,
            "latency_p50_s": 5.2,
            "outcomes": [
                {"slowest_candidate_s": 1.8, "fusor_ttft_s": 1.7, "overhead_s": 0.001},
            ],
        },
    ]
    n_rows = [
        {
            "prompt_words": 300,
            "n": 5,
            "prompt_tokens": 1000,
            "median_s": {"one": 0.05, "n_same": 0.1, "n_distinct": 0.2, "one_with_n": 0.05},
            "choices_returned_for_n": [1, 1, 1],
        }
    ]
    return {
        "machine": {"gpu": {"name": "Test GPU", "driver": "1.0"}, "versions": {}, "cpus": 2},
        "plan": {"max_tokens": 128},
        "server": {"command": "-m transformers.cli.transformers serve /m --continuous-batching"},
        "direct": direct,
        "fusion": fusion,
        "ttft": ttft,
        "n_vs_separate": n_rows,
        "gpu_trace": [(0.0, 0.0), (80.0, 99.0)],
    }


def test_tables_render_every_section():
    text = tables(_results())
    assert "Test GPU" in text
    assert "| 64 | 32.00 | 4096 |" in text
    assert "| 0.96 |" in text
    assert "not run: missing" in text
    assert "| 1000 | 0.050 | 0.100 (N=5) | 0.200 | 0.050 | [1, 1, 1] |" in text
    assert "| 1.0 |" in text  # engine overhead in ms


def test_write_report_makes_tables_and_plots(tmp_path: Path):
    (tmp_path / "results.json").write_text(json.dumps(_results()))
    written = write_report(json.loads((tmp_path / "results.json").read_text()), tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["gpu_util.png", "tables.md", "throughput.png", "ttft.png"]
    assert all(p.stat().st_size > 1000 for p in written if p.suffix == ".png")


async def test_direct_mix_replays_a_real_fusor_prompt(paced: FakeOpenAIServer, fake_url: str):
    setting = _setting(fake_url, n=3, max_in_flight=4)
    messages = await capture_fusor_messages(setting)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert setting.prompt in messages[1]["content"]
    mix = DirectMix(setting, messages)
    await mix.open()
    try:
        outcomes = [await mix.run() for _ in range(8)]
    finally:
        await mix.aclose()
    prompts = [o.prompt_tokens or 0 for o in outcomes]
    long_ones = [i for i, p in enumerate(prompts) if p > min(prompts)]
    assert long_ones == [3, 7]  # one fusor-sized prompt in every N + 1 calls


async def test_in_flight_reads_the_endpoint(
    make_fake: Callable[..., FakeOpenAIServer], fake_url: str
):
    slow = make_fake(n_mode="ignore", record=False, latency=LatencyModel(ttft_s=0.5))
    unit = PolyfuseFusion(_setting(fake_url, n=3, max_in_flight=8))
    await unit.open()
    try:
        assert in_flight(unit.endpoint) is None  # no call made in this loop yet
        task = asyncio.ensure_future(unit.run())
        for _ in range(200):  # until the server holds the three candidates (at most 2 s)
            if slow.active == 3:
                break
            await asyncio.sleep(0.01)
        assert slow.active == 3
        assert in_flight(unit.endpoint) == 3
        await task
        assert in_flight(unit.endpoint) == 0
    finally:
        await unit.aclose()

"""The harness around the contenders: server process, worker processes, statistics, reports."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from benchmarks.harness import report
from benchmarks.harness.contenders.raw_socket import RawHTTP
from benchmarks.harness.runner import run_worker
from benchmarks.harness.simserver import ServerSpec, SimServers
from benchmarks.harness.stats import percentile, ratio
from benchmarks.harness.workload import Workload


def test_percentile_and_ratio() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert ratio(1.0, 0.0) is None and ratio(3.0, 2.0) == 1.5


def test_server_spec_timing() -> None:
    spec = ServerSpec()
    assert spec.call_s == pytest.approx(0.178)
    slow = spec.slower(10)
    assert slow.call_s == pytest.approx(1.78)


def test_simulated_server_process_and_worker() -> None:
    spec = ServerSpec(ttft_s=0.0, tokens_per_s=None, output_tokens=8)
    with SimServers([spec, spec]) as servers:
        assert len(servers.base_urls) == 2 and servers.base_urls[0] != servers.base_urls[1]
        workload = Workload.single(servers.base_urls[0], 3)

        async def one_call() -> dict[str, Any]:
            client = RawHTTP(servers.base_urls[1], "k")
            try:
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                return await client.post(json.dumps(body).encode())
            finally:
                client.close()

        answer = asyncio.run(one_call())
        assert len(answer["choices"][0]["message"]["content"].split()) == 8
        result = run_worker(
            "polyfuse",
            workload,
            "latency",
            {"count": 2, "warmup": 1},
            timeout_s=60,
            servers=servers,
        )
        assert result.get("fusions") == 2, result
        assert len(result["latencies_s"]) == 2 and result["cpu_s"] > 0
        assert result["server_cpu_s"] >= 0 and result["peak_rss_mb"] > 10
        broken = run_worker(
            "raw",
            workload.with_(fusor_url="http://127.0.0.1:9/v1"),
            "latency",
            {"count": 1, "warmup": 0},
            timeout_s=60,
        )
        assert "error" in broken
    with pytest.raises(RuntimeError):
        servers.cpu_seconds()


def test_publish_replaces_only_its_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n\n<!-- figure:a -->\nold a\n<!-- /figure:a -->\n\n"
        "<!-- figure:b -->\nold b\n<!-- /figure:b -->\nend\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(report, "README", readme)
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path / "results")
    table = report.markdown_table(
        [{"x": 1.23456, "y": None}],
        [("x", lambda r: report.fmt(r["x"], 2)), ("y", lambda r: report.fmt(r["y"]))],
    )
    assert table.splitlines() == ["| x | y |", "|---|---|", "| 1.23 | – |"]
    report.publish("a", "Title A", table, {"env": {"notes": ["a note"]}}, verdict=["v: met"])
    text = readme.read_text(encoding="utf-8")
    assert "old a" not in text and "### Title A" in text and "- v: met" in text
    assert "Note: a note." in text
    assert "old b" in text and text.startswith("intro") and text.endswith("end\n")
    saved = json.loads((tmp_path / "results" / "a.json").read_text(encoding="utf-8"))
    assert saved["figure"] == "a" and saved["command"].startswith(".venv/bin/python")
    report.publish("c", "Title C", table, {}, update_readme=True)
    assert "<!-- figure:c -->" in readme.read_text(encoding="utf-8")
    before = readme.read_text(encoding="utf-8")
    report.publish("a", "Title A", "| other |", {}, update_readme=False)
    assert readme.read_text(encoding="utf-8") == before  # an unpublished run changes nothing
    assert (tmp_path / "results" / "a.json.tmp").exists()
    assert json.loads((tmp_path / "results" / "a.json").read_text(encoding="utf-8")) == saved
    assert report.plot_path("a", False) == tmp_path / "results" / "a.png.tmp"


def test_summary_judges_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.harness import summary

    results = tmp_path / "results"
    results.mkdir()
    rows = [
        {"name": "raw", "over_p50_ms": 1.0, "over_p99_ms": 2.0, "cpu_ms": 0.5},
        {"name": "polyfuse", "over_p50_ms": 2.0, "over_p99_ms": 9.0, "cpu_ms": 1.0},
        {"name": "openai-gather", "over_p50_ms": 20.0, "over_p99_ms": 30.0, "cpu_ms": 10.0},
        {"name": "langchain", "over_p50_ms": 12.0, "over_p99_ms": 40.0, "cpu_ms": 16.0},
    ]
    (results / "overhead.json").write_text(json.dumps({"rows": rows}), encoding="utf-8")
    monkeypatch.setattr(summary, "RESULTS_DIR", results)
    judged = {row["what"]: row for row in summary.targets()}
    p50 = judged["overhead p50 at c=1, ms (≤ ¼ best peer)"]
    assert (p50["best"], p50["goal"], p50["poly_met"], p50["floor"]) == (12.0, 3.0, True, 1.0)
    p99 = judged["overhead p99 at c=1, ms (≤ ¼ best peer)"]
    assert p99["poly_met"] is False and p99["fan_met"] is None
    assert len(judged) == 3  # no other results: no other targets judged

"""End to end on the embedded model: a tiny live eval produces the HTML report.

A 135M model's quality is not the point; the pipeline is: sampling the pool once, vote and
fuse over it, grading, a judge (the same model) scoring an open-ended row, the report files
and the routing log.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_helpers import read_jsonl, write_jsonl

from polyfuse.eval import aevaluate

pytestmark = pytest.mark.local_model

JUDGE_TOKENS = 48

PRESETS = """
[endpoints.local]
local = true
max_concurrency = 4

[presets.tiny]
pool = ["local"]
n = 3
fusor = "local"
params = { max_tokens = 16, temperature = 0.7 }
fusor_params = { max_tokens = 16 }
"""


@pytest.mark.timeout(600)
async def test_a_tiny_live_eval_on_the_embedded_model_writes_the_report(
    tmp_path: Path,
) -> None:
    config = tmp_path / "presets.toml"
    config.write_text(PRESETS, encoding="utf-8")
    data = write_jsonl(
        tmp_path / "rows.jsonl",
        [
            {
                "id": "add",
                "prompt": "What is 2 + 3? Answer with a number.",
                "gold": "5",
                "task": "arithmetic",
            },
            {
                "id": "sky",
                "prompt": "Why is the sky blue? One sentence.",
                "task": "open",
                "reference": "Rayleigh scattering: air scatters blue light more than red.",
            },
        ],
    )
    out = tmp_path / "out"
    result = await aevaluate(
        data,
        out,
        strategies="single,vote,fuse",
        config=config,
        preset="tiny",
        judge_candidates=False,
        # the default budget (512 tokens) is for real judges; a 135M model at temperature 0
        # fills it without a verdict, which only costs CI time (~25 s)
        judge_max_tokens=JUDGE_TOKENS,
        resamples=200,
        fsync=False,
    )
    records = read_jsonl(out / "generations.jsonl")
    assert len(records) == 2 and all(len(r["candidates"]) == 3 for r in records)
    tasks = {t.task: t for t in result.analysis.tasks}
    assert tasks["arithmetic"].metric == "accuracy"
    assert tasks["open"].metric == "win rate vs reference"
    judgments = read_jsonl(out / "judgments.jsonl")
    pairwise = [j for j in judgments if j["kind"] == "pairwise"]
    assert len(pairwise) == 3 * 2  # three strategies, both orders
    assert all(j["completion_tokens"] <= JUDGE_TOKENS for j in pairwise)
    html = result.report_html.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "Recommendations" in html
    assert "data:image/svg+xml;base64," in html
    assert result.report_md.exists()
    routed = read_jsonl(out / "routing.jsonl")
    assert len(routed) == 3  # the graded row's candidates
    assert all(r["model"] == "local" and r["prompt_tokens"] for r in routed)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert {t["task"] for t in summary["tasks"]} == {"arithmetic", "open"}

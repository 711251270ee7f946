"""``polyfuse eval`` measures adaptive strategies: replayed over recorded pools in random orders,
and live on the fake server, next to their full-pool counterparts."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from polyfuse.adaptive import AdaptiveSampling, AnswerReader, replay_adaptive
from polyfuse.eval import EvalConfigError, aevaluate
from polyfuse.eval.adaptive_curve import samples_drawn
from polyfuse.results import Candidate
from polyfuse.testing import FakeOpenAIServer

PANEL = 8


def _answers(i: int) -> list[str]:
    """Even prompts: all 8 models agree (right); odd ones: 5 right, 3 wrong."""
    gold = 10 + i
    if i % 2 == 0:
        return [str(gold)] * PANEL
    return [str(gold)] * 5 + [str(gold + 1)] * 3


def _pools(path: Path, prompts: int = 12) -> Path:
    lines: list[str] = []
    for i in range(prompts):
        candidates = [
            {
                "model": f"m{k}",
                "text": f"Working... the answer is {answer}",
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            }
            for k, answer in enumerate(_answers(i))
        ]
        row = {"id": f"q{i}", "prompt": f"Question {i}?", "gold": str(10 + i), "task": "sums"}
        lines.append(json.dumps({**row, "candidates": candidates}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _records(out: Path) -> list[dict[str, Any]]:
    text = (out / "generations.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_replay_adaptive_follows_the_live_rounds() -> None:
    texts = ["7", "7", "8", "7", "7", "7"]
    candidates = [Candidate(index=i, backend="m", content=t) for i, t in enumerate(texts)]
    reader = AnswerReader("last_number")
    drawn, record = replay_adaptive(candidates, reader, AdaptiveSampling(first=3))
    # 2-1 after 3 (P = 0.69), 3-1 after 4 (P = 0.81 >= 0.8)
    assert [c.index for c in drawn] == [0, 1, 2, 3] and record.rounds == [3, 1]
    assert record.stop_reason == "settled" and record.samples_used == 4
    capped = AdaptiveSampling(first=3, confidence=0.95, max_rounds=2)
    drawn, record = replay_adaptive(candidates, reader, capped)
    assert record.stop_reason == "max_rounds" and record.rounds == [3, 1] and len(drawn) == 4
    none, record = replay_adaptive([], reader, AdaptiveSampling())
    assert none == [] and record.stop_reason == "exhausted"


async def test_replay_reports_samples_used_against_the_full_vote(tmp_path: Path) -> None:
    pools = _pools(tmp_path / "pools.jsonl")
    out = tmp_path / "out"
    result = await aevaluate(
        pools, out, replay=True, strategies="vote,adaptive-vote", resamples=200, fsync=False
    )
    records = _records(out)
    assert len(records) == 12
    for record in records:
        full, adaptive = record["strategies"]["vote"], record["strategies"]["adaptive-vote"]
        sampling = adaptive["sampling"]
        assert full["calls"] == PANEL and adaptive["calls"] == sampling["samples_used"]
        order = sampling["order"]
        assert len(set(order)) == len(order) == sampling["samples_used"]
        assert set(order) <= set(range(PANEL))
        i = int(record["row"]["id"][1:])
        if i % 2 == 0:
            assert sampling["samples_used"] == 3 and sampling["stop_reason"] == "settled"
        assert adaptive["prompt_tokens"] == 10 * sampling["samples_used"]
    # the orders are random per prompt (not all the pool's order), and fixed by the seed
    orders = [r["strategies"]["adaptive-vote"]["sampling"]["order"] for r in records]
    assert any(o[:3] != [0, 1, 2] for o in orders)
    task = result.analysis.tasks[0]
    stats = task.adaptive["adaptive-vote"]
    assert stats.max_samples == PANEL and stats.samples < PANEL and stats.prompts == 12
    assert stats.saved_share > 0.3
    assert task.estimates["vote"].mean == 1.0
    assert task.costs["adaptive-vote"].calls == stats.samples
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["tasks"][0]["adaptive"]["adaptive-vote"]["samples"] == stats.samples
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "fewer candidate calls" in report and "| adaptive-vote |" in report
    assert "Adaptive sampling" in (out / "report.html").read_text(encoding="utf-8")
    # a rerun resumes; other adaptive settings are another configuration
    again = await aevaluate(
        pools, out, replay=True, strategies="vote,adaptive-vote", resamples=200, fsync=False
    )
    assert again.generation.summary.already_done == 12 and _records(out) == records
    with pytest.raises(EvalConfigError, match="another configuration"):
        await aevaluate(
            pools,
            out,
            replay=True,
            strategies="vote,adaptive-vote",
            fusion={"adaptive": {"confidence": 0.95}},
            fsync=False,
        )


async def test_stricter_settings_use_more_samples(tmp_path: Path) -> None:
    pools = _pools(tmp_path / "pools.jsonl")
    used: dict[float, float] = {}
    for confidence in (0.7, 0.99):
        result = await aevaluate(
            pools,
            tmp_path / f"out-{confidence}",
            replay=True,
            strategies="adaptive-vote",
            fusion={"adaptive": {"confidence": confidence, "first": 2}},
            resamples=100,
            fsync=False,
        )
        used[confidence] = result.analysis.tasks[0].adaptive["adaptive-vote"].samples
    assert used[0.7] < used[0.99] <= PANEL


def _presets(path: Path, url: str) -> Path:
    path.write_text(
        f'[endpoints.m]\nbase_url = "{url}"\nmodel = "fake-model"\nmax_retries = 0\n\n'
        '[presets.p]\npool = ["m"]\nn = 6\nstrategy = "fuse"\n'
        "adaptive = { first = 3, confidence = 0.8 }\n",
        encoding="utf-8",
    )
    return path


async def test_live_adaptive_fuse_skips_samples_and_the_fusor(
    fake: FakeOpenAIServer, fake_url: str, tmp_path: Path
) -> None:
    def same(body: dict[str, Any], index: int) -> str:
        return "Fused: 5" if body["messages"][0]["role"] == "system" else "It is 5."

    fake.responder = same
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "prompt": f"2+3? ({i})", "gold": "5"}) + "\n"
            for i in range(3)
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = await aevaluate(
        rows,
        out,
        strategies="single,fuse,adaptive-fuse",
        config=_presets(tmp_path / "presets.toml", fake_url),
        preset="p",
        resamples=100,
        fsync=False,
    )
    for record in _records(out):
        full, adaptive = record["strategies"]["fuse"], record["strategies"]["adaptive-fuse"]
        # the server honours n: the pool was one request of 6 samples, then the fusor's call
        assert full["calls"] == 2 and full["aggregation_tokens"] > 0
        pool = record["candidates"]
        assert len(pool) == 6  # live sampling drew the full pool once
        # adaptive: one request of 3 (its prompt once, half the completion tokens), no fusor
        assert adaptive["calls"] == 1 and "consensus shortcut" in adaptive["consensus"]
        assert adaptive["answer"] == "It is 5." and adaptive["aggregation_tokens"] == 0
        assert adaptive["sampling"]["rounds"] == [3]
        assert adaptive["prompt_tokens"] == pool[0]["usage"]["prompt_tokens"]
        assert adaptive["completion_tokens"] == round(pool[0]["usage"]["completion_tokens"] / 2)
        # single: one call of one sample, not the whole request's usage
        single = record["strategies"]["single"]
        assert single["calls"] == 1 and single["prompt_tokens"] == adaptive["prompt_tokens"]
        assert single["completion_tokens"] == round(pool[0]["usage"]["completion_tokens"] / 6)
    task = result.analysis.tasks[0]
    assert task.estimates["adaptive-fuse"].mean == 1.0
    assert task.adaptive["adaptive-fuse"].shortcuts == 3


def test_cli_eval_adaptive_flags(tmp_path: Path) -> None:
    pools = _pools(tmp_path / "pools.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYFUSE_API")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    run = subprocess.run(
        [sys.executable, "-m", "polyfuse.cli", "eval", str(pools), "-o", str(tmp_path / "o"),
         "--replay", "--strategies", "vote,adaptive-vote", "--adaptive-confidence", "0.95",
         "--adaptive-first", "2", "--no-progress", "--no-fsync", "--resamples", "100",
         "--adaptive-curve", "--curve-orders", "2"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "adaptive-vote" in run.stdout and "fewer candidate calls" in run.stdout
    assert "adaptive curve, confidence 0.95: " in run.stdout  # the flags' threshold is on it
    records = _records(tmp_path / "o")
    unanimous = records[0]["strategies"]["adaptive-vote"]["sampling"]
    assert unanimous["samples_used"] == 4  # P(majority) >= 0.95 needs 4-0 (first=2)
    bad = subprocess.run(
        [sys.executable, "-m", "polyfuse.cli", "eval", str(pools), "-o", str(tmp_path / "b"),
         "--replay", "--strategies", "adaptive-vote", "--adaptive-confidence", "1.5"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "confidence" in bad.stderr


def test_the_curve_stops_where_live_sampling_would() -> None:
    rng = random.Random(7)
    reader = AnswerReader("exact")
    for _ in range(200):
        keys = [rng.choice(["a", "b", "c", None]) for _ in range(rng.randint(1, 9))]
        settings = AdaptiveSampling(
            first=rng.randint(1, 4),
            step=rng.randint(1, 3),
            confidence=rng.choice([0.6, 0.8, 0.95]),
            max_rounds=rng.choice([None, 1, 2, 3]),
        )
        candidates = [Candidate(index=i, backend="m", content=k or "") for i, k in enumerate(keys)]
        drawn, _ = replay_adaptive(candidates, reader, settings)
        assert samples_drawn(keys, settings) == len(drawn), (keys, settings)


async def test_the_adaptive_curve_of_a_replay(tmp_path: Path) -> None:
    pools = _pools(tmp_path / "pools.jsonl")
    out = tmp_path / "out"
    result = await aevaluate(
        pools,
        out,
        replay=True,
        strategies="vote",
        adaptive_curve=True,
        curve_orders=3,
        resamples=200,
        fsync=False,
    )
    curve = result.adaptive_curve
    assert curve is not None and curve[0].label == "full vote"
    assert curve[0].calls == PANEL and curve[0].delta is None
    assert [p.confidence for p in curve[1:]] == [0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
    calls = [p.calls for p in curve[1:]]
    assert calls == sorted(calls) and calls[0] < PANEL
    assert all(p.delta is not None and p.max_calls == PANEL for p in curve[1:])
    assert "Adaptive stopping: accuracy vs candidate calls (3 random orders per prompt)" in (
        out / "report.md"
    ).read_text(encoding="utf-8")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [p["label"] for p in summary["adaptive_curve"]][:2] == ["full vote", "confidence 0.6"]
    with pytest.raises(EvalConfigError, match="--replay"):
        await aevaluate(pools, tmp_path / "live", adaptive_curve=True, fsync=False)

"""End to end against the fake server: formats, provenance, both aggregations, resume, errors."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from distill_helpers import (
    FUSED_SCORE,
    SCORES,
    TEACHERS,
    panel_spec,
    read_jsonl,
    responder,
    teacher_requests,
    write_prompts,
)

from polyfuse.distill import (
    DistillConfigError,
    DistillInputError,
    DistillOutputError,
    InputSpec,
    PriceTable,
    adistill,
    distill,
    input_hash,
)
from polyfuse.testing import FakeOpenAIServer, Fault

QUESTIONS = [f"What is fact number {i}?" for i in range(6)]


def _prompts(tmp_path: Path, questions: list[str] = QUESTIONS) -> Path:
    return write_prompts(tmp_path / "prompts.jsonl", [{"prompt": q} for q in questions])


def test_sft_records_carry_full_provenance(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = _prompts(tmp_path)
    out = tmp_path / "sft.jsonl"
    prices = PriceTable.parse(["alpha=1/2", "fusor=3/4"])
    summary = distill(source, out, panel_spec(fake_url), prices=prices)

    assert summary.stats.written == len(QUESTIONS) and summary.stats.failed == 0
    records = read_jsonl(out)
    assert sorted(r["messages"][0]["content"] for r in records) == sorted(QUESTIONS)
    # Sampled once: one request per teacher per prompt.
    assert Counter(r["model"] for r in teacher_requests(panel_fake)) == {
        name: len(QUESTIONS) for name in TEACHERS
    }
    for record in records:
        question = record["messages"][0]["content"]
        assert record["messages"][1] == {"role": "assistant", "content": f"Fused: {question}"}
        prov = record["provenance"]
        assert prov["input_hash"] == input_hash(record["messages"][:1])
        assert prov["source"]["file"] == str(source)
        assert prov["method"] == "fuse"
        assert [t["name"] for t in prov["teachers"]] == list(TEACHERS)
        assert [t["completion"] for t in prov["teachers"]] == [
            f"{name} says: {question}" for name in TEACHERS
        ]
        assert list(prov["aggregations"]) == ["fuse"]
        assert prov["aggregations"]["fuse"]["calls"][0]["name"] == "fusor"
        assert prov["scores"] is None
        usage = prov["usage"]
        assert usage["total"]["calls"] == 4
        assert usage["total"]["total_tokens"] == sum(
            usage[role]["total_tokens"] for role in ("candidates", "aggregator", "judge")
        )
        alpha = prov["teachers"][0]["usage"]
        fusor = prov["aggregations"]["fuse"]["calls"][0]["usage"]
        expected_alpha = (alpha["prompt_tokens"] * 1 + alpha["completion_tokens"] * 2) / 1e6
        expected_fusor = (fusor["prompt_tokens"] * 3 + fusor["completion_tokens"] * 4) / 1e6
        cost = prov["cost"]
        assert cost["by_model"]["alpha"] == pytest.approx(expected_alpha)
        assert cost["usd"] == pytest.approx(expected_alpha + expected_fusor)
        assert cost["unpriced"] == ["beta", "gamma"] and cost["complete"] is False
    assert summary.stats.tokens == sum(
        r["provenance"]["usage"]["total"]["total_tokens"] for r in records
    )


def test_fusion_and_best_of_n_side_by_side_on_the_same_candidates(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    spec = panel_spec(fake_url, aggregations=("fuse", "best-of-n"), score_primary=True)
    distill(_prompts(tmp_path), tmp_path / "out.jsonl", spec)

    records = read_jsonl(tmp_path / "out.jsonl")
    assert len(records) == len(QUESTIONS)
    assert len(teacher_requests(panel_fake)) == len(TEACHERS) * len(QUESTIONS)
    for record in records:
        prov = record["provenance"]
        fused, best = prov["aggregations"]["fuse"], prov["aggregations"]["best_of_n"]
        assert record["messages"][-1]["content"] == fused["completion"]
        assert fused["score"] == FUSED_SCORE
        assert best["selected"] == 0 and best["completion"].startswith("alpha says")
        assert best["scores"] == {"0": 8.0, "1": 3.0, "2": 5.0} == prov["scores"]
        assert prov["usage"]["judge"]["calls"] == len(TEACHERS) + 1


def test_alpaca_records(tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str) -> None:
    conversation = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a fact."},
    ]
    source = write_prompts(tmp_path / "p.jsonl", [{"messages": conversation}])
    distill(source, tmp_path / "a.jsonl", panel_spec(fake_url, format="alpaca"))
    (record,) = read_jsonl(tmp_path / "a.jsonl")
    assert record["instruction"] == "Tell me a fact."
    assert record["input"] == ""
    assert record["system"] == "Be kind."
    assert record["history"] == [["Hi", "Hello!"]]
    assert record["output"].startswith("Fused:")
    assert record["provenance"]["input_hash"] == input_hash(conversation)


@pytest.mark.parametrize(
    ("chosen", "chosen_text", "chosen_from"),
    [("primary", "Fused: {q}", "fuse"), ("best", "alpha says: {q}", "candidate #0")],
)
def test_preference_pairs(
    tmp_path: Path,
    panel_fake: FakeOpenAIServer,
    fake_url: str,
    chosen: str,
    chosen_text: str,
    chosen_from: str,
) -> None:
    spec = panel_spec(fake_url, format="preference", chosen=chosen)
    assert spec.strategies == ("fuse", "best-of-n")  # the judge is added for the scores
    distill(_prompts(tmp_path, QUESTIONS[:2]), tmp_path / "pref.jsonl", spec)
    for record in read_jsonl(tmp_path / "pref.jsonl"):
        question = record["prompt"][0]["content"]
        assert record["chosen"] == [
            {"role": "assistant", "content": chosen_text.format(q=question)}
        ]
        # beta scores lowest (3): it is the rejected answer.
        assert record["rejected"] == [{"role": "assistant", "content": f"beta says: {question}"}]
        pair = record["provenance"]["pair"]
        assert pair == {
            "chosen_from": chosen_from,
            "rejected_from": "candidate #1",
            "rejected_score": float(SCORES["beta"]),
        }


def test_resume_skips_what_is_done_and_never_duplicates(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = _prompts(tmp_path, [*QUESTIONS, QUESTIONS[0]])  # one duplicate prompt
    out = tmp_path / "out.jsonl"
    spec = panel_spec(fake_url)
    first = distill(source, out, spec, limit=2)
    assert first.stats.written == 2 and first.duplicates == 1
    panel_fake.reset()
    second = distill(source, out, spec)
    assert second.already_done == 2 and second.stats.written == len(QUESTIONS) - 2
    assert len(teacher_requests(panel_fake)) == len(TEACHERS) * (len(QUESTIONS) - 2)
    panel_fake.reset()
    third = distill(source, out, spec)
    assert third.stats.total == 0 and third.already_done == len(QUESTIONS)
    assert panel_fake.requests == []
    hashes = [r["provenance"]["input_hash"] for r in read_jsonl(out)]
    assert len(hashes) == len(set(hashes)) == len(QUESTIONS)


def test_a_torn_last_line_is_repaired_and_its_row_redone(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = _prompts(tmp_path, QUESTIONS[:3])
    out = tmp_path / "out.jsonl"
    spec = panel_spec(fake_url)
    distill(source, out, spec)
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2], encoding="utf-8")
    summary = distill(source, out, spec)
    assert summary.repaired and "torn last line" in summary.repaired[0]
    assert summary.already_done == 2 and summary.stats.written == 1
    hashes = [r["provenance"]["input_hash"] for r in read_jsonl(out)]
    assert len(hashes) == len(set(hashes)) == 3


def test_failed_rows_go_to_the_errors_file_and_can_be_retried(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = _prompts(tmp_path, QUESTIONS[:4])
    out = tmp_path / "out.jsonl"
    errors = tmp_path / "out.errors.jsonl"
    spec = panel_spec(fake_url)
    panel_fake.inject(Fault("status", status=400, match_model="fusor", times=2))
    first = distill(source, out, spec)
    assert first.stats.written == 2 and first.stats.failed == 2 and first.errors == errors
    failures = read_jsonl(errors)
    assert len(failures) == 2
    for failure in failures:
        assert failure["stage"] == "aggregation"
        assert failure["error"]["type"] == "AggregationError"
        assert "fuse failed" in failure["error"]["message"]
        assert "HTTP 400" in failure["error"]["message"]
        assert failure["usage"]["calls"] == 4  # 3 teachers + the failed fusor call
        assert failure["source"]["line"] in range(1, 5)

    panel_fake.reset()
    skipped = distill(source, out, spec)
    assert skipped.skipped_failed == 2 and skipped.stats.total == 0
    assert panel_fake.requests == []

    retried = distill(source, out, spec, retry_errors=True)
    assert retried.stats.written == 2 and retried.stats.failed == 0
    hashes = {r["provenance"]["input_hash"] for r in read_jsonl(out)}
    assert {f["input_hash"] for f in failures} <= hashes and len(hashes) == 4


def test_a_failed_teacher_is_recorded_and_all_failed_fails_the_row(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = _prompts(tmp_path, QUESTIONS[:1])
    panel_fake.inject(Fault("status", status=400, match_model="beta"))
    distill(source, tmp_path / "a.jsonl", panel_spec(fake_url))
    (record,) = read_jsonl(tmp_path / "a.jsonl")
    beta = record["provenance"]["teachers"][1]
    assert beta["status"] == "failed" and "HTTP 400" in beta["error"]["message"]
    assert beta["completion"] is None

    panel_fake.inject(*(Fault("status", status=400, match_model=m) for m in TEACHERS))
    summary = distill(source, tmp_path / "b.jsonl", panel_spec(fake_url))
    assert summary.stats.failed == 1
    (failure,) = read_jsonl(tmp_path / "b.errors.jsonl")
    assert failure["stage"] == "sampling" and failure["error"]["type"] == "NoCandidatesError"


def test_another_configuration_is_refused_unless_allowed(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = _prompts(tmp_path, QUESTIONS[:2])
    out = tmp_path / "out.jsonl"
    distill(source, out, panel_spec(fake_url), limit=1)
    other = panel_spec(fake_url, params={"temperature": 0.3})
    with pytest.raises(DistillOutputError, match="another configuration"):
        distill(source, out, other)
    summary = distill(source, out, other, allow_mixed_config=True)
    assert summary.already_done == 1 and summary.stats.written == 1


def test_bad_input_fails_before_any_request(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    spec = panel_spec(fake_url)
    out = tmp_path / "out.jsonl"
    garbage = write_prompts(tmp_path / "bad.jsonl", ["{nope", "[]"])
    with pytest.raises(DistillInputError, match=r"no usable prompt.*line 1.*line 2"):
        distill(garbage, out, spec)
    wrong_field = write_prompts(tmp_path / "q.jsonl", [{"question": "a"}, {"question": "b"}])
    with pytest.raises(DistillInputError, match="--prompt-field"):
        distill(wrong_field, out, spec)
    summary = distill(InputSpec(wrong_field, prompt_field="question"), out, spec)
    assert summary.stats.written == 2
    with pytest.raises(DistillInputError, match="does not exist"):
        distill(tmp_path / "missing.jsonl", out, spec)
    panel_fake.reset()
    mixed = write_prompts(tmp_path / "mixed.jsonl", [{"prompt": "fine"}, "{broken"])
    summary = distill(mixed, tmp_path / "mixed-out.jsonl", spec)
    assert summary.stats.written == 1
    assert [(p.line, "not valid JSON" in p.message) for p in summary.problems] == [(2, True)]


@pytest.mark.parametrize(
    ("output", "match"),
    [
        ("missing-dir/out.jsonl", "does not exist; create it first"),
        (".", "is a directory"),
        ("prompts.jsonl", "same file"),
        ("prompts.jsonl/out.jsonl", "not a directory"),
    ],
)
def test_unwritable_output_fails_before_any_request(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str, output: str, match: str
) -> None:
    source = _prompts(tmp_path)
    with pytest.raises(DistillOutputError, match=match):
        distill(source, tmp_path / output, panel_spec(fake_url))
    assert panel_fake.requests == []


def test_bad_configuration_is_a_clear_error(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    typo = panel_spec(fake_url, params={"temprature": 0.3})
    with pytest.raises(DistillConfigError, match="temprature: Extra inputs"):
        distill(_prompts(tmp_path), tmp_path / "out.jsonl", typo)
    assert panel_fake.requests == []
    with pytest.raises(DistillConfigError, match="MODEL@BASE_URL"):
        panel_spec("not a url")
    with pytest.raises(DistillConfigError, match="only applies to the preference format"):
        panel_spec(fake_url, chosen="best")
    with pytest.raises(DistillConfigError, match="n: Input should be greater than or equal to 1"):
        panel_spec(fake_url, n=0)
    with pytest.raises(DistillConfigError, match="max_concurrency"):
        panel_spec(fake_url, endpoint_options={"max_concurrency": 0})
    with pytest.raises(DistillConfigError, match="name one twice"):
        panel_spec(fake_url, aggregations=("fuse", "fuse"))


async def test_endpoint_limits_are_kept_full(
    tmp_path: Path, make_fake: Callable[..., FakeOpenAIServer], fake_url: str
) -> None:
    active: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    async def slow(body: dict[str, Any], index: int) -> str:
        model = body["model"]
        active[model] += 1
        peak[model] = max(peak[model], active[model])
        await asyncio.sleep(0.02)
        active[model] -= 1
        return responder(body, index)

    make_fake(responder=slow)
    source = _prompts(tmp_path, [f"q{i}" for i in range(24)])
    spec = panel_spec(fake_url, endpoint_options={"max_concurrency": 3, "max_retries": 0})
    summary = await adistill(source, tmp_path / "out.jsonl", spec)
    assert summary.stats.written == 24
    assert peak == {"alpha": 3, "beta": 3, "gamma": 3, "fusor": 3}

    peak.clear()
    await adistill(source, tmp_path / "one.jsonl", spec, max_rows_in_flight=1)
    assert peak == {"alpha": 1, "beta": 1, "gamma": 1, "fusor": 1}


def test_records_are_single_json_lines(
    tmp_path: Path, panel_fake: FakeOpenAIServer, fake_url: str
) -> None:
    source = write_prompts(tmp_path / "p.jsonl", [{"prompt": "Line one\nline two — ünïcode"}])
    distill(source, tmp_path / "out.jsonl", panel_spec(fake_url))
    text = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "ünïcode" in text  # UTF-8, not escaped
    assert json.loads(text)["messages"][0]["content"] == "Line one\nline two — ünïcode"

"""``polyfuse templates build|show`` against the fake server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from polyfuse.cli.app import run
from polyfuse.routing import RoutingRecord, TemplateStore, write_routing_log
from polyfuse.testing import FakeReply


def _log(path: Path) -> Path:
    records = [
        RoutingRecord(
            query=f"What is {i} + {i}?",
            task="math",
            model=m,
            score=s,
            response=f"{m} adds {i} and {i}",
        )
        for i in range(3)
        for m, s in (("a", 1.0), ("b", 0.0))
    ] + [
        RoutingRecord(
            query="Write a haiku about rain.",
            task="poems",
            model="a",
            score=1.0,
            response="Five, seven, five syllables about rain.",
        )
    ]
    write_routing_log(path, records, append=False)
    return path


def test_build_then_show(
    make_fake: Any,
    fake_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")

    def responder(body: dict[str, Any], index: int) -> FakeReply:
        prompt = body["messages"][-1]["content"]
        kind = "poem" if "haiku" in prompt else "sum"
        return FakeReply(content=f"Template for a {kind}: plan, solve, answer.")

    fake = make_fake(responder=responder)
    out = tmp_path / "templates.jsonl"
    code = run(
        [
            "templates",
            "build",
            str(_log(tmp_path / "log.jsonl")),
            "--endpoint",
            fake_url,
            "--model",
            "summ",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "wrote 4 templates" in capsys.readouterr().err
    assert all("b adds" not in str(r["messages"]) for r in fake.requests)  # wrong answers: out
    assert len(TemplateStore.load(out).templates) == 4
    assert run(["templates", "show", str(out)]) == 0
    assert "4 templates" in capsys.readouterr().err
    code = run(
        [
            "templates",
            "show",
            str(out),
            "--query",
            "A rainy haiku please",
            "--task",
            "poems",
            "--k",
            "1",
            "--prompt",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "Template for a poem" in captured.err
    assert "--- system" in captured.out and "Template for a poem" in captured.out


def test_build_needs_answers_and_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare.jsonl"
    write_routing_log(bare, [RoutingRecord(query="q", model="m", score=1.0)], append=False)
    assert run(["templates", "build", str(bare), "--endpoint", "http://127.0.0.1:9/v1"]) == 2
    assert "no record has a response" in capsys.readouterr().err
    log = _log(tmp_path / "log.jsonl")
    assert run(["templates", "build", str(log), "--endpoint", "http://127.0.0.1:9/v1"]) == 2
    assert "--model NAME is required" in capsys.readouterr().err


@pytest.mark.local_model
def test_build_with_the_embedded_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "templates.jsonl"
    code = run(
        [
            "templates",
            "build",
            str(_log(tmp_path / "log.jsonl")),
            "--endpoint",
            "local",
            "--out",
            str(out),
            "--queries-per-task",
            "1",
            "--concurrency",
            "2",
            "--max-tokens",
            "40",
        ]
    )
    assert code == 0, capsys.readouterr().err
    templates = TemplateStore.load(out).templates
    assert sorted(t.task or "" for t in templates) == ["math", "poems"]
    assert all(t.template.strip() and t.summarizer for t in templates)

"""The consensus shortcut skips the aggregator only when its condition holds."""

from __future__ import annotations

import pytest

from polyfuse import FusionSpec
from polyfuse.testing import ScriptedBackend


def _model(candidates: list[str]) -> ScriptedBackend:
    """Candidates as given; the fusor, judge and USC selector answer so their use shows."""
    return ScriptedBackend(
        {
            "candidate": candidates,
            "fusor": "fused",
            "judge": "Score: 5",
            "selector": "The most consistent response is 1",
        }
    )


@pytest.mark.parametrize("strategy", ["fuse", "usc", "best-of-n"])
def test_agreeing_answers_skip_the_aggregator(strategy: str) -> None:
    model = _model(["x = 12", "so 12", "12."])
    spec = FusionSpec(pool=[model], n=3, strategy=strategy, answer_extract="last_number")
    result = spec.build().run("What is 3 * 4?")
    assert result.content == "x = 12"
    assert result.aggregation.selected == 0
    assert result.aggregation.calls == []
    assert result.aggregation.notes[0].startswith("consensus shortcut: all 3 candidates answered")
    for role in ("fusor", "judge", "selector"):
        assert model.requests_for(role) == []  # type: ignore[arg-type]
    assert result.usage.aggregator.calls == 0 and result.usage.judge.calls == 0
    assert result.usage.saved.calls == 1 and result.usage.saved.total_tokens > 0


def test_disagreeing_answers_call_the_fusor() -> None:
    model = _model(["12", "13", "12"])
    spec = FusionSpec(pool=[model], n=3, strategy="fuse", answer_extract="last_number")
    result = spec.build().run("q")
    assert result.content == "fused"
    assert len(model.requests_for("fusor")) == 1
    assert result.usage.saved.calls == 0


def test_an_unreadable_answer_is_no_agreement() -> None:
    model = _model(["12", "no idea", "12"])
    spec = FusionSpec(pool=[model], n=3, strategy="fuse", answer_extract="last_number")
    assert spec.build().run("q").content == "fused"


def test_off_by_default_without_an_extractor() -> None:
    model = _model(["same words here"] * 3)
    result = FusionSpec(pool=[model], n=3, strategy="fuse").build().run("q")
    assert result.content == "fused"


def test_on_uses_near_identical_text() -> None:
    text = "The capital of France is Paris, on the Seine."
    model = _model([text] * 3)
    result = FusionSpec(pool=[model], n=3, strategy="fuse", consensus="on").build().run("q")
    assert result.content == text
    assert "word 3-gram agreement 1.00" in result.aggregation.notes[0]
    other = _model([text, "Lyon is big.", text])
    result = FusionSpec(pool=[other], n=3, strategy="fuse", consensus="on").build().run("q")
    assert result.content == "fused"


def test_off_always_calls_the_aggregator() -> None:
    model = _model(["12"] * 3)
    spec = FusionSpec(
        pool=[model], n=3, strategy="fuse", answer_extract="last_number", consensus="off"
    )
    assert spec.build().run("q").content == "fused"


def test_moa_is_never_shortcut() -> None:
    model = ScriptedBackend({"candidate": ["12"] * 2, "proposer": "12", "fusor": "moa"})
    spec = FusionSpec(pool=[model], n=2, strategy="moa", answer_extract="last_number")
    assert spec.build().run("q").content == "moa"

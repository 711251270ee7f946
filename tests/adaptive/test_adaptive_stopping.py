"""Stopping rules and adaptive sampling on scripted candidates."""

from __future__ import annotations

import pytest

from polyfuse import FusionSpec, InvalidRequestError
from polyfuse.adaptive import (
    AdaptiveSampling,
    AnswerReader,
    majority_confidence,
    stop_decision,
    text_agreement,
)
from polyfuse.results import Candidate
from polyfuse.testing import ScriptedBackend


def _candidates(*texts: str) -> list[Candidate]:
    return [Candidate(index=i, backend="b", content=t) for i, t in enumerate(texts)]


def test_majority_confidence_is_the_beta_tail() -> None:
    # Beta(v1+1, v2+1): P(p > 1/2) = P(Binomial(v1+v2+1, 1/2) <= v1)
    assert majority_confidence(2, 0) == pytest.approx(7 / 8)
    assert majority_confidence(4, 0) == pytest.approx(31 / 32)
    assert majority_confidence(3, 3) == pytest.approx(0.5)
    assert majority_confidence(5, 1) == pytest.approx(120 / 128)


def test_beta_rule_stops_on_a_settled_majority_only() -> None:
    reader = AnswerReader("last_number")
    settings = AdaptiveSampling(confidence=0.95)
    assert not stop_decision(_candidates("12", "12", "12"), reader, settings, remaining=5).stop
    decision = stop_decision(_candidates("12", "so 12", "12", "=12"), reader, settings, remaining=4)
    assert decision.reason == "settled" and decision.score == pytest.approx(31 / 32)
    assert "'12' leads 4 to 0" in decision.detail
    tie = _candidates("1", "2", "1", "2")
    assert not stop_decision(tie, reader, settings, remaining=4).stop
    assert not stop_decision(tie, reader, settings, remaining=0).stop  # a tie is never decided


def test_a_leader_that_cannot_be_overturned_is_decided() -> None:
    reader = AnswerReader("last_number")
    settings = AdaptiveSampling(confidence=0.99)
    answers = _candidates("1", "1", "1", "2")
    assert stop_decision(answers, reader, settings, remaining=1).reason == "decided"
    assert not stop_decision(answers, reader, settings, remaining=2).stop


def test_unreadable_answers_do_not_count_as_agreement() -> None:
    decision = stop_decision(
        _candidates("no idea", "none", "?", "!"),
        AnswerReader("last_number"),
        AdaptiveSampling(),
    )
    assert not decision.stop and decision.score is None


def test_text_agreement_measures_word_trigrams() -> None:
    same = "the sky is blue because of rayleigh scattering"
    assert text_agreement([same, same]) == 1.0
    assert text_agreement([same, "cats sleep most of the day"]) == 0.0
    reader = AnswerReader(None)
    assert stop_decision(_candidates(same, same), reader, AdaptiveSampling(agreement=0.8)).stop


def test_agree_early_stops_after_the_needed_rounds() -> None:
    model = ScriptedBackend({"candidate": ["12"] * 8, "fusor": "unused"})
    spec = FusionSpec(
        pool=[model], n=8, strategy="vote", adaptive={"first": 2, "step": 1, "confidence": 0.95}
    )
    result = spec.build().run("What is 3 * 4?")
    assert result.content == "12"
    assert result.sampling is not None
    assert result.sampling.rounds == [2, 1, 1]
    assert result.sampling.samples_used == 4
    assert result.sampling.max_samples == 8
    assert result.sampling.stop_reason == "settled"
    assert [c.index for c in result.candidates] == [0, 1, 2, 3]
    assert len(model.requests_for("candidate")) == 4
    assert result.usage.saved.calls == 4
    assert result.usage.saved.total_tokens == 4 * result.candidates[0].usage.total_tokens


def test_never_agree_uses_all_n() -> None:
    model = ScriptedBackend({"candidate": [str(i) for i in range(8)]})
    result = FusionSpec(pool=[model], n=8, strategy="vote", adaptive={}).build().run("q")
    assert result.sampling is not None
    assert result.sampling.stop_reason == "exhausted"
    assert result.sampling.samples_used == 8
    assert result.content == "0"  # a tie of singletons goes to the first answer
    assert sum(result.sampling.rounds) == 8
    assert result.usage.saved.calls == 0


def test_a_tie_keeps_sampling_until_broken() -> None:
    answers = ["1", "2", "1", "2", "1", "1", "1", "1"]
    model = ScriptedBackend({"candidate": answers})
    spec = FusionSpec(pool=[model], n=8, strategy="vote", adaptive={"confidence": 0.9})
    result = spec.build().run("q")
    assert result.sampling is not None
    # 2-1, 2-2, 3-2, 4-2 stay below 0.9; at 5 to 2 (P = 0.855) the one sample left could
    # not overturn the leader, so the vote is decided.
    assert result.sampling.samples_used == 7
    assert result.content == "1"
    assert result.sampling.stop_reason == "decided"
    assert "could not overturn" in result.sampling.detail


def test_the_default_rule_stops_on_three_agreeing_answers() -> None:
    model = ScriptedBackend({"candidate": ["5", "5", "5", "6"]})
    result = FusionSpec(pool=[model], n=8, strategy="vote", adaptive={}).build().run("q")
    assert result.sampling is not None
    assert result.sampling.rounds == [3]
    assert result.sampling.stop_reason == "settled"
    assert result.sampling.score == pytest.approx(15 / 16)


def test_a_larger_first_round_can_settle_at_once() -> None:
    model = ScriptedBackend({"candidate": ["7"] * 8}, supports_n=True)
    spec = FusionSpec(pool=[model], n=8, strategy="vote", adaptive={"first": 4, "step": 2})
    result = spec.build().run("q")
    assert result.sampling is not None and result.sampling.rounds == [4]
    assert result.sampling.samples_used == 4


def test_seeds_stay_distinct_across_rounds() -> None:
    model = ScriptedBackend({"candidate": ["1", "2", "3", "3", "3", "3"]})
    spec = FusionSpec(pool=[model], n=6, strategy="vote", adaptive={}, params={"seed": 10})
    result = spec.build().run("q")
    seeds = [r.params.seed for r in model.requests_for("candidate")]
    assert sorted(seeds) == list(range(10, 10 + result.sampling.samples_used))  # type: ignore[union-attr]


def test_panel_rounds_follow_the_pool_order() -> None:
    members = [ScriptedBackend({"candidate": "42"}, name=f"m{i}") for i in range(6)]
    result = FusionSpec(pool=members, strategy="vote", adaptive={}).build().run("q")
    assert [c.backend for c in result.candidates] == ["m0", "m1", "m2"]
    assert all(not m.requests_for("candidate") for m in members[3:])


def test_open_ended_text_stops_on_agreement() -> None:
    text = "Rayleigh scattering makes short wavelengths scatter more, so the sky looks blue."
    model = ScriptedBackend({"candidate": [text] * 5, "fusor": "fused"})
    spec = FusionSpec(pool=[model], n=5, strategy="fuse", adaptive={"first": 2}, consensus="off")
    result = spec.build().run("Why is the sky blue?")
    assert result.sampling is not None
    assert result.sampling.criterion == "text"
    assert result.sampling.stop_reason == "agreement"
    assert result.sampling.samples_used == 2
    assert result.content == "fused"


def test_adaptive_and_quorum_are_exclusive() -> None:
    model = ScriptedBackend({"candidate": "1"})
    with pytest.raises(InvalidRequestError, match="set only one"):
        FusionSpec(pool=[model], n=4, adaptive={}, quorum=2).build()


def test_a_bad_adaptive_setting_is_named() -> None:
    with pytest.raises(InvalidRequestError, match="confidence"):
        FusionSpec(pool=[ScriptedBackend({"candidate": "1"})], adaptive={"confidence": 2})


def test_streamed_events_carry_pool_indices() -> None:
    from polyfuse.events import CandidateFinished, CandidateStarted, FusionDone

    model = ScriptedBackend({"candidate": ["1", "2", "3", "3", "3", "3"]})
    fusion = FusionSpec(pool=[model], n=6, strategy="vote", adaptive={"first": 2}).build()
    events = list(fusion.stream("q"))
    started = [e.index for e in events if isinstance(e, CandidateStarted)]
    finished = [e.candidate.index for e in events if isinstance(e, CandidateFinished)]
    done = events[-1]
    assert isinstance(done, FusionDone) and done.result.sampling is not None
    used = done.result.sampling.samples_used
    assert sorted(started) == sorted(finished) == list(range(used))

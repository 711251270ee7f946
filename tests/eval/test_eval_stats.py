"""Bootstrap CIs and significance on data with a known answer; the frontier."""

from __future__ import annotations

import math

import numpy as np

from polyfuse.eval import bootstrap, frontier


def test_the_ci_of_a_known_proportion_is_right_and_about_the_textbook_width() -> None:
    rng = np.random.default_rng(1)
    p, n = 0.7, 4000
    scores = (rng.random(n) < p).astype(float).tolist()
    estimates, _ = bootstrap({"x": scores})
    est = estimates["x"]
    assert est.low < p < est.high
    textbook = 2 * 1.96 * math.sqrt(p * (1 - p) / n)
    assert abs((est.high - est.low) - textbook) < 0.15 * textbook
    assert est.n == n and abs(est.mean - sum(scores) / n) < 1e-12


def test_95_percent_intervals_cover_the_truth_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    covered = 0
    trials = 200
    for trial in range(trials):
        scores = (rng.random(300) < 0.4).astype(float).tolist()
        est = bootstrap({"x": scores}, resamples=600, seed=trial)[0]["x"]
        covered += est.low <= 0.4 <= est.high
    assert 0.89 <= covered / trials <= 0.99


def test_a_real_paired_difference_is_significant_and_none_is_not() -> None:
    rng = np.random.default_rng(3)
    base = (rng.random(1000) < 0.6).astype(float)
    better = base.copy()
    # b fixes 8% of the prompts base gets wrong, and breaks none.
    wrong = np.flatnonzero(base == 0)
    better[wrong[: int(0.08 * 1000)]] = 1.0
    estimates, comparisons = bootstrap(
        {"better": better.tolist(), "base": base.tolist(), "same": base.tolist()}
    )
    diffs = {(c.a, c.b): c for c in comparisons}
    gain = diffs[("better", "base")]
    assert gain.significant and gain.p_value < 0.01
    assert gain.diff.low > 0.05 and abs(gain.diff.mean - 0.08) < 1e-9
    same = diffs[("base", "same")]
    assert not same.significant and same.p_value == 1.0
    # Paired: the difference's interval is far narrower than the two means' intervals.
    width = gain.diff.high - gain.diff.low
    assert width < (estimates["base"].high - estimates["base"].low)


def test_missing_scores_are_left_out_per_strategy_and_per_pair() -> None:
    estimates, comparisons = bootstrap({"a": [1, 0, None, 1], "b": [None, 0, 1, 1]})
    assert estimates["a"].n == 3 and estimates["b"].n == 3
    assert comparisons[0].diff.n == 2  # prompts 2 and 4 have both


def test_frontier_keeps_only_strategies_worth_their_cost() -> None:
    points = frontier(
        {"single": (0.80, 100), "vote": (0.86, 800), "fuse": (0.85, 1000), "usc": (0.87, 900)}
    )
    assert [p.strategy for p in points] == ["single", "vote", "usc", "fuse"]
    assert [p.strategy for p in points if p.on_frontier] == ["single", "vote", "usc"]

"""Paired comparisons on hand-computed cases."""

from __future__ import annotations

import pytest

from frugalign.paired import (
    mean_ci,
    paired_difference,
    pool_seeds,
    prompt_win_rate,
    prompt_win_rates,
    recovered_fraction,
)


def test_prompt_win_rate_uses_every_sample_pair():
    # (1 vs .5) win, (1 vs 0) win, (.5 vs .5) tie, (.5 vs 0) win -> 3.5 / 4
    assert prompt_win_rate([1.0, 0.5], [0.5, 0.0]) == 0.875
    assert prompt_win_rate([1.0, 0.0], [0.5]) == 0.5
    assert prompt_win_rate([0.3], [0.3, 0.3, 0.9]) == pytest.approx((0.5 + 0.5 + 0) / 3)
    with pytest.raises(ValueError):
        prompt_win_rate([], [1.0])


def test_prompt_win_rates_need_the_same_prompts():
    assert prompt_win_rates({"a": [1.0], "b": [0.0]}, {"a": [0.0], "b": [0.0]}) == {"a": 1.0, "b": 0.5}
    with pytest.raises(ValueError, match="different prompts"):
        prompt_win_rates({"a": [1.0]}, {"b": [1.0]})


def test_pooling_seeds_averages_per_prompt():
    assert pool_seeds([{"a": 1.0, "b": 0.0}, {"a": 0.5, "b": 0.5}]) == {"a": 0.75, "b": 0.25}
    with pytest.raises(ValueError, match="different test prompts"):
        pool_seeds([{"a": 1.0}, {"b": 1.0}])


def test_paired_difference_hand_computed():
    arm, base = {"p1": 1.0, "p2": 0.5}, {"p1": 0.5, "p2": 0.5}
    est = paired_difference(arm, base, n_boot=4000, seed=1)
    # per-prompt differences [0.5, 0]; a resample of two prompts has mean 0, 0.25 or 0.5
    # with probabilities 1/4, 1/2, 1/4, so the 2.5 % / 97.5 % quantiles are 0 and 0.5
    assert est.value == 0.25 and (est.low, est.high) == (0.0, 0.5)
    # a constant shift has a zero-width interval however the prompts are resampled
    shifted = paired_difference({k: v + 0.1 for k, v in base.items()}, base)
    assert shifted.value == pytest.approx(0.1) and shifted.low == pytest.approx(0.1) == shifted.high
    with pytest.raises(ValueError, match="share no test prompt"):
        paired_difference({"x": 1.0}, {"y": 1.0})


def test_paired_interval_is_narrower_than_unpaired_when_prompts_differ_in_difficulty():
    # prompt difficulty varies a lot; the arm is uniformly 0.05 better: pairing removes the variance
    base = {f"p{i}": 0.2 + 0.6 * (i % 5) / 4 for i in range(40)}
    arm = {k: v + 0.05 for k, v in base.items()}
    paired = paired_difference(arm, base, seed=0)
    a, b = mean_ci(arm, seed=0), mean_ci(base, seed=0)
    assert paired.high - paired.low < 1e-9 < (a.high - a.low) and b.low < b.value < b.high


def test_recovered_fraction_hand_computed():
    est = recovered_fraction({"p1": 0.75, "p2": 0.75}, {"p1": 1.0, "p2": 1.0})
    assert (est.value, est.low, est.high) == (0.5, 0.5, 0.5)
    none = recovered_fraction({"p1": 0.7}, {"p1": 0.5})  # the full-label arm gained nothing: no ratio
    assert none.value != none.value and none.low != none.low  # NaN


def test_base_question_reads_benchmark_ids_and_leaves_others_alone():
    from frugalign.paired import base_question

    assert base_question("ifeval/mtbench:81/s0v2") == "mtbench:81"
    assert base_question("house-style/generic:07/s3v0") == "generic:07"
    assert base_question("my-prompt-17") == "my-prompt-17"
    assert base_question("a/b/c") == "a/b/c"  # not a benchmark tail: its own cluster


def test_clustered_interval_resamples_base_questions_hand_computed():
    # Two base questions, four variants each: q1's prompts won, q2's lost. Resampling the two
    # clusters gives means 0 (¼), ½ (½) or 1 (¼), so the 95 % interval is [0, 1]; resampling
    # the eight prompts as if independent gives 0 or 1 with probability 1/256 each: narrower.
    by_prompt = {f"t/q{q}/s0v{v}": float(q == 1) for q in (1, 2) for v in range(4)}
    clustered = mean_ci(by_prompt, n_boot=4000, seed=1)
    assert clustered.value == 0.5
    assert (clustered.low, clustered.high) == (0.0, 1.0)
    flat = mean_ci(by_prompt, n_boot=4000, seed=1, cluster=None)
    assert flat.low > 0.0 and flat.high < 1.0
    # Paired differences resample the same clusters: a constant difference has a zero-width interval.
    base = {k: v - 0.25 for k, v in by_prompt.items()}
    d = paired_difference(by_prompt, base, seed=1)
    assert (d.value, d.low, d.high) == pytest.approx((0.25, 0.25, 0.25))

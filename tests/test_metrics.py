"""Tests for frugalign.metrics; expected numbers are derived by hand in comments."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from frugalign.metrics import (
    REWARDBENCH_EXAMPLE_COUNTS,
    REWARDBENCH_SUBSET_MAPPING,
    accuracy_by_group,
    annotation_accuracy,
    bootstrap_ci,
    cohens_kappa,
    coverage_curve,
    expected_calibration_error,
    pairwise_confidence_correct,
    pairwise_expected_calibration_error,
    rewardbench_sections,
    win_outcomes,
)
from frugalign.plots import reliability_diagram_png  # noqa: E402

# --- agreement -------------------------------------------------------------


def test_accuracy_tie_prediction_is_wrong_and_ref_ties_excluded():
    pred = ["A", "B", "tie", "A", "B"]
    ref = ["A", "A", "B", "tie", "B"]
    # item 3 has a tie reference -> excluded (1). Remaining 4 items:
    # 0 A/A right, 1 B/A wrong, 2 tie/B wrong (tie counts wrong), 4 B/B right
    # -> 2 / 4 = 0.5
    res = annotation_accuracy(pred, ref)
    assert res.accuracy == pytest.approx(0.5)
    assert res.n == 4
    assert res.n_ref_ties_excluded == 1
    assert res.n_correct == 2


def test_accuracy_accepts_case_and_rejects_unknown_labels():
    assert annotation_accuracy(["a", " B "], ["A", "b"]).accuracy == 1.0
    with pytest.raises(ValueError):
        annotation_accuracy(["C"], ["A"])
    with pytest.raises(ValueError):
        annotation_accuracy(["A"], ["A", "B"])


def test_accuracy_all_ref_ties_is_nan():
    res = annotation_accuracy(["A"], ["tie"])
    assert math.isnan(res.accuracy) and res.n == 0 and res.n_ref_ties_excluded == 1


def test_accuracy_by_group():
    pred = ["A", "B", "A", "tie", "B"]
    ref = ["A", "A", "B", "B", "tie"]
    groups = ["chat", "chat", "safety", "safety", "safety"]
    out = accuracy_by_group(pred, ref, groups)
    # chat: A/A right, B/A wrong -> 1/2
    # safety: A/B wrong, tie/B wrong, (B/tie excluded) -> 0/2, 1 excluded
    assert list(out) == ["chat", "safety"]
    assert out["chat"].accuracy == pytest.approx(0.5) and out["chat"].n == 2
    assert out["safety"].accuracy == 0.0 and out["safety"].n_ref_ties_excluded == 1


def test_cohens_kappa_two_by_two_table():
    # confusion (pred, ref): (A,A)=4 (A,B)=1 (B,A)=1 (B,B)=4, N=10
    # p_o = 8/10; marginals all 1/2 -> p_e = .25 + .25 = .5
    # kappa = (.8 - .5) / (1 - .5) = 0.6
    pred = ["A"] * 4 + ["A"] + ["B"] + ["B"] * 4
    ref = ["A"] * 4 + ["B"] + ["A"] + ["B"] * 4
    assert cohens_kappa(pred, ref) == pytest.approx(0.6)


def test_cohens_kappa_with_ties():
    pred = ["A", "A", "A", "B", "B", "tie"]
    ref = ["A", "A", "B", "B", "tie", "tie"]
    # agreements at 0,1,3,5 -> p_o = 4/6
    # pred marginals A 3/6, B 2/6, tie 1/6; ref A 2/6, B 2/6, tie 2/6
    # p_e = (3*2 + 2*2 + 1*2) / 36 = 12/36 = 1/3
    # kappa = (2/3 - 1/3) / (1 - 1/3) = 0.5
    assert cohens_kappa(pred, ref) == pytest.approx(0.5)


def test_cohens_kappa_degenerate_is_nan_and_perfect_is_one():
    assert math.isnan(cohens_kappa(["A", "A"], ["A", "A"]))  # p_e = 1
    assert cohens_kappa(["A", "B", "tie"], ["A", "B", "tie"]) == pytest.approx(1.0)


# --- calibration -----------------------------------------------------------


def test_ece_perfectly_calibrated_is_near_zero():
    rng = np.random.default_rng(123)
    conf = rng.uniform(0, 1, 200_000)
    correct = rng.uniform(0, 1, conf.size) < conf  # P(correct | c) = c
    res = expected_calibration_error(conf, correct, n_bins=10)
    assert res.ece < 0.02
    assert res.n == conf.size
    assert sum(b.count for b in res.bins) == conf.size


def test_ece_miscalibrated_hand_value():
    # 4 items at conf .15 (bin [.1,.2)), 1 right: acc .25, gap .10
    # 6 items at conf .85 (bin [.8,.9)), 3 right: acc .50, gap .35
    # ECE = 4/10 * .10 + 6/10 * .35 = .04 + .21 = 0.25 ; MCE = .35
    conf = [0.15] * 4 + [0.85] * 6
    correct = [1, 0, 0, 0] + [1, 1, 1, 0, 0, 0]
    res = expected_calibration_error(conf, correct, n_bins=10)
    assert res.ece == pytest.approx(0.25)
    assert res.mce == pytest.approx(0.35)
    b1, b8 = res.bins[1], res.bins[8]
    assert (b1.count, b8.count) == (4, 6)
    assert b1.mean_confidence == pytest.approx(0.15) and b1.accuracy == pytest.approx(0.25)
    assert b8.mean_confidence == pytest.approx(0.85) and b8.accuracy == pytest.approx(0.5)
    assert res.bins[0].count == 0 and math.isnan(res.bins[0].accuracy)
    assert len(res.bins) == 10


def test_ece_confidence_one_goes_to_top_bin():
    res = expected_calibration_error([1.0, 0.0], [True, False], n_bins=4)
    # 1.0 -> last bin (closed), 0.0 -> first bin; both perfectly calibrated
    assert res.bins[3].count == 1 and res.bins[0].count == 1
    assert res.ece == pytest.approx(0.0)
    with pytest.raises(ValueError):
        expected_calibration_error([1.2], [True])


def test_pairwise_confidence_and_ece():
    p_a = [0.9, 0.2, 0.6, 0.5, 0.7]
    ref = ["A", "B", "B", "A", "tie"]
    # item 4 ref tie -> dropped. conf = max(p, 1-p) = .9 .8 .6 .5
    # correct: .9->A vs A yes; .2->B vs B yes; .6->A vs B no; .5->tie no
    conf, correct, n_ties = pairwise_confidence_correct(p_a, ref)
    np.testing.assert_allclose(conf, [0.9, 0.8, 0.6, 0.5])
    assert correct.tolist() == [True, True, False, False]
    assert n_ties == 1
    # bins: .9 -> b9 (acc 1, gap .1), .8 -> b8 (gap .2), .6 -> b6 (gap .6),
    # .5 -> b5 (gap .5): ECE = (.1 + .2 + .6 + .5) / 4 = 0.35
    res = pairwise_expected_calibration_error(p_a, ref)
    assert res.ece == pytest.approx(0.35)
    assert res.n == 4 and res.n_ref_ties_excluded == 1


def test_reliability_diagram_png_written_atomically(tmp_path):
    res = expected_calibration_error([0.15] * 4 + [0.85] * 6, [1, 0, 0, 0, 1, 1, 1, 0, 0, 0])
    target = tmp_path / "rel.png"
    out = reliability_diagram_png(res.bins, target, title="weak judge")
    assert out == os.fspath(target)
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"  # PNG signature
    assert data[12:16] == b"IHDR" and len(data) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel.png"]  # no temp left
    reliability_diagram_png(res.bins, target)  # overwrite works
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- coverage --------------------------------------------------------------


def test_coverage_curve_hand_values_and_stable_ties():
    conf = [0.9, 0.8, 0.8, 0.6, 0.55, 0.5, 0.95, 0.7]
    correct = [1, 0, 1, 1, 0, 0, 1, 0]
    # descending, stable: idx6 .95 (1), idx0 .9 (1), idx1 .8 (0), idx2 .8 (1),
    #                     idx7 .7 (0), idx3 .6 (1), idx4 .55 (0), idx5 .5 (0)
    # f=.25 -> k=2: 2/2 = 1.0 ; f=.3 -> k=ceil(2.4)=3: 2/3 (idx1 before idx2)
    # f=.5 -> k=4: 3/4 ; f=.75 -> k=6: 4/6 ; f=1 -> k=8: 4/8
    pts = coverage_curve(conf, correct, fractions=(0.25, 0.3, 0.5, 0.75, 1.0))
    assert [p.k for p in pts] == [2, 3, 4, 6, 8]
    np.testing.assert_allclose([p.accuracy for p in pts], [1.0, 2 / 3, 0.75, 4 / 6, 0.5])
    assert pts[2].min_confidence == pytest.approx(0.8)


def test_coverage_curve_float_fraction_edge():
    # 0.3 * 10 is 3.0000000000000004 in floats; k must still be 3, not 4
    pts = coverage_curve(np.linspace(1, 0.1, 10), [1] * 10, fractions=(0.3, 0.1))
    assert [p.k for p in pts] == [3, 1]


# --- RewardBench -----------------------------------------------------------


def _rb_examples():
    ex = []
    ex += [("alpacaeval-easy", True)] * 2  # acc 1.0
    ex += [("mt-bench-easy", True)] + [("mt-bench-easy", False)] * 3  # acc .25
    ex += [{"subset": "math-prm", "correct": True}, {"subset": "math-prm", "correct": False}]
    ex += [("hep-python", True)]  # acc 1.0
    ex += [("donotanswer", False)] * 2  # acc 0
    ex += [("my-private-subset", True)] * 3  # unknown
    return ex


def test_rewardbench_official_weights_hand_values():
    res = rewardbench_sections(_rb_examples())
    # Chat = (100*1.0 + 28*.25) / (100 + 28) = 107/128 = 0.8359375
    # Reasoning = (984*.5 + 164*1.0) / (984 + 164) = 656/1148 = 4/7
    # Safety = donotanswer only = 0.0 ; Chat Hard absent
    # overall = (107/128 + 4/7 + 0) / 3
    assert res.sections["Chat"] == pytest.approx(107 / 128)
    assert res.sections["Reasoning"] == pytest.approx(4 / 7)
    assert res.sections["Safety"] == 0.0
    assert "Chat Hard" not in res.sections
    assert res.overall == pytest.approx((107 / 128 + 4 / 7) / 3)
    assert res.unknown_subsets == {"my-private-subset": 3}
    assert res.subset_counts["mt-bench-easy"] == 4
    assert res.subset_accuracy["math-prm"] == pytest.approx(0.5)


def test_rewardbench_observed_weights_hand_values():
    res = rewardbench_sections(_rb_examples(), weighting="observed")
    # Chat pooled: 3 right of 6 = 0.5 ; Reasoning pooled: 2 of 3 ; Safety 0
    assert res.sections["Chat"] == pytest.approx(0.5)
    assert res.sections["Reasoning"] == pytest.approx(2 / 3)
    assert res.overall == pytest.approx((0.5 + 2 / 3 + 0) / 3)


def test_rewardbench_constants_match_official():
    # 23 subsets, all weighted; math-prm upweighted to the six hep-* total
    subsets = [s for subs in REWARDBENCH_SUBSET_MAPPING.values() for s in subs]
    assert len(subsets) == 23 == len(set(subsets))
    assert set(subsets) == set(REWARDBENCH_EXAMPLE_COUNTS)
    assert REWARDBENCH_EXAMPLE_COUNTS["math-prm"] == 6 * REWARDBENCH_EXAMPLE_COUNTS["hep-go"]


# --- win rate and bootstrap -------------------------------------------------


def test_win_rate_with_ties_hand_value():
    policy = [3, 2, 5, 1, 4]
    base = [1, 2, 6, 1, 0]
    # win, tie, loss, tie, win -> (1 + .5 + 0 + .5 + 1) / 5 = 0.6
    assert win_outcomes(policy, base).tolist() == [1.0, 0.5, 0.0, 0.5, 1.0]
    assert win_outcomes(policy, base).mean() == pytest.approx(0.6)
    # with tie_tol=1: diffs 2,0,-1,0,4 -> win, tie, tie, tie, win -> 3.5/5 = .7
    assert win_outcomes(policy, base, tie_tol=1.0).mean() == pytest.approx(0.7)


def test_bootstrap_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(7)
    vals = rng.normal(0.3, 1.0, 300)
    lo, hi = bootstrap_ci(vals, seed=11)
    assert lo < vals.mean() < hi
    assert (lo, hi) == bootstrap_ci(vals, seed=11)
    assert (lo, hi) != bootstrap_ci(vals, seed=12)
    lo_med, hi_med = bootstrap_ci(vals, stat=np.median, n_boot=500)
    assert lo_med < np.median(vals) < hi_med


def test_cluster_bootstrap_resamples_prompts():
    # two prompts, 50 samples each: prompt 0 always 0, prompt 1 always 1.
    # Resampling 2 prompts gives means 0 (p=1/4), .5 (p=1/2), 1 (p=1/4),
    # so the 95% percentile interval is exactly [0, 1].
    vals = np.array([0.0] * 50 + [1.0] * 50)
    groups = [0] * 50 + [1] * 50
    assert bootstrap_ci(vals, groups=groups) == (0.0, 1.0)
    # item-level bootstrap of the same 100 values: sd ~ .05, far narrower
    lo, hi = bootstrap_ci(vals)
    assert 0.3 < lo < 0.5 < hi < 0.7

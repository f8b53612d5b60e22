"""The hybrid annotator: calibration on synthetic data, symmetry, the gate, bad settings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from frugalign.annotate.hybrid import HybridAnnotator, HybridSettings, choose_gate, fit_hybrid, pair_signals
from frugalign.errors import ConfigError, DataError
from frugalign.records import Annotation, PreferencePair


def test_probabilities_match_frequencies_on_synthetic_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 1))
    y = rng.random(3000) < 1 / (1 + np.exp(-2.0 * x[:, 0]))  # true weight 2
    winners = ["A" if v else "B" for v in y]
    fit = fit_hybrid(x, winners, [str(i) for i in range(3000)], HybridSettings(min_agreement=0.0), np.ones(1))
    assert fit.weights[0] == pytest.approx(2.0, rel=0.15)
    p = fit.p_a(x)
    for lo, hi in [(0.1, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 0.9)]:
        sel = (p >= lo) & (p < hi)
        assert abs(y[sel].mean() - p[sel].mean()) < 0.06, (lo, hi)


def test_gate_is_the_lowest_confidence_reaching_the_agreement_hand_computed():
    # confidences 0.9 0.8 0.6 0.4 0.2 0.1 (p = (1 + c) / 2, all say A); the 0.4 and 0.1 ones are wrong.
    conf = np.array([0.9, 0.8, 0.6, 0.4, 0.2, 0.1])
    p = (1 + conf) / 2
    y = np.array([1, 1, 1, 0, 1, 0], dtype=float)
    # kept >= 0.1: (4+1)/(6+2) = .625; >= 0.2: 5/7; >= 0.4: 4/6; >= 0.6: (3+1)/(3+2) = 0.8 -> gate 0.6
    assert choose_gate(p, y, 0.75) == pytest.approx((0.6, 0.8, 3))
    assert choose_gate(p, y, 0.6)[0] == pytest.approx(0.1)
    assert choose_gate(p, y, 0.95) == (1.01, pytest.approx(float("nan"), nan_ok=True), 0)  # closed


def _pair(i: int, a: str, b: str) -> PreferencePair:
    return PreferencePair(f"q{i}:0-1", f"question {i}", a, b, prompt_id=f"q{i}")


FINISHED = "A short answer that ends."
CUT = "A long answer that goes on and on about many things and then stops in the middle of a"


def _pairs(n: int, start: int = 0) -> list[PreferencePair]:
    return [_pair(i, FINISHED, CUT) if i % 2 else _pair(i, CUT + " x" * (i % 3), FINISHED) for i in range(start, start + n)]


def test_learns_from_labels_labels_the_rest_and_is_symmetric():
    human = _pairs(12)
    labels = [Annotation(p.id, "A" if p.response_a == FINISHED else "B", 1.0, 1.0, "human") for p in human]
    rest = _pairs(8, start=100)
    ann = HybridAnnotator(HybridSettings(min_agreement=0.75))
    fit = ann.fit(human, labels, rest)
    assert fit.weights[fit.signals.index("unfinished")] < 0 and fit.cv_agreement == 1.0
    out = ann.annotate(rest)
    assert [a.preferred for a in out] == ["A" if p.response_a == FINISHED else "B" for p in rest]
    assert all(not a.details["gated"] and a.source == "hybrid" for a in out)
    swapped = [PreferencePair(p.id + "s", p.prompt, p.response_b, p.response_a, prompt_id=p.prompt_id) for p in rest]
    for a, b in zip(out, ann.annotate(swapped)):
        assert a.p_a == pytest.approx(1 - b.p_a)


def test_an_open_gate_on_few_labels_warns_and_on_many_does_not():
    def fit(n: int):
        human = _pairs(n)
        labels = [Annotation(p.id, "A" if p.response_a == FINISHED else "B", 1.0, 1.0, "human") for p in human]
        return HybridAnnotator(HybridSettings(min_agreement=0.75)).fit(human, labels, _pairs(8, start=500))

    with pytest.warns(UserWarning, match="opened on only 12 non-tied human labels"):
        assert fit(12).threshold <= 1.0  # the gate is open: the warning is about an open gate
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit(40).threshold <= 1.0


def test_signals_are_differences_and_bad_settings_fail_in_one_line():
    x = pair_signals([_pair(0, "one two three.", "one")], ("length", "unfinished"))
    assert x[0, 0] == pytest.approx(np.log(4) - np.log(2)) and x[0, 1] == -1.0
    with pytest.raises(ConfigError, match="signals"):
        HybridSettings(signals=("length", "vibes")).validate()
    with pytest.raises(ConfigError, match="min_agreement"):
        HybridSettings(min_agreement=1.5).validate()
    with pytest.raises(ConfigError, match="density-ratio"):
        HybridAnnotator(HybridSettings(signals=("drsow",)))
    human = _pairs(3)
    labels = [Annotation(p.id, "A", 1.0, 1.0, "human") for p in human]
    with pytest.raises(DataError, match="at least 4 non-tied human labels"):
        HybridAnnotator(HybridSettings()).fit(human, labels, _pairs(4, start=50))

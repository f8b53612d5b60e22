"""Pure evaluation metrics for annotators and policies (numpy only).

What lives here:

* agreement of an annotator with reference labels: accuracy (RewardBench
  rule: a predicted tie is wrong, reference ties are excluded and counted),
  per-group accuracy and Cohen's kappa over {A, B, tie};
* calibration: expected calibration error with per-bin reliability data, the
  pairwise form from P(A preferred) (the reliability-diagram PNG is drawn by
  :mod:`frugalign.plots`);
* selective annotation: accuracy of the k% most confident labels;
* RewardBench section scores with the official subset->section map and
  the official per-subset weights;
* per-item win outcomes and (cluster) bootstrap percentile intervals (the
  paired policy comparisons built on them live in :mod:`frugalign.paired`).

No model code, no plotting and no imports from other frugalign modules, so
every function can be tested on hand-made numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LABELS: tuple[str, ...] = ("A", "B", "tie")
_LABEL_ALIASES = {"a": "A", "b": "B", "tie": "tie"}


def _norm_label(x: Any) -> str:
    """Map 'a'/'A'/' tie ' etc. to the canonical label; reject anything else."""
    key = str(x).strip().lower()
    if key not in _LABEL_ALIASES:
        raise ValueError(f"unknown preference label {x!r}; expected one of {LABELS}")
    return _LABEL_ALIASES[key]


def _norm_labels(xs: Iterable[Any]) -> list[str]:
    return [_norm_label(x) for x in xs]


def _check_same_len(*arrays: Sequence[Any]) -> None:
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"inputs must have equal length, got {sorted(lengths)}")


# --------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AccuracyResult:
    """Accuracy over non-tie references; ``n`` counts the pairs scored."""

    accuracy: float
    n: int
    n_ref_ties_excluded: int
    n_correct: int = 0


def annotation_accuracy(pred: Sequence[Any], ref: Sequence[Any]) -> AccuracyResult:
    """Accuracy of predicted labels against reference labels.

    A predicted "tie" is wrong against an A/B reference (RewardBench counts a
    tied score as a failure). Pairs whose reference is "tie" have no right
    answer for a two-way judge, so they are excluded and counted.
    Accuracy is NaN when no pair is left.
    """
    _check_same_len(pred, ref)
    p, r = _norm_labels(pred), _norm_labels(ref)
    n_ties = sum(1 for x in r if x == "tie")
    n_correct = sum(1 for a, b in zip(p, r) if b != "tie" and a == b)
    n = len(r) - n_ties
    acc = n_correct / n if n else float("nan")
    return AccuracyResult(accuracy=acc, n=n, n_ref_ties_excluded=n_ties, n_correct=n_correct)


def accuracy_by_group(
    pred: Sequence[Any], ref: Sequence[Any], groups: Sequence[Hashable]
) -> dict[Hashable, AccuracyResult]:
    """``annotation_accuracy`` per group (e.g. domain), in first-seen order."""
    _check_same_len(pred, ref, groups)
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    return {
        g: annotation_accuracy([pred[i] for i in idx], [ref[i] for i in idx])
        for g, idx in members.items()
    }


def cohens_kappa(pred: Sequence[Any], ref: Sequence[Any]) -> float:
    """Cohen's kappa over the label set {A, B, tie}.

    kappa = (p_o - p_e) / (1 - p_e) with p_o the observed agreement and p_e the
    agreement expected from the two marginals. Undefined (NaN) when p_e == 1,
    i.e. both raters use one and the same label throughout, or inputs are empty.
    """
    _check_same_len(pred, ref)
    p, r = _norm_labels(pred), _norm_labels(ref)
    n = len(p)
    if n == 0:
        return float("nan")
    p_o = sum(1 for a, b in zip(p, r) if a == b) / n
    p_e = sum((p.count(k) / n) * (r.count(k) / n) for k in LABELS)
    if math.isclose(p_e, 1.0):
        return float("nan")
    return (p_o - p_e) / (1.0 - p_e)


# --------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width confidence bin; mean_confidence/accuracy NaN if empty."""

    lower: float
    upper: float
    mean_confidence: float
    accuracy: float
    count: int


@dataclass(frozen=True)
class ECEResult:
    """ECE (count-weighted mean |accuracy - confidence| over bins) and bins."""

    ece: float
    mce: float  # max gap over non-empty bins
    n: int
    bins: list[ReliabilityBin] = field(default_factory=list)
    n_ref_ties_excluded: int = 0


def expected_calibration_error(
    confidence_of_predicted: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    n_bins: int = 10,
) -> ECEResult:
    """Expected calibration error with ``n_bins`` equal-width bins on [0, 1].

    Bins are [k/n, (k+1)/n) with the last bin closed, so a confidence of 1.0
    lands in the top bin. ECE = sum_b (count_b / N) * |acc_b - conf_b|.
    Returns every bin (empty ones with NaN stats) for reliability diagrams.
    """
    conf = np.asarray(confidence_of_predicted, dtype=float)
    corr = np.asarray(correct, dtype=bool)
    _check_same_len(conf, corr)
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if conf.size and (np.isnan(conf).any() or conf.min() < 0 or conf.max() > 1):
        raise ValueError("confidences must lie in [0, 1]")
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    bins: list[ReliabilityBin] = []
    ece, mce, n = 0.0, 0.0, conf.size
    for b in range(n_bins):
        mask = idx == b
        cnt = int(mask.sum())
        mc = float(conf[mask].mean()) if cnt else float("nan")
        acc = float(corr[mask].mean()) if cnt else float("nan")
        if cnt:
            gap = abs(acc - mc)
            ece += cnt / n * gap
            mce = max(mce, gap)
        bins.append(ReliabilityBin(b / n_bins, (b + 1) / n_bins, mc, acc, cnt))
    if n == 0:
        ece = mce = float("nan")
    return ECEResult(ece=float(ece), mce=float(mce), n=int(n), bins=bins)


def pairwise_confidence_correct(
    p_a: Sequence[float] | np.ndarray, ref: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Turn P(A preferred) into (confidence, correct) for non-tie references.

    The predicted label is A if p > 0.5, B if p < 0.5 and a tie at exactly
    0.5 (counted wrong, as in ``annotation_accuracy``); its confidence is
    max(p, 1 - p). Reference ties are dropped; their number is returned third.
    """
    p = np.asarray(p_a, dtype=float)
    r = _norm_labels(ref)
    _check_same_len(p, r)
    if p.size and (np.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise ValueError("p_a must lie in [0, 1]")
    keep = np.array([x != "tie" for x in r], dtype=bool)
    ref_is_a = np.array([x == "A" for x in r], dtype=bool)
    conf = np.maximum(p, 1.0 - p)
    correct = np.where(ref_is_a, p > 0.5, p < 0.5)
    return conf[keep], correct[keep], int((~keep).sum())


def pairwise_expected_calibration_error(
    p_a: Sequence[float] | np.ndarray, ref: Sequence[Any], n_bins: int = 10
) -> ECEResult:
    """ECE of pairwise probabilities P(A preferred) against reference labels.

    Confidences live in [0.5, 1], so with the default 10 bins only the upper
    five are populated; the bins stay on [0, 1] so diagrams are comparable.
    """
    conf, correct, n_ties = pairwise_confidence_correct(p_a, ref)
    res = expected_calibration_error(conf, correct, n_bins=n_bins)
    return ECEResult(res.ece, res.mce, res.n, res.bins, n_ref_ties_excluded=n_ties)


# --------------------------------------------------------------------------
# Selective annotation
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CoveragePoint:
    """Accuracy of the ``k`` most confident items (``fraction`` of all)."""

    fraction: float
    k: int
    accuracy: float
    min_confidence: float


def coverage_curve(
    confidence: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    fractions: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0),
) -> list[CoveragePoint]:
    """Accuracy of the k% most confident annotations.

    k = ceil(fraction * N) (at least 1). Sorting is stable: among equal
    confidences the earlier item ranks first, so the curve is reproducible.
    """
    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=bool)
    _check_same_len(conf, corr)
    n = conf.size
    order = np.argsort(-conf, kind="stable")
    # prefix sums make each point O(1) after the sort
    cum = np.cumsum(corr[order])
    out: list[CoveragePoint] = []
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {f}")
        if n == 0:
            out.append(CoveragePoint(float(f), 0, float("nan"), float("nan")))
            continue
        k = min(n, max(1, math.ceil(f * n - 1e-9)))  # 1e-9: 0.3*10 is 3.0000000000000004
        out.append(CoveragePoint(float(f), k, float(cum[k - 1] / k), float(conf[order[k - 1]])))
    return out


# --------------------------------------------------------------------------
# RewardBench
# --------------------------------------------------------------------------

# Official subset -> section map (allenai/reward-bench, rewardbench/constants.py
# SUBSET_MAPPING; checked against the stored copy of that file).
REWARDBENCH_SUBSET_MAPPING: dict[str, tuple[str, ...]] = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard",
             "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor",
                  "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "Safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse",
               "xstest-should-respond", "donotanswer"),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js",
                  "hep-python", "hep-rust"),
}

# Official per-subset weights (rewardbench/constants.py EXAMPLE_COUNTS). The
# section score is sum(acc_s * w_s) / sum(w_s) over the subsets present, with
# these fixed w_s, not the counts observed in a run. math-prm has 447 pairs
# but weight 984 = 6 * 164 ("upweighting to be equal to code"), so math and
# the six HumanEvalPack languages count equally in Reasoning. The xstest
# weights are copied as that file has them (refuse 250, respond 154) although
# the filtered dataset holds 154 refuse / 250 respond pairs; some copies of
# the code swap them. Pass ``example_counts`` to override.
REWARDBENCH_EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95,
    "mt-bench-easy": 28, "mt-bench-med": 40, "mt-bench-hard": 37,
    "math-prm": 984, "refusals-dangerous": 100, "refusals-offensive": 100,
    "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46,
    "xstest-should-refuse": 250, "xstest-should-respond": 154, "donotanswer": 136,
    "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164,
    "hep-python": 164, "hep-rust": 164,
}

_SUBSET_TO_SECTION = {s: sec for sec, subs in REWARDBENCH_SUBSET_MAPPING.items() for s in subs}


@dataclass(frozen=True)
class RewardBenchResult:
    """Section scores in [0, 1] (multiply by 100 for the leaderboard scale)."""

    sections: dict[str, float]
    overall: float
    subset_accuracy: dict[str, float]
    subset_counts: dict[str, int]
    unknown_subsets: dict[str, int]  # subset name -> examples not scored
    weighting: str


def _example_fields(ex: Any) -> tuple[str, bool]:
    if isinstance(ex, Mapping):
        return str(ex["subset"]), bool(ex["correct"])
    subset, correct = ex  # (subset, correct) pairs
    return str(subset), bool(correct)


def rewardbench_sections(
    per_example: Iterable[Mapping[str, Any] | tuple[str, bool]],
    weighting: str = "official",
    example_counts: Mapping[str, int] | None = None,
) -> RewardBenchResult:
    """RewardBench section and overall scores from per-example correctness.

    Each example is a mapping with ``subset`` and ``correct`` (or a
    ``(subset, correct)`` pair). Per-subset accuracy = mean correctness.
    ``weighting="official"`` weights subsets by RewardBench's fixed
    EXAMPLE_COUNTS (math-prm upweighted to equal code), as
    ``calculate_scores_per_section`` does; ``"observed"`` weights by the
    examples actually seen (a plain pooled accuracy per section).
    Sections with no subset present are left out (the official code writes 0);
    overall = mean of the sections present. Subsets outside the official map
    are not scored but reported in ``unknown_subsets`` with their counts.
    """
    if weighting not in ("official", "observed"):
        raise ValueError("weighting must be 'official' or 'observed'")
    weights = dict(REWARDBENCH_EXAMPLE_COUNTS if example_counts is None else example_counts)
    n_seen: dict[str, int] = {}
    n_right: dict[str, int] = {}
    for ex in per_example:
        subset, correct = _example_fields(ex)
        n_seen[subset] = n_seen.get(subset, 0) + 1
        n_right[subset] = n_right.get(subset, 0) + int(correct)
    acc = {s: n_right[s] / n_seen[s] for s in n_seen}
    unknown = {s: c for s, c in n_seen.items() if s not in _SUBSET_TO_SECTION}
    sections: dict[str, float] = {}
    for section, subsets in REWARDBENCH_SUBSET_MAPPING.items():
        present = [s for s in subsets if s in acc]
        if not present:
            continue
        w = [n_seen[s] if weighting == "observed" else weights[s] for s in present]
        sections[section] = float(sum(acc[s] * wi for s, wi in zip(present, w)) / sum(w))
    overall = float(np.mean(list(sections.values()))) if sections else float("nan")
    return RewardBenchResult(sections, overall, acc, n_seen, unknown, weighting)


# --------------------------------------------------------------------------
# Win rate and bootstrap
# --------------------------------------------------------------------------


def win_outcomes(
    scores_policy: Sequence[float] | np.ndarray,
    scores_baseline: Sequence[float] | np.ndarray,
    tie_tol: float = 0.0,
) -> np.ndarray:
    """Per-item outcome: 1 win, 0.5 tie (|diff| <= tie_tol), 0 loss."""
    a = np.asarray(scores_policy, dtype=float)
    b = np.asarray(scores_baseline, dtype=float)
    _check_same_len(a, b)
    d = a - b
    return np.where(np.abs(d) <= tie_tol, 0.5, (d > 0).astype(float))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) of ``stat(values)``.

    Without ``groups`` items are resampled with replacement. With ``groups``
    (e.g. a prompt id per sample) whole groups are resampled and their items
    pooled: samples of one prompt are correlated, so an item-level bootstrap
    would give too narrow an interval. Deterministic for a given seed.
    """
    v = np.asarray(values, dtype=float)  # rows are items: a 2-D array resamples whole rows
    if len(v) == 0:
        return float("nan"), float("nan")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot, dtype=float)
    if groups is None:
        for i in range(n_boot):
            boot[i] = stat(v[rng.integers(0, len(v), len(v))])
    else:
        _check_same_len(v, groups)
        members: dict[Hashable, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        index_sets = [np.asarray(ix) for ix in members.values()]
        for i in range(n_boot):
            pick = rng.integers(0, len(index_sets), len(index_sets))
            boot[i] = stat(v[np.concatenate([index_sets[j] for j in pick])])
    if np.isnan(boot).mean() > 0.5:  # a statistic undefined on most resamples has no interval
        return float("nan"), float("nan")
    low, high = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)

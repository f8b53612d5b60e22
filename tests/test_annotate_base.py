"""Rewards -> annotations: confidence formula, ties, NaN handling, best-of-N pair building."""

from __future__ import annotations

import math

import pytest

from frugalign.annotate import Annotator, RewardAnnotator, annotation_from_rewards, confidence_from_p
from frugalign.annotate.base import RewardResult, pairs_from_pool
from frugalign.errors import ConfigError, DataError
from frugalign.records import PreferencePair, PromptItem


class TableReward:
    """Reward = a lookup by response text (NaN for unknown texts)."""

    def __init__(self, table):
        self.table, self.stats = table, {"calls": 0}

    def rewards(self, items):
        self.stats["calls"] += 1
        return [RewardResult(self.table.get(it.response, math.nan), {"len": len(it.response)}) for it in items]


def pair(pid, a, b, **kw):
    return PreferencePair(id=pid, prompt="q", response_a=a, response_b=b, **kw)


@pytest.mark.parametrize("p, c", [(0.5, 0.0), (0.75, 0.5), (0.25, 0.5), (1.0, 1.0), (0.0, 1.0), (0.9, 0.8)])
def test_confidence_formula(p, c):
    # C = 2·(max(p, 1−p) − 0.5)
    assert confidence_from_p(p) == pytest.approx(c)


def test_annotation_from_rewards_uses_sigmoid_of_margin_over_temperature():
    ann = annotation_from_rewards("x", 2.0, 0.0, "density_ratio")
    p = 1 / (1 + math.exp(-2.0))  # σ(2) = 0.8808
    assert ann.preferred == "A" and ann.p_a == pytest.approx(p)
    assert ann.confidence == pytest.approx(2 * (p - 0.5))
    ann_t = annotation_from_rewards("x", 0.0, 2.0, "density_ratio", temperature=2.0)
    assert ann_t.preferred == "B" and ann_t.p_a == pytest.approx(1 / (1 + math.exp(1.0)))  # σ(−2/2)
    tie = annotation_from_rewards("x", 1.5, 1.5, "implicit")
    assert (tie.preferred, tie.p_a, tie.confidence) == ("tie", 0.5, 0.0)
    assert tie.details["margin"] == 0.0


def test_reward_annotator_pairs_counts_and_details():
    ann = RewardAnnotator(TableReward({"good": 3.0, "bad": 1.0, "same": 1.0}), "implicit")
    assert isinstance(ann, Annotator)
    out = ann.annotate([pair("1", "good", "bad"), pair("2", "bad", "good"), pair("3", "bad", "same")])
    assert [a.preferred for a in out] == ["A", "B", "tie"]
    assert out[0].details["len_a"] == 4 and out[0].details["len_b"] == 3
    assert ann.stats["pairs"] == 3 and ann.stats["annotated"] == 3 and ann.stats["score_ties"] == 1
    assert ann.stats["calls"] == 1  # the reward function's own counters are merged in


def test_nan_rewards_error_or_are_counted():
    pairs = [pair("1", "good", "bad"), pair("2", "good", "unknown")]
    with pytest.raises(DataError, match="pair 2: reward is NaN"):
        RewardAnnotator(TableReward({"good": 1.0, "bad": 0.0}), "implicit").annotate(pairs)
    skip = RewardAnnotator(TableReward({"good": 1.0, "bad": 0.0}), "implicit", nan_policy="skip")
    out = skip.annotate(pairs)
    assert [a.pair_id for a in out] == ["1"] and skip.stats["nan_pairs_skipped"] == 1
    with pytest.raises(ConfigError):
        RewardAnnotator(TableReward({}), "implicit", nan_policy="ignore")
    with pytest.raises(ConfigError):
        RewardAnnotator(TableReward({}), "implicit", temperature=0.0)


def _pool():
    return [
        PromptItem(id="p1", prompt="q1", responses=["mid", "best", "worst", "low"]),
        PromptItem(id="p2", prompt="q2", responses=["mid", "mid2"]),      # all tied -> dropped
        PromptItem(id="p3", prompt="q3", responses=["best"]),             # one response -> dropped
    ]


def test_best_of_n_minmax_and_random_rejected():
    table = {"best": 5.0, "mid": 2.0, "mid2": 2.0, "low": 1.0, "worst": -1.0}
    ann = RewardAnnotator(TableReward(table), "density_ratio")
    pairs, anns = ann.annotate_pool(_pool(), rejected="lowest")
    assert len(pairs) == 1 and pairs[0].id == "p1:1-2"       # A = index 1 (best), B = index 2 (worst)
    assert (pairs[0].response_a, pairs[0].response_b) == ("best", "worst")
    assert anns[0].preferred == "A" and anns[0].pair_id == "p1:1-2"
    assert ann.stats["prompts_all_tied"] == 1 and ann.stats["prompts_too_few_responses"] == 1
    assert ann.stats["prompts_paired"] == 1
    # random: always a strictly lower response, reproducible for a seed
    picks = {RewardAnnotator(TableReward(table), "x").annotate_pool(_pool(), rejected="random", seed=s)[0][0].id
             for s in range(20)}
    assert picks <= {"p1:0-1", "p1:1-2", "p1:1-3"} and len(picks) > 1
    again = RewardAnnotator(TableReward(table), "x").annotate_pool(_pool(), rejected="random", seed=3)[0][0].id
    assert again == RewardAnnotator(TableReward(table), "x").annotate_pool(_pool(), rejected="random", seed=3)[0][0].id


def test_pool_nan_responses():
    pool = [PromptItem(id="p", prompt="q", responses=["best", "??", "worst"])]
    with pytest.raises(DataError, match="prompt p"):
        RewardAnnotator(TableReward({"best": 1.0, "worst": 0.0}), "x").annotate_pool(pool)
    ann = RewardAnnotator(TableReward({"best": 1.0, "worst": 0.0}), "x", nan_policy="skip")
    pairs, _ = ann.annotate_pool(pool)
    assert pairs[0].id == "p:0-2" and ann.stats["nan_responses_skipped"] == 1
    with pytest.raises(ConfigError):
        pairs_from_pool(pool, [[RewardResult(1.0)] * 3], source="x", rejected="highest")


def test_calibrate_fits_temperature_on_labelled_pairs():
    from frugalign.records import Annotation

    table = {f"good{k}": 0.1 * (k + 1) for k in range(8)} | {f"bad{k}": 0.0 for k in range(8)}
    pairs = [pair(str(k), f"good{k}", f"bad{k}") if k % 2 else pair(str(k), f"bad{k}", f"good{k}")
             for k in range(8)]
    labels = [Annotation(str(k), "A" if k % 2 else "B", 1.0, 1.0, "human") for k in range(8)]
    ann = RewardAnnotator(TableReward(table), "density_ratio")
    t = ann.calibrate(pairs, labels)
    # all 8 margins (0.1 … 0.8) agree with the labels: small rewards -> sharpen (T < 1)
    assert t < 1 and ann.temperature == t and ann.stats["calibration_pairs"] == 8
    assert ann.annotate(pairs[:1])[0].p_a == pytest.approx(1 / (1 + math.exp(0.1 / t)))
    with pytest.raises(DataError, match="unknown pair ids"):
        ann.calibrate(pairs, [Annotation("nope", "A", 1.0, 1.0, "human")])
    all_ties = RewardAnnotator(TableReward(table), "density_ratio", temperature=2.0)
    assert all_ties.calibrate(pairs, [Annotation("0", "tie", 0.5, 0.0, "human")]) == 2.0
    assert all_ties.stats["calibration_skipped_all_ties"] == 1

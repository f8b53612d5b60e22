"""SPA's implicit reward on tiny models: β·(log π_θ − log π_ref), min–max pools, extrapolated logits."""

from __future__ import annotations

import pytest

from frugalign.annotate.base import RewardItem
from frugalign.annotate.implicit import ImplicitReward, implicit_annotator
from frugalign.errors import ConfigError
from frugalign.logprobs import LogProbScorer, ScoreItem
from frugalign.records import PreferencePair, PromptItem

RESPONSES = ["The sea is blue.", "Paris.", "I cannot help with that.", "* first item"]


@pytest.fixture()
def scorers(tiny_model, tiny_model_b, tiny_tokenizer):
    return (LogProbScorer(tiny_model, tiny_tokenizer, progress=False),
            LogProbScorer(tiny_model_b, tiny_tokenizer, progress=False))


def test_implicit_reward_is_beta_times_log_ratio(scorers):
    policy, ref = scorers
    items = [RewardItem("Write a poem.", r) for r in RESPONSES]
    got = ImplicitReward(policy, ref, beta=0.5).rewards(items)
    lp = policy.score([ScoreItem("Write a poem.", r) for r in RESPONSES])
    lr = ref.score([ScoreItem("Write a poem.", r) for r in RESPONSES])
    for g, a, b in zip(got, lp, lr):
        assert g.value == pytest.approx(0.5 * (a.logprob - b.logprob), abs=1e-4)


def test_extrapolated_logits_use_the_scorer_mix(scorers, tiny_model_b):
    policy, ref = scorers
    items = [RewardItem("Write a poem.", r) for r in RESPONSES[:2]]
    got = ImplicitReward(policy, ref, beta=0.1, mix_lambda=0.5).rewards(items)
    mixed = policy.score([ScoreItem("Write a poem.", r) for r in RESPONSES[:2]], mix_with=(tiny_model_b, 0.5))
    plain = ref.score([ScoreItem("Write a poem.", r) for r in RESPONSES[:2]])
    for g, m, r in zip(got, mixed, plain):
        assert g.value == pytest.approx(0.1 * (m.logprob - r.logprob), abs=1e-4)
        assert g.details["mix_lambda"] == 0.5


def test_policy_equal_to_reference_gives_ties(tiny_model, tiny_tokenizer):
    same = LogProbScorer(tiny_model, tiny_tokenizer, progress=False)
    ann = implicit_annotator(same, same)
    out = ann.annotate([PreferencePair(id="1", prompt="q", response_a="Paris.", response_b="Waves!")])
    assert out[0].preferred == "tie" and out[0].confidence == 0.0 and ann.stats["score_ties"] == 1


def test_min_max_pairs_over_k_responses(scorers):
    policy, ref = scorers
    ann = implicit_annotator(policy, ref, beta=1.0)
    pool = [PromptItem(id="p", prompt="Write a poem.", responses=RESPONSES)]
    pairs, anns = ann.annotate_pool(pool)
    r = [x.value for x in ImplicitReward(policy, ref, beta=1.0).rewards(
        [RewardItem("Write a poem.", x) for x in RESPONSES])]
    hi, lo = r.index(max(r)), r.index(min(r))
    assert pairs[0].id == f"p:{min(hi, lo)}-{max(hi, lo)}"
    assert anns[0].preferred == ("A" if hi < lo else "B")
    assert anns[0].details["margin"] == pytest.approx((r[min(hi, lo)] - r[max(hi, lo)]), abs=1e-4)


def test_bad_settings():
    with pytest.raises(ConfigError):
        ImplicitReward(None, None, beta=0.0)
    with pytest.raises(ConfigError):
        ImplicitReward(None, None, mix_lambda=-1.0)

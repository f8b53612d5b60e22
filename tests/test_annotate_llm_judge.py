"""LLM-judge baseline: P("A") vs P("B") from next-token log-probs, both orders averaged."""

from __future__ import annotations

import math

import pytest

from frugalign.annotate.llm_judge import LLMJudge
from frugalign.errors import DataError
from frugalign.logprobs import LogProbScorer, ScoreItem
from frugalign.records import PreferencePair

# A tiny template keeps the judge prompt inside the tiny model's 256-token context.
TEMPLATE = "{system}Q: {prompt}\nA: {a}\nB: {b}\nBetter?"
PAIRS = [PreferencePair(id="1", prompt="Capital of France?", response_a="Paris.", response_b="Waves!"),
         PreferencePair(id="2", prompt="A poem.", response_a="The sea.", response_b="No.", system="Be kind.")]


def swapped(p: PreferencePair) -> PreferencePair:
    return PreferencePair(id=p.id, prompt=p.prompt, response_a=p.response_b, response_b=p.response_a,
                          system=p.system)


def test_first_order_probability_is_the_next_token_two_way_softmax(tiny_model, tiny_tokenizer):
    judge = LLMJudge(tiny_model, tiny_tokenizer, template=TEMPLATE, both_orders=False)
    a = judge.annotate(PAIRS[:1])[0]
    text = judge.judge_text(PAIRS[0], "Paris.", "Waves!")
    res = LogProbScorer(tiny_model, tiny_tokenizer, score_end_of_turn=False, progress=False).score(
        [ScoreItem(text, "A"), ScoreItem(text, "B")])
    assert a.p_a == pytest.approx(1 / (1 + math.exp(-(res[0].logprob - res[1].logprob))), abs=1e-6)
    assert "p_order_ba" not in a.details


def test_both_orders_averaging_is_exactly_symmetric(tiny_model, tiny_tokenizer):
    judge = LLMJudge(tiny_model, tiny_tokenizer, template=TEMPLATE)
    fwd = judge.annotate(PAIRS)
    back = judge.annotate([swapped(p) for p in PAIRS])
    for f, b in zip(fwd, back):
        assert f.p_a == pytest.approx(1 - b.p_a, abs=1e-9)
        assert f.confidence == pytest.approx(b.confidence, abs=1e-9)
        assert f.details["position_bias"] == pytest.approx(b.details["position_bias"], abs=1e-9)
        assert f.p_a == pytest.approx(0.5 * (f.details["p_order_ab"] + 1 - f.details["p_order_ba"]))
    assert judge.stats["annotated"] == 4 and judge.stats["cache_misses"] > 0


def test_a_judge_that_always_says_A_gives_ties(tiny_model, tiny_tokenizer, monkeypatch):
    judge = LLMJudge(tiny_model, tiny_tokenizer, template=TEMPLATE)
    monkeypatch.setattr(judge, "p_first", lambda texts: [0.9] * len(texts))
    out = judge.annotate(PAIRS)
    assert all(a.preferred == "tie" and a.p_a == 0.5 and a.confidence == 0.0 for a in out)
    assert out[0].details["position_bias"] == pytest.approx(0.4)  # leans to "A" by 0.9 − 0.5
    # Without the swap the same judge would be confidently (and wrongly) sure of A.
    one = LLMJudge(tiny_model, tiny_tokenizer, template=TEMPLATE, both_orders=False)
    monkeypatch.setattr(one, "p_first", lambda texts: [0.9] * len(texts))
    assert one.annotate(PAIRS)[0].confidence == pytest.approx(0.8)


def test_content_preference_survives_averaging(tiny_model, tiny_tokenizer, monkeypatch):
    judge = LLMJudge(tiny_model, tiny_tokenizer, template=TEMPLATE)
    # Says "A" with 0.95 when Paris is shown first, 0.35 when shown second (bias + content).
    monkeypatch.setattr(judge, "p_first", lambda texts: [0.95 if "A: Paris." in t else 0.35 for t in texts])
    a = judge.annotate(PAIRS[:1])[0]
    assert a.preferred == "A" and a.p_a == pytest.approx(0.5 * (0.95 + 0.65))


def test_nan_judge_scores(tiny_model, tiny_tokenizer, monkeypatch):
    judge = LLMJudge(tiny_model, tiny_tokenizer, template=TEMPLATE)
    monkeypatch.setattr(judge, "p_first", lambda texts: [math.nan] * len(texts))
    with pytest.raises(DataError, match="NaN"):
        judge.annotate(PAIRS)
    skip = LLMJudge(tiny_model, tiny_tokenizer, template=TEMPLATE, nan_policy="skip")
    monkeypatch.setattr(skip, "p_first", lambda texts: [math.nan] * len(texts))
    assert skip.annotate(PAIRS) == [] and skip.stats["nan_pairs_skipped"] == 2

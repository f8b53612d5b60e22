"""Dr.SoW on tiny models: the reward is exactly the difference of two scorer calls;
routers, domain prompts, fallbacks and the on-disk cache."""

from __future__ import annotations

import math

import pytest
import torch

from frugalign.annotate import RewardAnnotator
from frugalign.annotate.cache import CachedScorer, ScoreCache, model_fingerprint
from frugalign.annotate.density_ratio import (
    DOMAIN_PROMPTS,
    FEW_SHOT,
    DensityRatioReward,
    EmbeddingRouter,
    KeywordRouter,
    LLMRouter,
    domain_system_prompt,
    parse_domain,
)
from frugalign.errors import ConfigError
from frugalign.logprobs import LogProbScorer, ScoreItem
from frugalign.records import PreferencePair

# The tiny models have a 256-token context and a character-level tokenizer: keep system prompts short.
SHORT = {"safety": "Be safe.", "reasoning": "Be exact.", "chat": "Be kind."}
SHOT = {"safety": {"prompt": "Hack?", "good": "No.", "bad": "Yes."}}

PAIRS = [
    PreferencePair(id="1", prompt="Write a short poem about the sea.", response_a="The sea is blue.",
                   response_b="I cannot help with that."),
    PreferencePair(id="2", prompt="How do I build a bomb?", response_a="I cannot help with that request.",
                   response_b="Sure! Here is a list:\n* first item"),
    PreferencePair(id="3", prompt="Solve 2 + 2 in python code.", response_a="def add(a, b): return a + b",
                   response_b="Paris.", domain="reasoning", system="Be brief."),
]


@pytest.fixture()
def scorers(tiny_model, tiny_model_b, tiny_tokenizer):
    from conftest import build_tokenizer

    plain_tok = build_tokenizer(chat_template=False)  # the weak model renders without a template
    strong = LogProbScorer(tiny_model, tiny_tokenizer, progress=False, score_end_of_turn=False)
    weak = LogProbScorer(tiny_model_b, plain_tok, progress=False, score_end_of_turn=False)
    return strong, weak


def test_density_ratio_equals_difference_of_two_scorer_calls(scorers):
    strong, weak = scorers
    ann = RewardAnnotator(DensityRatioReward(strong, weak, router=KeywordRouter(), domain_prompts=SHORT),
                          "density_ratio")
    out = ann.annotate(PAIRS)
    expected_domains = ["chat", "safety", "reasoning"]  # keyword-routed, routed, given
    for p, a, d in zip(PAIRS, out, expected_domains):
        system = SHORT[d] + (f"\n\n{p.system}" if p.system else "")
        items = [ScoreItem(p.prompt, p.response_a, system), ScoreItem(p.prompt, p.response_b, system)]
        s, w = strong.score(items), weak.score(items)
        r_a, r_b = s[0].logprob - w[0].logprob, s[1].logprob - w[1].logprob
        assert a.details["domain"] == d
        assert a.details["r_a"] == pytest.approx(r_a, abs=1e-4)
        assert a.details["r_b"] == pytest.approx(r_b, abs=1e-4)
        assert a.p_a == pytest.approx(1 / (1 + math.exp(-(r_a - r_b))), abs=1e-5)
        assert a.preferred == ("A" if r_a > r_b else "B")
    assert ann.stats["domain_given"] == 1 and ann.stats["domain_safety"] == 1
    assert ann.stats["router_default_no_match"] == 1  # the poem prompt hit no keyword


def test_plain_ratio_keeps_the_pair_system_prompt_and_temperature(scorers):
    strong, weak = scorers
    ann = RewardAnnotator(DensityRatioReward(strong, weak, domain_prompts=None), "density_ratio",
                          temperature=4.0)
    a = ann.annotate(PAIRS[2:])[0]
    items = [ScoreItem(PAIRS[2].prompt, PAIRS[2].response_a, "Be brief."),
             ScoreItem(PAIRS[2].prompt, PAIRS[2].response_b, "Be brief.")]
    s, w = strong.score(items), weak.score(items)
    margin = (s[0].logprob - w[0].logprob) - (s[1].logprob - w[1].logprob)
    assert a.p_a == pytest.approx(1 / (1 + math.exp(-margin / 4.0)), abs=1e-5)


def test_domain_prompts_need_the_default_domain(scorers):
    with pytest.raises(ConfigError, match="default_domain"):
        DensityRatioReward(*scorers, domain_prompts={"safety": "x"}, default_domain="chat")


def test_few_shot_block_and_unknown_given_domain(scorers):
    text = domain_system_prompt("safety", DOMAIN_PROMPTS, FEW_SHOT)
    assert text.startswith(DOMAIN_PROMPTS["safety"]) and "Bad assistant:" in text
    reward = DensityRatioReward(*scorers, domain_prompts=SHORT, few_shot=SHOT)
    odd = PreferencePair(id="9", prompt="hello", response_a="a", response_b="b", domain="poetry")
    RewardAnnotator(reward, "density_ratio").annotate([odd])
    assert reward.stats["domain_unknown_given"] == 1 and reward.stats["domain_chat"] == 1


def test_parse_domain():
    domains = ["safety", "reasoning", "chat"]
    assert parse_domain("Reasoning.", domains) == "reasoning"
    assert parse_domain("  chat - casual", domains) == "chat"
    assert parse_domain("safety or chat", domains) == "safety"  # earliest mention
    assert parse_domain("unsafe request", domains) is None     # whole words only
    assert parse_domain("", domains) is None


def test_llm_router_unparseable_answer_falls_back_and_is_counted(tiny_model, tiny_tokenizer):
    router = LLMRouter(tiny_model, tiny_tokenizer, ["safety", "reasoning", "chat"], default="chat",
                       max_new_tokens=3)
    out = router.route(["How do I build a bomb?", "Solve 2 + 2.", "How do I build a bomb?"])
    # The random tiny model never names a domain: every distinct prompt falls back (answers are cached).
    assert out == ["chat"] * 3 and router.stats["router_fallbacks"] == 3
    assert len(router.answers) == 2
    router.answers["Hi"] = "Category: SAFETY"
    assert router.route(["Hi"]) == ["safety"]


def test_embedding_router_nearest_centroid_and_far_default():
    def enc(texts):  # 2-d toy space: "bomb" points up, "sum" points right
        return torch.nn.functional.normalize(torch.tensor(
            [[1.0 if "sum" in t else 0.01, 1.0 if "bomb" in t else 0.01] for t in texts]), dim=-1)

    router = EmbeddingRouter({"safety": ["a bomb"], "reasoning": ["a sum"]}, enc, min_similarity=0.9)
    assert router.route(["bomb please", "compute the sum", "bomb sum"]) == ["safety", "reasoning", "chat"]
    assert router.stats["router_default_far"] == 1


def test_cache_serves_identical_scores_and_tracks_weight_changes(tiny_tokenizer, tmp_path):
    from conftest import build_model

    model = build_model(tiny_tokenizer, seed=3)
    cache = ScoreCache(tmp_path / "scores.sqlite")
    items = [ScoreItem(p.prompt, p.response_a) for p in PAIRS]
    first = CachedScorer(LogProbScorer(model, tiny_tokenizer, progress=False), cache)
    r1 = first.score(items)
    assert first.stats == {"cache_hits": 0, "cache_misses": 3} and len(cache) == 3
    second = CachedScorer(LogProbScorer(model, tiny_tokenizer, progress=False), ScoreCache(cache.path))
    r2 = second.score(items + [ScoreItem("new", "text")])
    assert second.stats == {"cache_hits": 3, "cache_misses": 1}
    assert [r.logprob for r in r2[:3]] == pytest.approx([r.logprob for r in r1])
    before = model_fingerprint(model)
    with torch.no_grad():
        model.lm_head.weight.add_(0.5)  # "training" changes the fingerprint, so no stale hits
    assert model_fingerprint(model) != before
    second.score(items)  # the same scorer object notices the new weights
    assert second.stats["cache_hits"] == 3 and second.stats["cache_misses"] == 4


def test_sums_run_over_response_tokens_only_on_both_sides(tiny_model, tiny_tokenizer, scorers):
    """The chat model's end-of-turn token is not a response token; the template-less weak model has none."""
    strong, weak = scorers
    item = ScoreItem("Write a short poem about the sea.", "The sea is blue.")
    with_eot = LogProbScorer(tiny_model, tiny_tokenizer, progress=False).score([item])[0]
    assert with_eot.n_tokens == strong.score([item])[0].n_tokens + 1 == weak.score([item])[0].n_tokens + 1
    for bad in (LogProbScorer(tiny_model, tiny_tokenizer, progress=False),
                CachedScorer(LogProbScorer(tiny_model, tiny_tokenizer, progress=False), None)):
        with pytest.raises(ConfigError, match="response tokens only: build the strong scorer"):
            DensityRatioReward(bad, weak)
        with pytest.raises(ConfigError, match="response tokens only: build the weak scorer"):
            DensityRatioReward(strong, bad)


def test_end_of_response_scored_on_both_sides(tiny_model, tiny_model_b, tiny_tokenizer, tmp_path):
    """Opt-in: the chat side adds its end-of-turn token, the template-less side its EOS, by hand."""
    from conftest import build_tokenizer

    plain_tok = build_tokenizer(chat_template=False)
    item = ScoreItem("Write a short poem about the sea.", "The sea is blue.")
    weak_eos = LogProbScorer(tiny_model_b, plain_tok, progress=False, eos_without_template=True)
    weak_plain = LogProbScorer(tiny_model_b, plain_tok, progress=False, score_end_of_turn=False)
    got, base = weak_eos.score([item])[0], weak_plain.score([item])[0]
    assert got.n_tokens == base.n_tokens + 1
    # the added term is log p(EOS | prompt + response) from one plain forward pass
    from frugalign.chat import render_with_response

    ids = plain_tok(render_with_response(plain_tok, item.prompt, item.response)[0], add_special_tokens=True)["input_ids"]
    with torch.no_grad():
        logits = tiny_model_b(torch.tensor([ids])).logits[0, -1].float()
    eos_lp = torch.log_softmax(logits, -1)[plain_tok.eos_token_id].item()
    assert got.logprob == pytest.approx(base.logprob + eos_lp, abs=1e-4)
    # without the flag a template-less model still has nothing after the response to score
    assert LogProbScorer(tiny_model_b, plain_tok, progress=False).score([item])[0].n_tokens == base.n_tokens

    strong_eot = LogProbScorer(tiny_model, tiny_tokenizer, progress=False)  # template: scores <|im_end|>
    reward = DensityRatioReward(strong_eot, weak_eos, domain_prompts=None)
    from frugalign.annotate.base import RewardItem

    r = reward.rewards([RewardItem(item.prompt, item.response)])[0]
    assert r.value == pytest.approx(strong_eot.score([item])[0].logprob - got.logprob, abs=1e-5)
    with pytest.raises(ConfigError, match="build the strong scorer"):
        DensityRatioReward(weak_eos, weak_plain)  # the end on one side only
    # the cache keeps the two kinds of sums apart
    cache = ScoreCache(tmp_path / "s.sqlite")
    assert CachedScorer(weak_eos, cache).identity != CachedScorer(
        LogProbScorer(tiny_model_b, plain_tok, progress=False), cache).identity

"""The scorer equals a naive one-example-at-a-time computation, whatever the batching."""

from __future__ import annotations

import math

import pytest
import torch

from frugalign.errors import ConfigError, ContextOverflowError
from frugalign.logprobs import LogProbScorer, ScoreItem, score_ratio

PROMPTS = ["Write a poem about the sea.", "What is the capital of France?",
           [{"role": "user", "content": "Give me a list."}],
           # multi-turn (TRL conversational): earlier turns are context, only the final reply is scored
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a city."},
            {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "Another one?"}]]
RESPONSES = ["The sea is blue and deep.", "Waves!", "Paris.", "Paris is the capital of France.",
             "* first item\n* second item", "I cannot help with that request."]


def make_items():
    items = []
    for i, p in enumerate(PROMPTS):
        for j, r in enumerate(RESPONSES[2 * i: 2 * i + 2] + RESPONSES[:1]):
            items.append(ScoreItem(p, r, system="Be brief." if i == 1 and j == 0 else None))
    # two items whose prompt is a prefix-sharing variant
    items.append(ScoreItem("Write a poem about the sea. Use no commas.", "Blue sea."))
    return items


def naive_logprob(model, enc, mix=None):
    """One example, full forward, full-vocab log-softmax over all positions."""
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
        if mix is not None:
            other, lam = mix
            logits = (1 + lam) * logits - lam * other(ids).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    targets = ids[0, enc.start:enc.end]
    return lp[enc.start - 1:enc.end - 1].gather(-1, targets[:, None]).squeeze(-1)


def test_response_boundary_found_from_joint_tokenisation(tiny_model, tiny_tokenizer):
    scorer = LogProbScorer(tiny_model, tiny_tokenizer, progress=False)
    for item, enc in zip(make_items(), scorer.encode(make_items())):
        text = tiny_tokenizer.decode(enc.ids[enc.start:enc.end - enc.n_eot])
        assert text == item.response
        assert enc.n_eot == 1 and enc.ids[enc.end - 1] == tiny_tokenizer.eos_token_id


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("budget,max_batch", [(64, 1), (200, 3), (10_000, 64)])
def test_scorer_equals_naive(tiny_model, tiny_tokenizer, share, budget, max_batch):
    items = make_items()
    scorer = LogProbScorer(tiny_model, tiny_tokenizer, token_budget=budget, max_batch=max_batch,
                           share_prompts=share, progress=False, vocab_chunk_rows=7)
    results = scorer.score(items, per_token=True)
    for enc, res in zip(scorer.encode(items), results):
        ref = naive_logprob(tiny_model, enc)
        assert res.n_tokens == len(ref)
        assert abs(res.logprob - float(ref.sum())) < 1e-4
        assert torch.allclose(torch.tensor(res.token_logprobs), ref, atol=1e-5)


def test_invariant_to_order_and_padding_side(tiny_model, tiny_tokenizer):
    items = make_items()
    base = [r.logprob for r in LogProbScorer(tiny_model, tiny_tokenizer, progress=False).score(items)]
    perm = list(reversed(range(len(items))))
    tiny_tokenizer.padding_side = "left"
    try:
        shuffled = LogProbScorer(tiny_model, tiny_tokenizer, progress=False, token_budget=100).score(
            [items[i] for i in perm])
    finally:
        tiny_tokenizer.padding_side = "right"
    for k, i in enumerate(perm):
        assert abs(shuffled[k].logprob - base[i]) < 1e-4


def test_shared_prompt_path_does_less_work(tiny_model, tiny_tokenizer):
    items = [ScoreItem(PROMPTS[0], r) for r in RESPONSES]
    shared = LogProbScorer(tiny_model, tiny_tokenizer, progress=False)
    plain = LogProbScorer(tiny_model, tiny_tokenizer, progress=False, share_prompts=False)
    a, b = shared.score(items), plain.score(items)
    assert [round(x.logprob, 4) for x in a] == [round(x.logprob, 4) for x in b]
    assert shared.stats.groups == 1 and plain.stats.groups == len(items)
    assert shared.stats.tokens_forward < plain.stats.tokens_forward


def test_ratio_mode_is_difference_of_two_scores(tiny_model, tiny_model_b, tiny_tokenizer):
    from conftest import build_model, build_tokenizer

    other_tok = build_tokenizer(vocab_size=300, chat_template=False)  # its own vocabulary and format
    other = build_model(other_tok, seed=3)
    items = make_items()
    sa = LogProbScorer(tiny_model, tiny_tokenizer, progress=False)
    sb = LogProbScorer(other, other_tok, progress=False)
    diff, ra, rb = score_ratio(sa, sb, items)
    single_a, single_b = sa.score(items), sb.score(items)
    for d, x, y in zip(diff, single_a, single_b):
        assert abs(d - (x.logprob - y.logprob)) < 1e-4


@pytest.mark.parametrize("lam", [0.5, 0.125])
def test_mixed_logit_mode_equals_naive(tiny_model, tiny_model_b, tiny_tokenizer, lam):
    items = make_items()
    scorer = LogProbScorer(tiny_model, tiny_tokenizer, progress=False, token_budget=150)
    results = scorer.score(items, mix_with=(tiny_model_b, lam))
    for enc, res in zip(scorer.encode(items), results):
        ref = naive_logprob(tiny_model, enc, mix=(tiny_model_b, lam))
        assert abs(res.logprob - float(ref.sum())) < 1e-4
    plain = scorer.score(items)
    assert any(abs(a.logprob - b.logprob) > 1e-2 for a, b in zip(results, plain))


def test_overflow_policies(tiny_model, tiny_tokenizer):
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 40
    items = [ScoreItem(long_prompt, "Waves!"), ScoreItem(PROMPTS[0], "Waves!")]
    with pytest.raises(ContextOverflowError, match="item 0"):
        LogProbScorer(tiny_model, tiny_tokenizer, progress=False).score(items)
    skip = LogProbScorer(tiny_model, tiny_tokenizer, progress=False, overflow="skip")
    res = skip.score(items)
    assert res[0].skipped and math.isnan(res[0].logprob) and not res[1].skipped
    assert skip.stats.overflow_skipped == 1
    trunc = LogProbScorer(tiny_model, tiny_tokenizer, progress=False, overflow="truncate")
    res = trunc.score(items)
    assert not res[0].skipped and res[0].n_tokens == res[1].n_tokens
    assert trunc.stats.overflow_truncated == 1
    with pytest.raises(ConfigError):
        LogProbScorer(tiny_model, tiny_tokenizer, overflow="bogus")


def test_embed_is_mean_of_response_hidden_states(tiny_model, tiny_tokenizer):
    items = make_items()[:3]
    scorer = LogProbScorer(tiny_model, tiny_tokenizer, progress=False)
    emb = scorer.embed(items)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    for k, enc in enumerate(scorer.encode(items)):
        with torch.no_grad():
            h = tiny_model.model(torch.tensor([enc.ids])).last_hidden_state[0]
        ref = torch.nn.functional.normalize(h[enc.start:enc.end - enc.n_eot].mean(0), dim=-1)
        assert torch.allclose(emb[k], ref, atol=1e-5)


def test_bfloat16_close_to_float32(tiny_model, tiny_tokenizer):
    import copy

    items = make_items()
    f32 = LogProbScorer(tiny_model, tiny_tokenizer, progress=False).score(items)
    bf = copy.deepcopy(tiny_model).to(torch.bfloat16)
    b16 = LogProbScorer(bf, tiny_tokenizer, progress=False).score(items)
    for a, b in zip(f32, b16):
        assert abs(a.mean_logprob - b.mean_logprob) < 0.1

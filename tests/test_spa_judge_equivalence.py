"""The two SPA judge paths (iterate's min-max pairs, the implicit annotator's pool pairs) agree."""
import pytest, math
from conftest import build_model
from frugalign.annotate.implicit import implicit_annotator
from frugalign.iterate import implicit_rewards, min_max_pairs, response_logps
from frugalign.logprobs import LogProbScorer
from frugalign.types import PromptItem

def test_spa_judges_agree(tiny_tokenizer):
    policy, init = build_model(tiny_tokenizer, seed=1), build_model(tiny_tokenizer, seed=0)
    pool = [PromptItem(f"p{i}", q, responses=rs) for i, (q, rs) in enumerate([
        ("Write a poem about the sea.", ["Waves and salt.", "The sea is blue.", "I cannot help."]),
        ("Give me a list.", ["* first item\n* second item", "No.", "No."]),
        ("Say hi.", ["Hello there!", "Hello there!"]),
        ("Name a colour.", ["Blue.", "Paris is the capital of France.", "def add(a, b): return a + b"])])]
    lp_pol = response_logps(policy, tiny_tokenizer, pool, max_length=1024, precision="float32", progress=False)
    lp_init = response_logps(init, tiny_tokenizer, pool, max_length=1024, precision="float32", progress=False)
    rows, skipped = min_max_pairs(pool, implicit_rewards(lp_pol, lp_init, 0.1), lp_pol, round_index=1)
    ann = implicit_annotator(LogProbScorer(policy, tiny_tokenizer, progress=False),
                             LogProbScorer(init, tiny_tokenizer, progress=False), beta=0.1, nan_policy="skip")
    pairs, anns = ann.annotate_pool(pool, rejected="lowest")
    assert len(rows) == len(pairs) == 3 and skipped["unscorable"] == 1
    for row, pair, a in zip(rows, pairs, anns):
        chosen, rejected = (pair.response_a, pair.response_b) if a.preferred == "A" else (pair.response_b, pair.response_a)
        assert (row["chosen"], row["rejected"]) == (chosen, rejected) and row["id"] == pair.prompt_id
        assert row["meta"]["reward_chosen"] == pytest.approx(max(a.details["r_a"], a.details["r_b"]), abs=1e-5)
        assert row["meta"]["reward_rejected"] == pytest.approx(min(a.details["r_a"], a.details["r_b"]), abs=1e-5)
        assert row["confidence"] == pytest.approx(a.confidence, abs=1e-6)

"""Probe: how Dr.SoW's labels agree with gold on every within-prompt pair of a study's shared pool.

Scores the first N prompts' samples (4 each in study-standard) with the strong and the weak model under
three system prompts (none, the "chat" domain prompt, an instruction-following prompt written for the
ifeval task), then prints, per variant: agreement with gold on all non-tied pairs, on the pair of the
best and worst sample (Dr.SoW's best-of-N), on the pairs with the largest |reward margin|, and the mean
gold gap (chosen minus rejected) each way of building pairs gives, against gold-labelled pairs.

    python benchmarks/probes/drsow_pool_agreement.py runs/study-standard/shared --prompts 100 \
        --scores runs/drsow_pool_scores_100.json

Scoring is the slow part (≈ 3 min per variant for 400 responses, bf16, 2 cores); ``--scores`` keeps the
scores and reuses them on the next call.
"""
import argparse
import itertools
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from frugalign.annotate.density_ratio import DOMAIN_PROMPTS
from frugalign.goldjudge.registry import get_task
from frugalign.goldjudge.tasks import BenchPrompt

VARIANTS = {
    "none": None,
    "chat": DOMAIN_PROMPTS["chat"],
    "ifeval": ("Follow every instruction in the user's request exactly: the required format, sections, "
               "markers, words and length limits. A reply that breaks any instruction is a bad reply."),
}


def score_pool(rows, dtype: str) -> dict:
    from frugalign.logprobs import LogProbScorer, ScoreItem
    from frugalign.models import load_model

    strong = LogProbScorer(*load_model("smollm2-135m-instruct", dtype=dtype), score_end_of_turn=False, progress=False)
    weak = LogProbScorer(*load_model("gemma3-270m", dtype=dtype), score_end_of_turn=False, progress=False)
    res = {}
    for name, system in VARIANTS.items():
        items = [ScoreItem(r["prompt"], y, system) for r in rows for y in r["responses"]]
        t = time.time()
        s, w = strong.score(items), weak.score(items)
        res[name] = [(a.logprob, b.logprob, a.n_tokens) for a, b in zip(s, w)]
        print(f"{name}: scored {len(items)} responses with both models in {time.time() - t:.0f}s", flush=True)
    return res


def agree(pairs) -> str:
    """pairs: (gold scores, chosen index, rejected index) -> agreement on gold's non-tied ones."""
    hit = tot = ties = 0
    for g, a, b in pairs:
        if g[a] == g[b]:
            ties += 1
            continue
        tot += 1
        hit += g[a] > g[b]
    return f"{hit}/{tot} = {hit / max(tot, 1):.3f} (gold ties {ties})"


def report(name: str, rows: list) -> None:
    """rows: (gold scores, rewards) per prompt."""
    ordered = [(g, a, b) if r[a] > r[b] else (g, b, a) for g, r in rows for a, b in itertools.combinations(range(len(g)), 2)]
    margins = sorted(((abs(r[a] - r[b]), p) for (g, r) in rows for a, b in itertools.combinations(range(len(g)), 2)
                      for p in [((g, a, b) if r[a] > r[b] else (g, b, a))]), key=lambda x: -x[0])
    best_worst = [(g, max(range(len(r)), key=r.__getitem__), min(range(len(r)), key=r.__getitem__)) for g, r in rows]
    print(f"{name}: all pairs {agree(ordered)}; best vs worst sample {agree(best_worst)}")
    for q in (0.1, 0.25, 0.5):
        top = [p for _, p in margins[:int(len(margins) * q)]]
        gap = sum(g[a] - g[b] for g, a, b in top) / len(top)
        print(f"   top {q:.0%} of pairs by |margin| (>= {margins[len(top) - 1][0]:.1f} nats): {agree(top)}; "
              f"mean gold gap chosen - rejected {gap:+.3f}")
    rnd = random.Random(0)
    rand = [(g, *((a, b) if r[a] > r[b] else (b, a))) for g, r in rows for a, b in [rnd.sample(range(len(g)), 2)]]
    print(f"   mean gold gap chosen - rejected: one random pair per prompt {sum(g[a] - g[b] for g, a, b in rand) / len(rand):+.3f}, "
          f"best vs worst {sum(g[a] - g[b] for g, a, b in best_worst) / len(best_worst):+.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("shared", help="a study's shared run directory (pool/pool.jsonl)")
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--scores", help="JSON file to keep the scores in (reused when present)")
    a = ap.parse_args()
    rows = [json.loads(x) for x in open(os.path.join(a.shared, "pool", "pool.jsonl"))][:a.prompts]
    task = get_task("ifeval")
    gold = [[task.score(BenchPrompt.from_dict(r["meta"]["bench"]), y) for y in r["responses"]] for r in rows]
    if a.scores and os.path.exists(a.scores):
        res = json.load(open(a.scores))["res"]
    else:
        res = score_pool(rows, a.dtype)
        if a.scores:
            json.dump({"gold": gold, "res": res, "n": a.prompts}, open(a.scores, "w"))
    flat = [x for g in gold for x in g]
    print(f"{len(rows)} prompts x {len(rows[0]['responses'])} samples; mean gold {sum(flat) / len(flat):.3f}")
    rnd = random.Random(0)
    gold_rand = [abs(g[a] - g[b]) for g in gold for a, b in [rnd.sample(range(len(g)), 2)]]
    print(f"gold-labelled pairs: mean gold gap chosen - rejected, one random pair per prompt "
          f"{sum(gold_rand) / len(gold_rand):+.3f}, best vs worst {sum(max(g) - min(g) for g in gold) / len(gold):+.3f}")
    for name, v in res.items():
        it = iter(v)
        per_prompt = [(g, [s - w for s, w, _ in (next(it) for _ in g)]) for g in gold]
        report(f"Dr.SoW sum, system prompt {name}", per_prompt)


if __name__ == "__main__":
    main()

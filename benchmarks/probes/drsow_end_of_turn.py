"""Probe: how Dr.SoW's labels agree with gold when the strong model's end-of-turn token is (not) summed.

Re-scores a finished recipe run's Dr.SoW pairs with the strong model only (the weak base model has no
end-of-turn token, so its stored sums are unchanged), rebuilds the reward with and without the end-of-turn
term, and prints agreement with the gold labels on the non-tied pairs, plus a per-token-mean variant for
comparison (not the specification: Dr.SoW sums, no length normalisation).

    python benchmarks/probes/drsow_end_of_turn.py runs/study-standard/arms/drsow-b0-none-s0
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from frugalign.annotate.density_ratio import DOMAIN_PROMPTS, domain_system_prompt
from frugalign.logprobs import LogProbScorer, ScoreItem
from frugalign.models import load_model

arm = sys.argv[1]
read = lambda p: [json.loads(x) for x in open(os.path.join(arm, p))]  # noqa: E731
pairs = {p["id"]: p for p in read("select/rest_pairs.jsonl")}
auto = {a["pair_id"]: a for a in read("annotate/auto.jsonl")}
gold = {g["pair_id"]: g["preferred"] for g in read("label/gold_rest.jsonl")}
model, tok = load_model("smollm2-135m-instruct")
ids = sorted(auto)
items = []
for pid in ids:
    p, d = pairs[pid], auto[pid]["details"]
    system = domain_system_prompt(d["domain"], DOMAIN_PROMPTS, None)
    system = f"{system}\n\n{p['system']}" if p.get("system") else system
    items += [ScoreItem(p["prompt"], p["response_a"], system), ScoreItem(p["prompt"], p["response_b"], system)]
eot = LogProbScorer(model, tok, score_end_of_turn=True, progress=False).score(items)
plain = LogProbScorer(model, tok, score_end_of_turn=False, progress=False).score(items)
wtok = load_model("gemma3-270m")[1]
check = max(abs(eot[2 * i + s].logprob - auto[pid]["details"][f"logp_strong_{'ab'[s]}"])
            for i, pid in enumerate(ids) for s in (0, 1))
print(f"{len(ids)} pairs; stored strong sums (end-of-turn included) reproduced within {check:.2e} nats "
      f"(a run made in bf16 differs by its rounding)")


def agreement(reward) -> tuple[int, int]:
    hit = n = 0
    for i, pid in enumerate(ids):
        if gold[pid] == "tie":
            continue
        ra, rb = reward(i, pid, 0), reward(i, pid, 1)
        if ra == rb:
            continue
        n += 1
        hit += ("A" if ra > rb else "B") == gold[pid]
    return hit, n


def weak(pid, s):
    return auto[pid]["details"][f"logp_weak_{'ab'[s]}"]


def n_weak(i, pid, s):
    p = pairs[pid]
    return max(1, len(wtok(p[f"response_{'ab'[s]}"], add_special_tokens=False)["input_ids"]))


variants = {
    "sum, strong with end-of-turn (before)": lambda i, pid, s: eot[2 * i + s].logprob - weak(pid, s),
    "sum, response tokens only (spec, now)": lambda i, pid, s: plain[2 * i + s].logprob - weak(pid, s),
    "per-token means, response tokens only": lambda i, pid, s: plain[2 * i + s].logprob / max(1, plain[2 * i + s].n_tokens)
    - weak(pid, s) / n_weak(i, pid, s),
}
flips = sum((eot[2 * i].logprob - weak(pid, 0) > eot[2 * i + 1].logprob - weak(pid, 1))
            != (plain[2 * i].logprob - weak(pid, 0) > plain[2 * i + 1].logprob - weak(pid, 1))
            for i, pid in enumerate(ids))
print(f"labels that change when the end-of-turn term is dropped: {flips} of {len(ids)}")
for name, fn in variants.items():
    hit, n = agreement(fn)
    print(f"{name:40s} agreement with gold {hit}/{n} = {hit / n:.3f}")

# Length: which side each judge prefers, by word count (pairs of different lengths; gold's non-tied only).
def words(pid, s):
    return len(pairs[pid][f"response_{'ab'[s]}"].split())


spec = variants["sum, response tokens only (spec, now)"]
longer = [(pid, words(pid, 0) > words(pid, 1)) for pid in ids if words(pid, 0) != words(pid, 1)]
pos = {pid: i for i, pid in enumerate(ids)}
dr_long = sum((spec(pos[pid], pid, 0) > spec(pos[pid], pid, 1)) == a_longer for pid, a_longer in longer)
g = [(pid, a_longer) for pid, a_longer in longer if gold[pid] != "tie"]
gold_long = sum((gold[pid] == "A") == a_longer for pid, a_longer in g)
print(f"prefers the longer response: Dr.SoW {dr_long}/{len(longer)} pairs, gold {gold_long}/{len(g)} non-tied pairs")

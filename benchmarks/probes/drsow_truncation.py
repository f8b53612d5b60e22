"""Probe: Dr.SoW, the end-of-turn term and truncated responses.

1. Of the labels that differ between a Dr.SoW arm run before the end-of-turn fix (strong side summed its
   <|im_end|>) and the same arm after it, how many pairs had exactly one response cut at max_new_tokens,
   and which side each version preferred.
2. The share of truncated responses (≥ 95 of the 96 new tokens, SmolLM2 tokens) and mean length in the
   initial policy's and each trained arm's evaluation samples.

    python benchmarks/probes/drsow_truncation.py runs/drsow-b0-none-s0.prefix \
        runs/study-standard/arms/drsow-b0-none-s0 runs/study-standard/shared \
        runs/study-standard/arms/drsow-b0-none-s1 runs/study-standard/arms/dpo-100-b1-all-s0
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from frugalign.models import load_tokenizer

CUT = 95  # max_new_tokens 96: a response this long was (almost surely) cut, not ended
pre, post, shared, *others = sys.argv[1:]
tok = load_tokenizer("smollm2-135m-instruct")


def read(path):
    return [json.loads(line) for line in open(path)]


def ntok(text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


pairs = {p["id"]: p for p in read(f"{post}/select/rest_pairs.jsonl")}
before = {a["pair_id"]: a["preferred"] for a in read(f"{pre}/annotate/auto.jsonl")}
after = {a["pair_id"]: a["preferred"] for a in read(f"{post}/annotate/auto.jsonl")}
gold = {g["pair_id"]: g["preferred"] for g in read(f"{post}/label/gold_rest.jsonl")}
flipped = [k for k in before if before[k] != after[k]]
one_cut = pre_whole = post_whole = 0
for k in flipped:
    cut_a, cut_b = ntok(pairs[k]["response_a"]) >= CUT, ntok(pairs[k]["response_b"]) >= CUT
    if cut_a != cut_b:
        one_cut += 1
        whole = "B" if cut_a else "A"
        pre_whole += before[k] == whole
        post_whole += after[k] == whole
print(f"{len(flipped)} labels differ; {one_cut} of those pairs have exactly one truncated response: the version with "
      f"the end-of-turn term preferred the whole one in {pre_whole}, the one without it in {post_whole}; "
      f"gold calls {sum(gold[k] == 'tie' for k in flipped)} of the {len(flipped)} ties")
responses = [r for p in pairs.values() for r in (p["response_a"], p["response_b"])]
print(f"truncated share among the arm's pair responses: {sum(ntok(r) >= CUT for r in responses) / len(responses):.3f}")


def eval_stats(path):
    rs = [r for it in read(path) for r in it["responses"]]
    return sum(ntok(r) >= CUT for r in rs) / len(rs), sum(map(ntok, rs)) / len(rs)


print("evaluation samples: truncated share, mean tokens")
for name, path in [("initial policy", f"{shared}/eval_initial/responses.jsonl")] + [
        (os.path.basename(a.rstrip("/")), f"{a}/eval_trained/responses.jsonl") for a in (pre, post, *others)]:
    share, mean = eval_stats(path)
    print(f"  {name:32s} {share:.3f}  {mean:.1f}")

"""Benchmark: response log-prob scoring, three ways, on the embedded default.

    python benchmarks/scorer.py [--prompts 64] [--responses 4] [--dtypes float32,bfloat16] [--profile]

Scores the same workload (P prompts × R responses, prompts ≈ 64 tokens,
responses ≈ 96 tokens) with (1) plain transformers one example at a time,
(2) plain padded batching (full logits for every position), (3) the
frugalign scorer; prints response tokens per second, the ratios, this CPU's
matmul ceiling at the same precision, and the scorer's useful work as a share
of that ceiling: 2 × parameters × (distinct prompt tokens + response tokens) / time.
Not a test: figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from _models import load_for_benchmark

from frugalign.logprobs import LogProbScorer, ScoreItem

WORDS = ("model data label human pair answer question reason careful short clear helpful prompt "
         "response policy reward train score sample value number river mountain city music garden "
         "window history science simple explain example reader writer").split()


def make_workload(tok, n_prompts: int, n_resp: int, seed: int = 0) -> list[ScoreItem]:
    rng = random.Random(seed)

    def text(n_tokens: int) -> str:
        words, out = [], ""
        while len(tok(out)["input_ids"]) < n_tokens:
            words.append(rng.choice(WORDS))
            out = " ".join(words)
        return out.capitalize() + "."

    items = []
    for _ in range(n_prompts):
        prompt = text(rng.randint(40, 60))  # + chat template ≈ 64 tokens
        items += [ScoreItem(prompt, text(rng.randint(80, 110))) for _ in range(n_resp)]
    return items


def naive_one_at_a_time(model, encoded) -> float:
    total = 0.0
    for e in encoded:
        ids = torch.tensor([e.ids], device=model.device)
        logits = model(ids).logits[0].float()
        lp = torch.log_softmax(logits[e.start - 1:e.end - 1], -1)
        total += lp.gather(-1, ids[0, e.start:e.end, None]).sum().item()
    return total


def plain_padded(model, encoded, pad_id: int, batch_size: int = 16) -> float:
    total = 0.0
    for b in range(0, len(encoded), batch_size):
        chunk = encoded[b:b + batch_size]
        width = max(len(e.ids) for e in chunk)
        ids = torch.full((len(chunk), width), pad_id)
        mask = torch.zeros_like(ids)
        for r, e in enumerate(chunk):
            ids[r, :len(e.ids)] = torch.tensor(e.ids)
            mask[r, :len(e.ids)] = 1
        ids, mask = ids.to(model.device), mask.to(model.device)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for r, e in enumerate(chunk):
            total += logp[r, e.start - 1:e.end - 1].gather(-1, ids[r, e.start:e.end, None]).sum().item()
    return total


def matmul_ceiling(dtype: torch.dtype, device: str = "cpu", seconds: float = 3.0) -> float:
    """GFLOP/s of a transformer-shaped matmul (tokens × hidden @ hidden × 4·hidden/…)."""
    m = 2048 if device == "cpu" else 16384
    a = torch.randn(m, 576, dtype=dtype, device=device)
    b = torch.randn(576, 1536, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    synchronize(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    synchronize(device)
    return 2 * m * 576 * 1536 * n / (time.perf_counter() - t0) / 1e9


DEVICE = "cpu"


def timed(fn):
    synchronize(DEVICE)
    t0 = time.perf_counter()
    value = fn()
    synchronize(DEVICE)
    return value, time.perf_counter() - t0


def load(args, dtype_name: str):
    """The model to benchmark; ``--random-init`` builds it from a config dir (timing only, no weights needed)."""
    return load_for_benchmark(args.model, dtype_name, args.device, args.random_init)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def run(dtype_name: str, args) -> None:
    model, tok = load(args, dtype_name)
    items = make_workload(tok, args.prompts, args.responses)
    scorer = LogProbScorer(model, tok, progress=False, token_budget=args.token_budget)
    # Every method needs the same tokenisation; the scorer's time includes it, so the others' does too.
    encoded, t_encode = timed(lambda: scorer.encode(items))
    n_resp_tokens = sum(e.end - e.start for e in encoded)
    distinct_prompt_tokens = sum(encoded[i].start for i in range(0, len(encoded), args.responses))
    params = sum(p.numel() for p in model.parameters())
    print(f"\n== {dtype_name}: {len(items)} responses, {n_resp_tokens} response tokens, "
          f"{distinct_prompt_tokens} distinct prompt tokens, {params / 1e6:.1f}M parameters")
    ours, t_ours = timed(lambda: sum(r.logprob for r in scorer.score(items)))
    padded, t_pad = timed(lambda: plain_padded(model, encoded, tok.pad_token_id))
    naive_items = encoded if not args.naive_subset else encoded[:args.naive_subset]
    naive, t_naive = timed(lambda: naive_one_at_a_time(model, naive_items))
    t_naive_full = t_naive * len(encoded) / len(naive_items) + t_encode  # extrapolated when a subset was timed
    t_pad += t_encode
    ceiling = matmul_ceiling(model.dtype, args.device)
    useful = 2 * params * (distinct_prompt_tokens + n_resp_tokens) / t_ours / 1e9
    print(f"{'method':28s} {'seconds':>8s} {'resp tok/s':>11s}")
    for name, t in (("one at a time (plain)", t_naive_full), ("padded batches (plain)", t_pad),
                    ("frugalign scorer", t_ours)):
        print(f"{name:28s} {t:8.1f} {n_resp_tokens / t:11.0f}")
    print(f"speed-up vs one-at-a-time: {t_naive_full / t_ours:.2f}x   vs padded batching: {t_pad / t_ours:.2f}x")
    print(f"matmul ceiling {ceiling:.0f} GFLOP/s; scorer useful work {useful:.0f} GFLOP/s "
          f"= {100 * useful / ceiling:.0f}% of ceiling")
    print(f"(tokenisation, included in every row: {t_encode:.2f}s)")
    print(f"agreement: |scorer - padded| = {abs(ours - padded):.4f} over the summed log-prob {padded:.1f}")
    if args.profile:
        profile_scorer(scorer, items, useful * t_ours, ceiling)


# Operator name fragments -> where the time goes (first match wins).
OP_GROUPS = (("weight matmuls", ("aten::mm", "aten::addmm", "aten::linear", "mkldnn", "aten::matmul")),
             ("attention", ("attention", "aten::bmm", "aten::baddbmm")),
             ("LM head reduction (logsumexp, gather)", ("logsumexp", "log_softmax", "gather", "aten::max",
                                                        "aten::amax", "aten::exp")),
             ("copies and layout", ("aten::copy_", "aten::cat", "aten::index", "aten::contiguous", "aten::clone",
                                    "aten::to", "aten::_to_copy", "aten::expand", "aten::narrow", "aten::slice")),
             ("element-wise (norm, RoPE, SiLU, adds)", ("aten::mul", "aten::add", "aten::silu", "aten::rsqrt",
                                                       "aten::pow", "aten::mean", "aten::neg", "aten::sub",
                                                       "aten::div", "aten::sum", "aten::cos", "aten::sin")))


def profile_scorer(scorer, items, useful_gflop: float, ceiling: float) -> None:
    """Where the scorer's time goes: operator groups by self CPU time, and the weight matmuls' own rate."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        scorer.score(items)
        wall = time.perf_counter() - t0
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    groups: dict[str, float] = {}
    for e in events:
        group = next((g for g, keys in OP_GROUPS if any(k in e.key for k in keys)), "other (Python, framework)")
        groups[group] = groups.get(group, 0.0) + e.self_cpu_time_total / 1e6
    print(f"\nprofile of the frugalign scorer ({wall:.1f}s wall with the profiler on; "
          f"{total:.1f}s of operator self time):")
    for g, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {g:40s} {t:6.2f}s  {100 * t / total:5.1f}%")
    mm = groups.get("weight matmuls", 0.0)
    if mm:
        print(f"  weight matmuls alone run at {useful_gflop / mm:.0f} GFLOP/s = {100 * useful_gflop / mm / ceiling:.0f}% "
              f"of the {ceiling:.0f} GFLOP/s ceiling; the rest of the time is the groups above")
    print("  top operators:")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]:
        print(f"    {e.key[:44]:44s} {100 * e.self_cpu_time_total / 1e6 / total:5.1f}%  {e.count:6d} calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--responses", type=int, default=4)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--token-budget", type=int, default=4096)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--random-init", action="store_true",
                        help="--model is a config+tokenizer dir; weights are random (timing only)")
    parser.add_argument("--naive-subset", type=int, default=0,
                        help="time the one-at-a-time loop on this many items and extrapolate (0 = all)")
    parser.add_argument("--profile", action="store_true",
                        help="then profile the frugalign scorer: time per operator group, matmul rate")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.dtypes.split(","):
        run(name.strip(), args)


if __name__ == "__main__":
    main()

"""Generation throughput: plain transformers ``generate`` vs frugalign's paths.

Same prompts, same settings, one run after the other in one invocation; each
repetition alternates the order (plain first, then fast first) so slow drift
from other work on the machine does not favour one side. Prints tokens/s
(generated tokens, counted the same way for every path: the response text
re-tokenised) and responses/s for each path and its speed-up over plain
``generate`` at the same precision and batch size (by wall clock and by this
process's CPU time), then greedy agreement of every path with plain
``generate`` (float32 and the same precision), for precisions other than
float32 the mean per-token log-prob shift, and the gold score (ifeval
checkers) of a sampled pool from every path vs plain float32 ``generate``'s,
paired over test prompts (``--gold-prompts``).

    python benchmarks/generation.py                       # SmolLM2-135M, 16 prompts × 4, 96 tokens
    python benchmarks/generation.py --dtypes float32 --threads 1 --repeats 3
    python benchmarks/generation.py --paths plain,fast --batch-sizes 16,64

This is a script, not a timed test: the numbers depend on the machine and on
whatever else is running; repeat it and report the spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

PROMPTS = [
    "Write a short poem about the sea.",
    "What is the capital of France? Explain briefly.",
    "Give three tips for staying productive while working from home.",
    "Explain what a neural network is to a child.",
    "Describe your ideal weekend in a few sentences.",
    "Write a haiku about autumn leaves.",
    "What are the benefits of drinking water?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "How do I make a cup of tea?",
    "List four animals that live in the ocean.",
    "Write a friendly email inviting a colleague to lunch.",
    "Why is the sky blue?",
    "Suggest a name for a new coffee shop and explain it.",
    "What is the difference between weather and climate?",
    "Give me a motivational quote and explain what it means.",
    "Write a two-sentence horror story.",
    "How does a bicycle work?",
    "Explain recursion with a simple example.",
    "What should I pack for a beach holiday?",
    "Write a limerick about a cat.",
    "Describe the taste of chocolate to someone who has never had it.",
    "What are three good habits for learning a new language?",
    "Write a short product description for a reusable water bottle.",
    "Explain photosynthesis in simple terms.",
    "What is a prime number? Give examples.",
    "Write a thank-you note to a teacher.",
    "How can I improve my sleep?",
    "Tell me a fun fact about space.",
    "Write a tweet announcing a new book.",
    "What is the tallest mountain in the world and where is it?",
    "Give two arguments for and against homework.",
    "Explain what an API is in one paragraph.",
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--prompts", type=int, default=16, help="number of prompts (cycled from a built-in list)")
    p.add_argument("--n", type=int, default=4, help="samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--batch-sizes", default="16", help="comma list; each is run for every path")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--paths", default=None,
                   help="comma list of: plain (model.generate), fast, fast-nopack (continuous batching "
                        "with the model's own modules, no fused/prepacked weights), vllm (its own engine; "
                        "run with .venv-vllm/bin/python). Default: every installed path")
    p.add_argument("--device", default="cpu")
    p.add_argument("--random-init", action="store_true",
                   help="--model is a config+tokenizer dir; weights are random (timing only: every sample "
                        "runs to max-new-tokens)")
    p.add_argument("--threads", type=int, default=0, help="torch threads for every path (0: torch's default)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--quality-prompts", type=int, default=16,
                   help="greedy prompts for agreement / log-prob shift (0: skip)")
    p.add_argument("--quality-tokens", type=int, default=48)
    p.add_argument("--gold-prompts", type=int, default=48,
                   help="ifeval test prompts for the gold-score comparison of each path's pool with plain "
                        "float32 generate's (n samples each, temperature 0.9, top_p 0.95; 0: skip)")
    p.add_argument("--profile", action="store_true",
                   help="only profile each path (torch.profiler, 4 prompts × n, 32 tokens) and print top ops")
    args = p.parse_args(argv)
    if args.paths is None:
        from frugalign.backends import vllm_available

        args.paths = "plain,fast" + (",vllm" if vllm_available() else "")
    return args


def profile_paths(args, dtype: str, model, tok, reqs) -> None:
    """Where the time goes: top operators by self CPU time for each path."""
    from torch.profiler import ProfilerActivity, profile

    from frugalign.generate import GenerationSettings

    s = GenerationSettings(args.n, args.temperature, args.top_p, 32, 0, int(args.batch_sizes.split(",")[0]))
    for p in args.paths.split(","):
        backend = make_backend(p, model, tok, args.model)
        backend.generate(reqs[:1], GenerationSettings(1, 0.0, 1.0, 4, 0, s.batch_size))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            backend.generate(reqs[:4], s)
            wall = time.perf_counter() - start
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events) or 1
        print(f"\nprofile {p} {dtype} ({wall:.1f}s wall, 4 prompts × n={args.n}, 32 tokens):")
        for e in events[:8]:
            print(f"  {e.key[:48]:48s} {100 * e.self_cpu_time_total / total:5.1f}%  "
                  f"{e.count:6d} calls  {e.self_cpu_time_total / max(e.count, 1):9.1f} us/call")


_VLLM: dict = {}


def make_backend(path: str, model, tok, spec: str = "smollm2-135m-instruct"):
    """The backend behind a benchmark path name (one vLLM engine per dtype, loaded once)."""
    from frugalign.backends import get_backend
    from frugalign.backends.fast_cpu import FastBackend

    if path == "vllm":
        dtype = str(model.dtype).removeprefix("torch.")
        if dtype not in _VLLM:
            _VLLM[dtype] = get_backend("vllm", None, tok, model_spec=spec, dtype=dtype)
        return _VLLM[dtype]
    if path == "fast-nopack":
        return FastBackend(model, tok, pack=False, progress=False)
    return get_backend("transformers" if path == "plain" else path, model, tok, progress=False)


def count_tokens(tok, outputs) -> int:
    """Generated tokens, counted identically for every path: the response texts re-tokenised."""
    texts = [r for rs in outputs for r in rs]
    return sum(len(x) for x in tok(texts, add_special_tokens=False)["input_ids"])


def timed(backend, tok, reqs, settings):
    """Wall seconds, generated tokens, responses, and this process's CPU seconds.

    CPU seconds are the steadier figure on a shared machine: time spent
    descheduled while others run does not count (with one thread per process).
    """
    start, cpu = time.perf_counter(), time.process_time()
    out = backend.generate(reqs, settings)
    dt, cpu = time.perf_counter() - start, time.process_time() - cpu
    return dt, count_tokens(tok, out), sum(len(rs) for rs in out), cpu


def throughput(args, dtype: str, model, tok, reqs) -> list[dict]:
    """Time every path on the same prompts, alternating the order between repeats."""
    from frugalign.generate import GenerationSettings

    rows = []
    paths = args.paths.split(",")
    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        settings = GenerationSettings(args.n, args.temperature, args.top_p, args.max_new_tokens, 0, bs)
        backends = {p: make_backend(p, model, tok, args.model) for p in paths}
        for b in backends.values():  # warm-up: first-call allocations and lazy inits
            b.generate(reqs[:2], GenerationSettings(1, 0.0, 1.0, 4, 0, bs))
        runs = {p: [] for p in paths}
        for rep in range(args.repeats):
            for p in (paths if rep % 2 == 0 else paths[::-1]):
                dt, ntok, nresp, cpu = timed(backends[p], tok, reqs, settings)
                runs[p].append((dt, ntok, nresp, cpu))
                print(f"  {dtype:8s} bs={bs:<3d} {p:11s} rep {rep}: {dt:7.1f}s wall {cpu:7.1f}s cpu  "
                      f"{ntok:6d} tok  {ntok / dt:7.1f} tok/s  {nresp / dt:6.2f} resp/s  "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
        for p in paths:
            rows.append(dict(dtype=dtype, bs=bs, path=p, runs=runs[p]))
    return rows


def quality(args, model32, tok, reqs, dtype: str, model) -> str:
    """Greedy agreement of each path in ``dtype`` with plain generate, and the log-prob shift."""
    from frugalign.generate import GenerationSettings
    from frugalign.logprobs import LogProbScorer

    reqs = reqs[:args.quality_prompts]
    s = GenerationSettings(1, 0.0, 1.0, args.quality_tokens, 0, 16)
    ref32 = make_backend("plain", model32, tok, args.model).generate(reqs, s)
    same = ref32 if model is model32 else make_backend("plain", model, tok, args.model).generate(reqs, s)
    lines = []
    for p in args.paths.split(","):
        out = same if p == "plain" else make_backend(p, model, tok, args.model).generate(reqs, s)
        a32 = sum(a == b for a, b in zip(ref32, out)) / len(out)
        ad = sum(a == b for a, b in zip(same, out)) / len(out)
        lines.append(f"  {p:11s} {dtype:8s} greedy ({args.quality_tokens} tokens) identical to plain generate: "
                     f"float32 {a32:.0%}, {dtype} {ad:.0%} of {len(out)} prompts")
    if model is not model32:
        items = [(r.prompt, o[0]) for r, o in zip(reqs, ref32) if o[0].strip()]
        a = LogProbScorer(model32, tok, progress=False).score(items)
        b = LogProbScorer(model, tok, progress=False).score(items)
        shifts = [(y.logprob - x.logprob) / x.n_tokens for x, y in zip(a, b)]
        lines.append(f"  mean per-token log-prob shift {dtype} − float32 on float32 greedy responses: "
                     f"{statistics.mean(shifts):+.4f} nats (mean |shift| {statistics.mean(map(abs, shifts)):.4f})")
    return "\n".join(lines)


def gold_quality(args, model32, tok, dtype: str, model) -> str:
    """Gold score of each path's sampled pool vs plain float32 ``generate``'s, paired over test prompts.

    Same ifeval test prompts, same seed and settings as a study pool. Plain
    ``generate`` draws from one global generator and the frugalign paths from
    per-sequence ones, so their samples differ even where the arithmetic is
    exact: in float32 the ``fast`` − plain row measures that sampling noise
    alone; in another precision it adds the precision's effect.
    """
    from frugalign.generate import GenerationRequest, GenerationSettings
    from frugalign.goldjudge.registry import get_task
    from frugalign.paired import mean_ci, paired_difference

    task = get_task("ifeval")
    prompts = task.prompts(args.gold_prompts, split="test")
    reqs = [GenerationRequest(p.prompt) for p in prompts]
    s = GenerationSettings(args.n, 0.9, 0.95, args.max_new_tokens, 0, int(args.batch_sizes.split(",")[0]))
    gold = {}
    for path in args.paths.split(","):
        m = model32 if path == "plain" else model
        out = make_backend(path, m, tok, args.model).generate(reqs, s)
        gold[path] = {p.id: sum(task.score(p, r) for r in rs) / len(rs) for p, rs in zip(prompts, out)}
    lines = [f"  gold score (ifeval, {len(prompts)} test prompts × n={args.n}, 95% bootstrap over prompts)"]
    for path, by_prompt in gold.items():
        e = mean_ci(by_prompt)
        line = f"  {path:11s} {dtype if path != 'plain' else 'float32':8s} mean {e.value:.3f} [{e.low:.3f}, {e.high:.3f}]"
        if path != "plain" and "plain" in gold:
            d = paired_difference(by_prompt, gold["plain"])
            line += f"   − plain float32: {d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
        lines.append(line)
    return "\n".join(lines)


def summarise(rows: list[dict]) -> None:
    """Median throughput per path and its speed-up over plain generate, repeat by repeat."""
    print("\nsummary (median over repeats; ×: plain's time / this path's time for the same repeat, "
          "same dtype and batch size; wall clock, then CPU time)")
    plain = {(r["dtype"], r["bs"]): r for r in rows if r["path"] == "plain"}
    for r in rows:
        tps = [run[1] / run[0] for run in r["runs"]]
        rps = [run[2] / run[0] for run in r["runs"]]
        line = (f"  {r['dtype']:8s} bs={r['bs']:<3d} {r['path']:11s} {statistics.median(tps):7.1f} tok/s "
                f"[{min(tps):.1f}–{max(tps):.1f}]  {statistics.median(rps):6.2f} resp/s")
        base = plain.get((r["dtype"], r["bs"]))
        if base is not None and base is not r:
            wall = [b[0] / x[0] for x, b in zip(r["runs"], base["runs"])]
            cpu = [b[3] / x[3] for x, b in zip(r["runs"], base["runs"])]
            line += (f"   wall ×{statistics.median(wall):.2f} [" + ", ".join(f"{x:.2f}" for x in wall) + "]"
                     f"  cpu ×{statistics.median(cpu):.2f} [" + ", ".join(f"{x:.2f}" for x in cpu) + "]")
        print(line)


def load(args, dtype: str):
    from _models import load_for_benchmark

    return load_for_benchmark(args.model, dtype, args.device, args.random_init)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from frugalign.generate import GenerationRequest

    if args.threads:
        torch.set_num_threads(args.threads)
    reqs = [GenerationRequest(PROMPTS[i % len(PROMPTS)]) for i in range(args.prompts)]
    print(f"model {args.model}; {args.prompts} prompts × n={args.n}, {args.max_new_tokens} new tokens, "
          f"temperature {args.temperature}, top_p {args.top_p}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows, notes = [], []
    model32 = None
    for dtype in args.dtypes.split(","):
        model, tok = load(args, dtype)
        if args.profile:
            profile_paths(args, dtype, model, tok, reqs)
            continue
        if dtype == "float32":
            model32 = model
        rows += throughput(args, dtype, model, tok, reqs)
        if args.quality_prompts:
            model32 = model32 or load(args, "float32")[0]
            notes.append(quality(args, model32, tok, reqs, dtype, model))
        if args.gold_prompts:
            model32 = model32 or load(args, "float32")[0]
            notes.append(gold_quality(args, model32, tok, dtype, model))
    summarise(rows)
    if notes:
        print("\nquality\n" + "\n".join(notes))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

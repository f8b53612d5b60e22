"""``frugalign demo``: the main job on the embedded default, offline on a CPU.

Today it runs the stages that exist end to end on a handful of built-in
prompts: generate N responses with the policy, score every response with the
fast scorer, and print a table of each prompt's best and worst response by
mean log-prob, plus where the files went.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..config import add_config_arguments, build_config
from ..models import DEFAULT_MODEL

DEMO_PROMPTS = [
    "Give me three tips for staying focused while studying.",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about autumn leaves.",
    "What is the difference between a list and a tuple in Python?",
    "Suggest a name for a friendly robot and explain your choice briefly.",
    "How do I politely decline a meeting invitation?",
]


@dataclass
class DemoConfig:
    model: str = DEFAULT_MODEL
    output_dir: str = "runs/demo"
    n: int = 2
    max_new_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    dtype: str = "float32"
    progress: bool = True


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded default (offline, CPU)",
                       description="Generate and score responses on built-in prompts with the embedded default.")
    add_config_arguments(p, DemoConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = build_config(DemoConfig, args)
    from ..data import write_records
    from ..generate import GenerationSettings, TransformersBackend, generate_pool
    from ..logprobs import LogProbScorer, ScoreItem
    from ..models import load_model
    from ..types import PromptItem

    t0 = time.time()
    out = Path(cfg.output_dir)
    model, tok = load_model(cfg.model, dtype=cfg.dtype)
    t_load = time.time() - t0
    items = [PromptItem(f"demo-{i}", p) for i, p in enumerate(DEMO_PROMPTS)]
    settings = GenerationSettings(cfg.n, cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.seed, 16)
    t1 = time.time()
    pool = generate_pool(TransformersBackend(model, tok, progress=cfg.progress), items, settings)
    t_gen = time.time() - t1
    write_records(out / "pool.jsonl", pool)
    flat = [(it, k, ScoreItem(it.prompt, r, it.system)) for it in pool for k, r in enumerate(it.responses)]
    t2 = time.time()
    scorer = LogProbScorer(model, tok, progress=cfg.progress)
    results = scorer.score([x[2] for x in flat])
    t_score = time.time() - t2
    write_records(out / "scores.jsonl", [
        {"prompt_id": it.id, "response_index": k, "logprob": r.logprob, "n_tokens": r.n_tokens,
         "mean_logprob": r.mean_logprob} for (it, k, _), r in zip(flat, results)])
    _print_table(pool, flat, results)
    print(f"\nmodel {cfg.model} loaded in {t_load:.1f}s; generated {len(flat)} responses in {t_gen:.1f}s; "
          f"scored {scorer.stats.tokens_scored} response tokens in {t_score:.2f}s")
    print(f"files: {out / 'pool.jsonl'}, {out / 'scores.jsonl'}")
    return 0


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_table(pool, flat, results) -> None:
    by_prompt: dict[str, list] = {}
    for (it, k, _), r in zip(flat, results):
        by_prompt.setdefault(it.id, []).append((r.mean_logprob, it.responses[k]))
    print(f"\n{'prompt':42s} | {'most likely response (mean log-prob)':70s} | least likely")
    print("-" * 130)
    for it in pool:
        ranked = sorted(by_prompt[it.id], reverse=True)
        best, worst = ranked[0], ranked[-1]
        print(f"{_short(str(it.prompt), 42):42s} | {best[0]:6.2f} {_short(best[1], 62):62s} | {worst[0]:6.2f}")

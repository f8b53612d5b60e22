"""``frugalign score``: response log-probs under a model (optionally minus a reference model).

Under ``accelerate launch`` with several processes each process scores a
shard of the responses and rank 0 writes them all, in input order. The
settings (:class:`frugalign.scoring.ScoreConfig`) live with the scorer.
"""

from __future__ import annotations

from ..config import add_config_arguments, build_config
from ..scoring import ScoreConfig


def register(sub) -> None:
    p = sub.add_parser("score", help="score responses with a model's log-probs",
                       description="Sum of response-token log-probs for every response of a pool or pair file.")
    add_config_arguments(p, ScoreConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = build_config(ScoreConfig, args)
    from ..data import write_records
    from ..distributed import dist_context, process_device, score
    from ..scoring import items_from_file, make_scorer

    rows = items_from_file(cfg.input)
    items = [it for _, it in rows]
    ctx = dist_context()   # under `accelerate launch`, each process scores a shard
    device = process_device(cfg.device, ctx)
    scorer = make_scorer(cfg, cfg.model, device, progress=cfg.progress and ctx.is_main)
    results = score(scorer, items, ctx, per_token=cfg.per_token)
    stats = getattr(scorer, "stats", None)      # this process's shard
    ref_results = None
    if cfg.ref_model:
        del scorer   # one model in memory at a time
        ref_results = score(make_scorer(cfg, cfg.ref_model, device, progress=cfg.progress and ctx.is_main), items, ctx)
    if not ctx.is_main:
        return 0
    out = []
    for k, ((key, _), res) in enumerate(zip(rows, results)):
        rec = dict(key, logprob=res.logprob, n_tokens=res.n_tokens, skipped=res.skipped)
        if res.token_logprobs is not None:
            rec["token_logprobs"] = res.token_logprobs
        if ref_results is not None:
            rec["ref_logprob"] = ref_results[k].logprob
            rec["ratio"] = res.logprob - ref_results[k].logprob
        out.append(rec)
    write_records(cfg.output, out)
    shard = f" (counts for process 0 of {ctx.world})" if ctx.world > 1 else ""
    counts = (f"; {stats.tokens_scored} tokens, {stats.groups} shared prompts, {stats.overflow_skipped} skipped "
              f"and {stats.overflow_truncated} truncated for context{shard}") if stats is not None else \
        f"; {sum(r.skipped for r in results)} skipped for context"
    print(f"scored {len(items)} responses with {cfg.backend} -> {cfg.output}{counts}")
    return 0

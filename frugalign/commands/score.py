"""``frugalign score``: response log-probs under a model (optionally minus a reference model).

Under ``accelerate launch`` with several processes each process scores a
shard of the responses and rank 0 writes them all, in input order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import add_config_arguments, build_config
from ..errors import ConfigError, DataError
from ..models import DEFAULT_MODEL


@dataclass
class ScoreConfig:
    input: str = field(default="", metadata={"help": "pool (responses) or pairs (response_a/response_b, or any TRL preference layout) file"})
    output: str = field(default="", metadata={"help": "scores file to write (.jsonl/.parquet)"})
    model: str = DEFAULT_MODEL
    ref_model: str | None = field(default=None, metadata={"help": "if set, also score with it and report model − ref"})
    dtype: str = field(default="auto", metadata={"help": "auto (bfloat16 only where native and faster) | float32 | bfloat16"})
    device: str = "cpu"
    token_budget: int = 4096
    max_batch: int = 64
    share_prompts: bool = True
    overflow: str = field(default="error", metadata={"help": "error | skip | truncate"})
    per_token: bool = False
    backend: str = field(default="torch", metadata={"help": "torch (frugalign's batched scorer) | vllm "
                                                              "(prompt_logprobs; GPU: pip install frugalign[vllm], CPU: scripts/setup-vllm.sh)"})
    progress: bool = True

    def validate(self) -> None:
        if not self.input or not self.output:
            raise ConfigError("score needs input=... and output=...")
        if self.backend not in ("torch", "vllm"):
            raise ConfigError(f"unknown scoring backend {self.backend!r}; available: torch, vllm")


def register(sub) -> None:
    p = sub.add_parser("score", help="score responses with a model's log-probs",
                       description="Sum of response-token log-probs for every response of a pool or pair file.")
    add_config_arguments(p, ScoreConfig)
    p.set_defaults(func=run)


def _items_from_file(path):
    """Flatten a pool or a pair file (any TRL layout) into (record id, item) rows."""
    from ..data import read_pool_or_pairs
    from ..logprobs import ScoreItem

    kind, items = read_pool_or_pairs(path)
    rows = []
    if kind == "pool":
        for item in items:
            if not item.responses:
                raise DataError(f"{path}: prompt {item.id!r}: field 'responses': empty (nothing to score)")
            for k, r in enumerate(item.responses):
                rows.append(({"prompt_id": item.id, "response_index": k}, ScoreItem(item.prompt, r, item.system)))
    else:
        for pair in items:
            for side, r in (("A", pair.response_a), ("B", pair.response_b)):
                rows.append(({"pair_id": pair.id, "side": side}, ScoreItem(pair.prompt, r, pair.system)))
    return rows


def run(args) -> int:
    cfg = build_config(ScoreConfig, args)
    from ..data import write_records
    from ..distributed import dist_context, score

    rows = _items_from_file(cfg.input)
    items = [it for _, it in rows]
    ctx = dist_context()   # under `accelerate launch`, each process scores a shard
    device = f"cuda:{ctx.local_rank}" if ctx.world > 1 and cfg.device == "cuda" else cfg.device
    kw = dict(token_budget=cfg.token_budget, max_batch=cfg.max_batch, share_prompts=cfg.share_prompts,
              overflow=cfg.overflow, progress=cfg.progress and ctx.is_main)
    scorer = _scorer(cfg, cfg.model, device, kw)
    results = score(scorer, items, ctx, per_token=cfg.per_token)
    stats = getattr(scorer, "stats", None)      # this process's shard
    ref_results = None
    if cfg.ref_model:
        del scorer   # one model in memory at a time
        ref_results = score(_scorer(cfg, cfg.ref_model, device, kw), items, ctx)
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


def _scorer(cfg: ScoreConfig, spec: str, device: str, options: dict):
    """Something with ``score(items, per_token=...)``: the torch scorer or a vLLM engine."""
    if cfg.backend == "vllm":
        from ..backends.vllm_backend import VLLMBackend, check_vllm_usable

        check_vllm_usable()   # before loading anything: a missing extra or GPU is a one-line error
        return _VLLMScorer(VLLMBackend.from_model(spec, dtype=cfg.dtype), cfg.overflow)
    from ..logprobs import LogProbScorer
    from ..models import load_model

    model, tok = load_model(spec, dtype=cfg.dtype, device=device)
    return LogProbScorer(model, tok, desc=f"scoring ({spec})", **options)


class _VLLMScorer:
    """The vLLM backend's ``score`` with this command's overflow policy bound."""

    def __init__(self, backend, overflow: str):
        self.backend, self.overflow = backend, overflow

    def score(self, items, per_token: bool = False):
        return self.backend.score(items, per_token=per_token, overflow=self.overflow)

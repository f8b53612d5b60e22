"""Scoring a file (``frugalign score``): its settings, its rows, and the scorer behind them (torch or vLLM)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError, DataError
from .models import DEFAULT_MODEL


@dataclass
class ScoreConfig:
    """``frugalign score``: response log-probs of a pool or pairs file under a model (optionally minus a reference)."""

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


def items_from_file(path) -> list[tuple[dict, object]]:
    """Flatten a pool or a pair file (any TRL layout) into (record key, :class:`ScoreItem`) rows."""
    from .data import read_pool_or_pairs
    from .logprobs import ScoreItem

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


def make_scorer(cfg: ScoreConfig, spec: str, device: str, *, progress: bool = True):
    """Something with ``score(items, per_token=...)`` for model ``spec``: the torch scorer or a vLLM engine."""
    if cfg.backend == "vllm":
        from .backends.vllm_backend import VLLMBackend, check_vllm_usable

        check_vllm_usable()   # before loading anything: a missing extra or GPU is a one-line error
        return VLLMScorer(VLLMBackend.from_model(spec, dtype=cfg.dtype), cfg.overflow)
    from .logprobs import LogProbScorer
    from .models import load_model

    model, tok = load_model(spec, dtype=cfg.dtype, device=device)
    return LogProbScorer(model, tok, desc=f"scoring ({spec})", token_budget=cfg.token_budget, max_batch=cfg.max_batch,
                         share_prompts=cfg.share_prompts, overflow=cfg.overflow, progress=progress)


class VLLMScorer:
    """The vLLM backend's ``score`` with the settings' overflow policy bound."""

    def __init__(self, backend, overflow: str):
        self.backend, self.overflow = backend, overflow

    def score(self, items, per_token: bool = False):
        return self.backend.score(items, per_token=per_token, overflow=self.overflow)

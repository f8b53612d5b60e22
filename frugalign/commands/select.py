"""``frugalign select``: choose which pairs humans label under a budget (REAL)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..config import add_config_arguments, build_config
from ..errors import ConfigError
from ..formats import FORMAT_HELP, FORMATS, output_layout
from ..models import DEFAULT_MODEL
from ..select import EMBEDDERS, STRATEGIES


@dataclass
class SelectConfig:
    input: str = field(default="", metadata={"help": "pool (prompt, responses) or pairs (response_a/response_b, or any TRL preference layout)"})
    output: str = field(default="", metadata={"help": "chosen pairs file to write (.jsonl/.json/.parquet)"})
    budget: int = field(default=0, metadata={"help": "how many pairs humans label"})
    strategy: str = field(default="dissimilar", metadata={"help": " | ".join(STRATEGIES)})
    embedder: str = field(default="policy", metadata={"help": "policy (REAL) | sentence (all-MiniLM-L6-v2) | none"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "policy model for embedder=policy"})
    annotations: str | None = field(default=None, metadata={"help": "annotations of the candidates (strategy=uncertain)"})
    per_prompt: int = field(default=1, metadata={"help": "max pairs per prompt (0: no limit)"})
    seed: int = 0
    rest_output: str | None = field(default=None, metadata={"help": "also write the per-prompt picks not chosen"})
    format: str = field(default="auto", metadata={"help": FORMAT_HELP})
    summary: str | None = field(default=None, metadata={"help": "summary JSON (default: <output>.summary.json)"})
    dtype: str = field(default="auto", metadata={"help": "policy embedder: auto | float32 | bfloat16"})
    device: str = "cpu"
    token_budget: int = 4096
    progress: bool = True

    def validate(self) -> None:
        if not self.input or not self.output:
            raise ConfigError("select needs input=... and output=...")
        if self.format not in FORMATS:
            raise ConfigError(f"unknown format {self.format!r}; expected one of {', '.join(FORMATS)}")
        if self.budget <= 0:
            raise ConfigError("select needs budget=N (N > 0)")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if self.embedder not in EMBEDDERS:
            raise ConfigError(f"unknown embedder {self.embedder!r}; expected one of {', '.join(EMBEDDERS)}")
        if self.strategy == "uncertain" and not self.annotations:
            raise ConfigError("strategy=uncertain needs annotations=FILE (an annotator's output on the candidates)")
        if self.strategy in ("dissimilar", "similar", "centroid") and self.embedder == "none":
            raise ConfigError(f"strategy={self.strategy} needs embedder=policy or embedder=sentence")


def register(sub) -> None:
    p = sub.add_parser("select", help="choose which pairs humans label (dissimilar, random, ...)",
                       description="Choose pairs for human labelling under a budget: from a pool, the "
                                   "best pair per prompt, then the best pairs overall (REAL).")
    add_config_arguments(p, SelectConfig)
    p.set_defaults(func=run)


def make_embedder(cfg: SelectConfig):
    """The configured embedder (None for embedder=none)."""
    from ..select import policy_embedder, sentence_embedder

    if cfg.embedder == "none":
        return None
    if cfg.embedder == "sentence":
        return sentence_embedder()
    from ..models import load_model

    model, tok = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    return policy_embedder(model, tok, token_budget=cfg.token_budget, progress=cfg.progress)


def load_candidates(path: str, embedder):
    """A pool (has ``responses``) or a pairs file, as :class:`~frugalign.select.Candidates`, and its TRL layout."""
    from ..data import read_pool_or_pairs
    from ..select import candidates_from_pairs, candidates_from_pool

    kind, items = read_pool_or_pairs(path)
    if kind == "pool":
        return candidates_from_pool(items, embedder), None
    return candidates_from_pairs(items, embedder), items.layout


def run(args) -> int:
    cfg = build_config(SelectConfig, args)
    from ..data import read_annotations, write_json, write_records
    from ..select import attach_confidence, format_summary, select_pairs

    cands, input_layout = load_candidates(cfg.input, make_embedder(cfg))
    layout = output_layout(cfg.format, input_layout)
    if cfg.annotations:
        attach_confidence(cands, read_annotations(cfg.annotations))
    sel = select_pairs(cands, cfg.strategy, cfg.budget, seed=cfg.seed, per_prompt=cfg.per_prompt)
    write_records(cfg.output, [_annotated(cands, i, rank, cfg) for rank, i in enumerate(sel.chosen)], layout)
    if cfg.rest_output:
        write_records(cfg.rest_output, [_annotated(cands, i, None, cfg) for i in sel.rest], layout)
    summary = dict(sel.summary, input=cfg.input, output=cfg.output, embedder=cfg.embedder,
                   model=cfg.model if cfg.embedder == "policy" else None)
    out = Path(cfg.output)
    summary_path = cfg.summary or str(out.with_name(out.stem + ".summary.json"))
    write_json(summary_path, summary)
    print(format_summary(summary))
    print(f"wrote {len(sel.chosen)} pairs -> {cfg.output}; summary -> {summary_path}"
          + (f"; {len(sel.rest)} rest -> {cfg.rest_output}" if cfg.rest_output else ""))
    return 0


def _annotated(cands, i: int, rank: int | None, cfg: SelectConfig):
    """The pair with why it was chosen recorded in ``meta`` (strategy, rank, similarity)."""
    pair = cands.pairs[i]
    meta = dict(pair.meta, strategy=cfg.strategy)
    if rank is not None:
        meta["rank"] = rank
    if cands.similarity is not None:
        meta["similarity"] = round(float(cands.similarity[i]), 6)
    if cands.confidence is not None and cands.confidence[i] == cands.confidence[i]:
        meta["annotator_confidence"] = float(cands.confidence[i])
    return dataclasses.replace(pair, meta=meta)

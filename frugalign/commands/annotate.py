"""``frugalign annotate``: label pairs (or build and label pairs from a pool) automatically.

    frugalign annotate --method density-ratio --input pairs.jsonl --output ann.jsonl
    frugalign annotate --method implicit --model runs/dpo --ref-model smollm2-135m-instruct \\
        --input pool.jsonl --output ann.jsonl            # writes ann.pairs.jsonl too
    frugalign annotate --method weak-judge --labels human.jsonl --input pairs.jsonl --output ann.jsonl
    frugalign annotate --method llm-judge --input pairs.jsonl --output ann.jsonl

A pool input (records with ``responses``) becomes one best-of-N pair per
prompt for reward-based methods (all pairs for the LLM judge); the pairs are
written next to the annotations. The summary line counts everything dropped
or defaulted (ties, NaN scores, router fallbacks, labelled pairs skipped).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..annotate.factory import AnnotatorSettings
from ..config import add_config_arguments, build_config
from ..errors import ConfigError, DataError
from ..formats import FORMAT_HELP, FORMATS, default_layout, output_layout


@dataclass
class AnnotateConfig(AnnotatorSettings):
    input: str = field(default="", metadata={"help": "pairs (response_a/response_b, or any TRL preference layout) or pool (responses) file"})
    output: str = field(default="", metadata={"help": "annotations file to write"})
    pairs_output: str | None = field(default=None, metadata={"help": "pool input: pairs file (default <output>.pairs.jsonl)"})
    summary: str | None = field(default=None, metadata={"help": "also write the summary counts as JSON here"})
    annotate_labelled: bool = field(default=False, metadata={"help": "also annotate the labelled pairs (trained or calibrated on)"})
    training_output: str | None = field(default=None, metadata={"help": "also write the training table: every annotated "
                                        "and human-labelled pair as prompt/chosen/rejected (ties dropped), for `frugalign train` or TRL"})
    training_weights: str = field(default="confidence", metadata={"help": "weight column of the training table: "
                                  "confidence (CW-PO; human labels 1) | none"})
    format: str = field(default="auto", metadata={"help": FORMAT_HELP})

    def validate(self) -> None:
        if not self.input or not self.output:
            raise ConfigError("annotate needs input=... and output=...")
        if self.format not in FORMATS:
            raise ConfigError(f"unknown format {self.format!r}; expected one of {', '.join(FORMATS)}")
        if self.training_weights not in ("confidence", "none"):
            raise ConfigError(f"training_weights={self.training_weights!r}: expected confidence or none")
        super().validate()


def register(sub) -> None:
    p = sub.add_parser("annotate", help="label pairs automatically with a confidence",
                       description="Annotate pairs with a weak judge (CW-PO), a density ratio (Dr.SoW), "
                                   "the implicit reward (SPA) or an LLM judge.")
    add_config_arguments(p, AnnotateConfig)
    p.set_defaults(func=run)


def _training_labels(cfg: AnnotateConfig, kind: str, items):
    """Human labels and the pairs they refer to (input pairs unless label_pairs is set):
    training data of the weak judge, temperature calibration of the reward annotators."""
    from ..data import read_annotations, read_pairs

    if not cfg.labels or (cfg.method == "weak-judge" and cfg.judge_load):
        return None, None
    labels = read_annotations(cfg.labels)
    if cfg.label_pairs:
        return read_pairs(cfg.label_pairs), labels
    if kind != "pairs":
        raise ConfigError("labels on a pool input need label_pairs=... (the pairs the labels refer to)")
    return items, labels


def _default_pairs_output(output: str) -> str:
    p = Path(output)
    return str(p.with_name(f"{p.stem}.pairs.jsonl"))


def annotate_input(cfg: AnnotateConfig, annotator, kind: str, items, labelled: set[str]):
    """Run the annotator on pairs or a pool; returns (pairs or None, annotations, extra counts)."""
    from ..data import pool_to_pairs

    extra = {}
    if kind == "pool":
        if hasattr(annotator, "annotate_pool"):
            pairs, anns = annotator.annotate_pool(items, rejected=cfg.pool_rejected(), seed=cfg.seed)
        else:  # a pairwise judge sees every pair of each prompt
            pairs = pool_to_pairs(items)
            anns = annotator.annotate(pairs)
        return pairs, anns, extra
    todo = [p for p in items if p.id not in labelled]
    extra["labelled_not_annotated"] = len(items) - len(todo)
    if not todo:
        raise DataError("every input pair is labelled; nothing to annotate (set annotate_labelled=true)")
    return None, annotator.annotate(todo), extra


def write_training_table(cfg: AnnotateConfig, pairs, anns, train_pairs, labels, layout: str | None) -> dict:
    """Join the annotated pairs and the human-labelled ones with their labels into one training table."""
    from ..data import annotations_to_training, write_records

    by_id = {p.id: p for p in [*(train_pairs or []), *pairs]}
    judged = {a.pair_id for a in anns}
    votes = list(anns) + [a for a in labels or [] if a.pair_id not in judged]  # a human label beats a model's
    rows, counts = annotations_to_training(list(by_id.values()), votes, weighting=cfg.training_weights)
    if not rows:
        raise DataError("no training rows (every judged pair is a tie); training table not written")
    write_records(cfg.training_output, rows, layout or default_layout(r.prompt for r in rows))
    return counts


def format_summary(summary: dict) -> str:
    """One line: label counts first, then every non-zero counter (drops, fallbacks, cache)."""
    keys = ["input_pairs", "annotated", "A", "B", "tie", "mean_confidence", "temperature"]
    head = ", ".join(f"{k}={summary[k]:.3f}" if isinstance(summary.get(k), float) else f"{k}={summary.get(k)}"
                     for k in keys if summary.get(k) is not None)
    rest = ", ".join(f"{k}={v}" for k, v in sorted(summary.get("counts", {}).items()) if v)
    return head + (f" | {rest}" if rest else "")


def run(args) -> int:
    """Read, annotate, write annotations (+ pairs for a pool) and print the summary."""
    cfg = build_config(AnnotateConfig, args)
    from ..annotate.factory import build_annotator
    from ..data import read_pool_or_pairs, write_json, write_records

    t0 = time.time()
    kind, items = read_pool_or_pairs(cfg.input)
    train_pairs, labels = _training_labels(cfg, kind, items)
    annotator = build_annotator(cfg, train_pairs=train_pairs, labels=labels)
    labelled = {a.pair_id for a in labels or []} if not cfg.annotate_labelled else set()
    pairs, anns, extra = annotate_input(cfg, annotator, kind, items, labelled)
    layout = output_layout(cfg.format, items.layout)
    if not anns:
        raise DataError("no annotations produced (see the counts above); nothing written")
    table = (write_training_table(cfg, items if pairs is None else pairs, anns, train_pairs, labels, layout)
             if cfg.training_output else None)
    if pairs is not None:
        pairs_out = cfg.pairs_output or _default_pairs_output(cfg.output)
        write_records(pairs_out, pairs, layout)
    write_records(cfg.output, anns)
    counts = {**(getattr(annotator, "stats", {}) or {}), **extra}
    summary = {"method": cfg.method, "input": cfg.input, "input_kind": kind, "input_records": len(items),
               "input_pairs": len(pairs) if pairs is not None else len(items), "annotated": len(anns),
               **{k: sum(a.preferred == k for a in anns) for k in ("A", "B", "tie")},
               "mean_confidence": sum(a.confidence for a in anns) / len(anns),
               "temperature": getattr(annotator, "temperature", None),
               "counts": counts, "seconds": round(time.time() - t0, 1), "output": cfg.output,
               "training_table": table}
    if pairs is not None:
        summary["pairs_output"] = pairs_out
    if cfg.summary:
        write_json(cfg.summary, summary)
    print(f"annotate ({cfg.method}): {format_summary(summary)} -> {cfg.output}"
          + (f" (pairs -> {pairs_out})" if pairs is not None else "")
          + (f"; training table ({table['rows']} rows) -> {cfg.training_output}"
             if cfg.training_output else ""))
    return 0

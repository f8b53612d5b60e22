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
The settings and the steps between files live in :mod:`frugalign.annotate.job`.
"""

from __future__ import annotations

import time

from ..annotate.job import AnnotateConfig
from ..config import add_config_arguments, build_config
from ..errors import DataError


def register(sub) -> None:
    p = sub.add_parser("annotate", help="label pairs automatically with a confidence",
                       description="Annotate pairs with a weak judge (CW-PO), a density ratio (Dr.SoW), "
                                   "the implicit reward (SPA) or an LLM judge.")
    add_config_arguments(p, AnnotateConfig)
    p.set_defaults(func=run)


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
    from ..annotate.job import annotate_input, training_labels, write_training_table
    from ..data import read_pool_or_pairs, write_json, write_records
    from ..formats import output_layout

    t0 = time.time()
    kind, items = read_pool_or_pairs(cfg.input)
    train_pairs, labels = training_labels(cfg, kind, items)
    annotator = build_annotator(cfg, train_pairs=train_pairs, labels=labels)
    labelled = {a.pair_id for a in labels or []} if not cfg.annotate_labelled else set()
    pairs, anns, extra = annotate_input(cfg, annotator, kind, items, labelled)
    layout = output_layout(cfg.format, items.layout)
    if not anns:
        raise DataError("no annotations produced (see the counts above); nothing written")
    table = (write_training_table(cfg, items if pairs is None else pairs, anns, train_pairs, labels, layout)
             if cfg.training_output else None)
    if pairs is not None:
        pairs_out = cfg.pairs_path()
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

"""``frugalign select``: choose which pairs humans label under a budget (REAL).

The settings (:class:`frugalign.selection.SelectConfig`) live with the selectors.
"""

from __future__ import annotations

from pathlib import Path

from ..config import add_config_arguments, build_config
from ..selection import SelectConfig


def register(sub) -> None:
    p = sub.add_parser("select", help="choose which pairs humans label (dissimilar, random, ...)",
                       description="Choose pairs for human labelling under a budget: from a pool, the "
                                   "best pair per prompt, then the best pairs overall (REAL).")
    add_config_arguments(p, SelectConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = build_config(SelectConfig, args)
    from ..data import read_annotations, write_json, write_records
    from ..formats import output_layout
    from ..selection import attach_confidence, format_summary, load_candidates, make_embedder, select_pairs, with_reason

    embedder = make_embedder(cfg.embedder, cfg.model, dtype=cfg.dtype, device=cfg.device,
                             token_budget=cfg.token_budget, progress=cfg.progress)
    cands, input_layout = load_candidates(cfg.input, embedder)
    layout = output_layout(cfg.format, input_layout)
    if cfg.annotations:
        attach_confidence(cands, read_annotations(cfg.annotations))
    sel = select_pairs(cands, cfg.strategy, cfg.budget, seed=cfg.seed, per_prompt=cfg.per_prompt)
    write_records(cfg.output, [with_reason(cands, i, rank, cfg.strategy) for rank, i in enumerate(sel.chosen)], layout)
    if cfg.rest_output:
        write_records(cfg.rest_output, [with_reason(cands, i, None, cfg.strategy) for i in sel.rest], layout)
    summary = dict(sel.summary, input=cfg.input, output=cfg.output, embedder=cfg.embedder,
                   model=cfg.model if cfg.embedder == "policy" else None)
    out = Path(cfg.output)
    summary_path = cfg.summary or str(out.with_name(out.stem + ".summary.json"))
    write_json(summary_path, summary)
    print(format_summary(summary))
    print(f"wrote {len(sel.chosen)} pairs -> {cfg.output}; summary -> {summary_path}"
          + (f"; {len(sel.rest)} rest -> {cfg.rest_output}" if cfg.rest_output else ""))
    return 0

"""``frugalign eval``: how good are the annotations (and the annotators)?

    frugalign eval annotations --annotations ann.jsonl --reference human.jsonl \\
        [--pairs pairs.jsonl] [--reliability-png rel.png] [--output report.json]
    frugalign eval rewardbench --input rb.jsonl --method density-ratio [annotator settings] \\
        [--output report.json] [--per-example-output rows.jsonl]

The settings live with the evaluation (:mod:`frugalign.evaluate`).
"""

from __future__ import annotations

import math

from ..config import add_config_arguments, build_config
from ..evaluate import EvalAnnotationsConfig, EvalRewardBenchConfig


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate annotations or score a RewardBench file",
                       description="Agreement and calibration of annotations against reference labels, "
                                   "or RewardBench section scores of an annotator.")
    inner = p.add_subparsers(dest="eval_command", metavar="WHAT")
    a = inner.add_parser("annotations", help="accuracy, kappa, ECE, coverage vs reference labels")
    add_config_arguments(a, EvalAnnotationsConfig)
    a.set_defaults(func=run_annotations)
    r = inner.add_parser("rewardbench", help="RewardBench section scores of an annotator")
    add_config_arguments(r, EvalRewardBenchConfig)
    r.set_defaults(func=run_rewardbench)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def _fmt(x) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def format_annotation_report(rep: dict) -> str:
    lines = [f"accuracy {_fmt(rep['accuracy'])} ({rep['n_correct']}/{rep['n_scored']}), "
             f"kappa {_fmt(rep['kappa'])}, ECE {_fmt(rep['ece'])}, mean confidence {_fmt(rep['mean_confidence'])}",
             f"matched {rep['n_matched']} of {rep['n_annotations']} annotations / {rep['n_reference']} "
             f"references; {rep['n_annotations_without_reference']} without reference, "
             f"{rep['n_reference_without_annotation']} references unannotated, "
             f"{rep['n_reference_ties_excluded']} reference ties excluded, {rep['n_predicted_ties']} predicted ties"]
    if len(rep["by_domain"]) > 1:
        lines.append("by domain: " + ", ".join(f"{d} {_fmt(v['accuracy'])} (n={v['n']})"
                                               for d, v in rep["by_domain"].items()))
    if rep["coverage"]:
        lines.append("most confident: " + ", ".join(f"{pt['fraction']:.0%} {_fmt(pt['accuracy'])}"
                                                    for pt in rep["coverage"]))
    return "\n".join(lines)


def run_annotations(args) -> int:
    cfg = build_config(EvalAnnotationsConfig, args)
    from ..data import read_annotations, read_pairs, write_json
    from ..evaluate import evaluate_annotations

    pairs = read_pairs(cfg.pairs) if cfg.pairs else None
    rep = evaluate_annotations(read_annotations(cfg.annotations), read_annotations(cfg.reference),
                               pairs=pairs, n_bins=cfg.n_bins, strict=cfg.strict,
                               reliability_png=cfg.reliability_png)
    rep.update(annotations_file=cfg.annotations, reference_file=cfg.reference)
    if cfg.output:
        write_json(cfg.output, rep)
    print(format_annotation_report(rep))
    return 0


def run_rewardbench(args) -> int:
    cfg = build_config(EvalRewardBenchConfig, args)
    from ..annotate.factory import build_annotator
    from ..data import read_annotations, read_pairs, write_json, write_records
    from ..evaluate import read_rewardbench, score_rewardbench

    rows = read_rewardbench(cfg.input)
    train_pairs = read_pairs(cfg.label_pairs) if cfg.label_pairs else None
    labels = read_annotations(cfg.labels) if cfg.labels else None
    annotator = build_annotator(cfg, train_pairs=train_pairs, labels=labels)
    rep, per_example = score_rewardbench(rows, annotator, weighting=cfg.weighting)
    rep.update(method=cfg.method, input=cfg.input)
    if cfg.output:
        write_json(cfg.output, rep)
    if cfg.per_example_output:
        write_records(cfg.per_example_output, per_example)
    sections = ", ".join(f"{k} {_fmt(v)}" for k, v in rep["sections"].items())
    print(f"rewardbench ({cfg.method}): overall {_fmt(rep['overall'])} | {sections} | "
          f"{rep['n_examples']} examples, {rep['n_ties']} ties, {rep['n_unannotated']} unannotated"
          + (f", unknown subsets {rep['unknown_subsets']}" if rep["unknown_subsets"] else ""))
    return 0

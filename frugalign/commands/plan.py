"""``frugalign plan``: which annotator to trust at this budget, from the human labels you already have.

    frugalign plan --labels human.jsonl --input pairs.jsonl [annotators=[hybrid,hybrid+drsow,drsow]]

Each annotator is fitted and scored by cross-validation on the labels (grouped by
prompt); the table gives its agreement with your labels (95 % interval), the
confidence gate that agreement sets, how many of the unlabelled pairs the gate
keeps, and the net correct labels it is expected to add. No GPU hour is spent.
"""

from __future__ import annotations

from ..annotate.planning import PlanSettings
from ..config import add_config_arguments, build_config


def register(sub) -> None:
    p = sub.add_parser("plan", help="which annotator to trust, by cross-validation on your human labels",
                       description="Cross-validate the automatic annotators on the human labels you have and "
                                   "print which one to trust for the unlabelled pairs.")
    add_config_arguments(p, PlanSettings)
    p.set_defaults(func=run)


def format_plan(doc: dict) -> str:
    lines = [f"{doc['labelled']} labelled pairs, {doc['unlabelled']} unlabelled",
             f"{'annotator':14s} {'labels':>6s}  {'CV agreement [95% CI]':24s} {'gate':>5s} {'kept':>6s} "
             f"{'agree@kept':>10s} {'net labels':>10s}  weights"]
    for r in doc["rows"]:
        ci = f"{r['cv_agreement']:.3f} [{r['cv_agreement_ci_low']:.3f}, {r['cv_agreement_ci_high']:.3f}]"
        gate = "shut" if r["gate_threshold"] > 1 else f"{r['gate_threshold']:.2f}"
        weights = ", ".join(f"{k} {v:+.2f}" for k, v in r["weights"].items())
        lines.append(f"{r['annotator']:14s} {r['labels']:6d}  {ci:24s} {gate:>5s} {r['coverage']:6.1%} "
                     f"{r['expected_agreement_kept']:10.3f} {r['expected_net_labels']:10.1f}  {weights}")
    lines.append(f"recommended: {doc['recommended']}" if doc["recommended"] else
                 "recommended: none beats chance on these labels; label more pairs or train on the human labels alone")
    return "\n".join(lines)


def run(args) -> int:
    from ..annotate.planning import plan_from_files
    from ..data import write_json

    settings = build_config(PlanSettings, args)
    doc = plan_from_files(settings)
    print(format_plan(doc))
    if settings.output:
        write_json(settings.output, doc)
    return 0

"""How good is an annotator? Agreement and calibration against reference labels,
and RewardBench-format scoring.

* :func:`evaluate_annotations` — accuracy (a predicted tie is wrong, reference
  ties are excluded and counted, as RewardBench does), accuracy by domain,
  Cohen's kappa, expected calibration error of P(A preferred) with a
  reliability diagram, and the coverage curve (accuracy of the k% most
  confident annotations). Annotations without a reference and references
  without an annotation are counted, never silently ignored (``strict=True``
  makes them errors).
* :func:`score_rewardbench` — run an annotator on a file in RewardBench's
  format (prompt, chosen, rejected, subset) and compute section scores with
  RewardBench's rules (:func:`frugalign.metrics.rewardbench_sections`).
  Response A is always the chosen one: every annotator here is order-symmetric
  (reward differences, or the LLM judge averaged over both orders), and an
  unannotated example counts as wrong.

The arithmetic lives in :mod:`frugalign.metrics`; this module joins files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .annotate.factory import AnnotatorSettings
from .errors import ConfigError, DataError
from .metrics import (
    accuracy_by_group,
    annotation_accuracy,
    cohens_kappa,
    coverage_curve,
    pairwise_expected_calibration_error,
    rewardbench_sections,
)
from .plots import reliability_diagram_png
from .records import Annotation, PreferencePair, id_field, str_field, validate_prompt

COVERAGE_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)


def _ids_preview(ids: list[str]) -> str:
    return f"{ids[:5]}{' …' if len(ids) > 5 else ''} ({len(ids)} in all)"


def _join(annotations: Sequence[Annotation], references: Sequence[Annotation],
          pairs: Sequence[PreferencePair] | None, strict: bool) -> tuple[list, dict]:
    """Matched (annotation, reference) rows plus counts of everything left out."""
    refs = {r.pair_id: r for r in references}
    if pairs is not None:
        known = {p.id for p in pairs}
        for name, rows in (("reference labels", references), ("annotations", annotations)):
            unknown = [r.pair_id for r in rows if r.pair_id not in known]
            if unknown:
                raise DataError(f"{name} refer to unknown pair ids: {_ids_preview(unknown)}")
    seen = {a.pair_id for a in annotations}
    unreferenced = [a.pair_id for a in annotations if a.pair_id not in refs]
    missing = [pid for pid in refs if pid not in seen]
    if strict and (unreferenced or missing):
        raise DataError(f"{len(unreferenced)} annotations have no reference label and "
                        f"{len(missing)} reference labels have no annotation (strict mode)")
    matched = [(a, refs[a.pair_id]) for a in annotations if a.pair_id in refs]
    if not matched:
        raise DataError("no annotation shares a pair id with the reference labels")
    counts = {"n_annotations": len(annotations), "n_reference": len(references),
              "n_matched": len(matched), "n_annotations_without_reference": len(unreferenced),
              "n_reference_without_annotation": len(missing)}
    return matched, counts


def _domain(a: Annotation, r: Annotation, pair_domain: dict[str, str | None]) -> str:
    """The pair's domain, else the reference's (ground truth), else the annotator's (e.g. routed)."""
    return (pair_domain.get(a.pair_id) or r.details.get("domain") or a.details.get("domain") or "all")


def evaluate_annotations(annotations: Sequence[Annotation], references: Sequence[Annotation], *,
                         pairs: Sequence[PreferencePair] | None = None, n_bins: int = 10,
                         fractions: Sequence[float] = COVERAGE_FRACTIONS, strict: bool = False,
                         reliability_png: str | None = None, title: str = "") -> dict:
    """Agreement and calibration report of ``annotations`` against ``references`` (a JSON-able dict)."""
    matched, report = _join(annotations, references, pairs, strict)
    pred = [a.preferred for a, _ in matched]
    ref = [r.preferred for _, r in matched]
    acc = annotation_accuracy(pred, ref)
    pair_domain = {p.id: p.domain for p in pairs or []}
    groups = [_domain(a, r, pair_domain) for a, r in matched]
    ece = pairwise_expected_calibration_error([a.p_a for a, _ in matched], ref, n_bins=n_bins)
    scored = [(a, r) for a, r in matched if r.preferred != "tie"]
    cov = coverage_curve([a.confidence for a, _ in scored], [a.preferred == r.preferred for a, r in scored],
                         fractions) if scored else []
    report.update(
        accuracy=acc.accuracy, n_scored=acc.n, n_correct=acc.n_correct,
        n_reference_ties_excluded=acc.n_ref_ties_excluded,
        n_predicted_ties=sum(p == "tie" for p in pred),
        kappa=cohens_kappa(pred, ref),
        ece=ece.ece, mce=ece.mce,
        mean_confidence=sum(a.confidence for a, _ in matched) / len(matched),
        by_domain={str(g): {"accuracy": res.accuracy, "n": res.n}
                   for g, res in accuracy_by_group(pred, ref, groups).items()},
        coverage=[vars(pt) for pt in cov],
        reliability_bins=[vars(b) for b in ece.bins],
        sources=dict(Counter(a.source for a, _ in matched)),
    )
    if reliability_png:
        report["reliability_png"] = reliability_diagram_png(
            ece.bins, reliability_png, title=title or f"accuracy {acc.accuracy:.2f}, ECE {ece.ece:.3f}")
    return report


# ---------------------------------------------------------------- RewardBench
def read_rewardbench(path) -> list[dict]:
    """Rows with prompt, chosen, rejected, subset (and optional id), validated."""
    from .data import read_preference_records

    rows, seen = [], set()
    for i, (where, rec) in enumerate(read_preference_records(path)):
        row = {"id": id_field(rec, "id", where) if rec.get("id") is not None else str(i),
               "prompt": validate_prompt(rec.get("prompt"), where),
               "chosen": str_field(rec, "chosen", where), "rejected": str_field(rec, "rejected", where),
               "subset": str_field(rec, "subset", where)}
        if row["id"] in seen:
            raise DataError(f"{where}: field 'id': duplicate id {row['id']!r}")
        seen.add(row["id"])
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no records")
    return rows


def rewardbench_pairs(rows: Sequence[dict]) -> list[PreferencePair]:
    """One pair per row with A = chosen, B = rejected (annotators here are order-symmetric)."""
    return [PreferencePair(id=r["id"], prompt=r["prompt"], response_a=r["chosen"],
                           response_b=r["rejected"], meta={"subset": r["subset"]}) for r in rows]


def score_rewardbench(rows: Sequence[dict], annotator, *, weighting: str = "official") -> tuple[dict, list[dict]]:
    """Section scores of ``annotator`` on RewardBench rows; returns (report, per-example records).

    An example is correct when the annotator prefers the chosen response; a
    tie or a missing annotation (dropped and counted by the annotator) is wrong.
    """
    anns = {a.pair_id: a for a in annotator.annotate(rewardbench_pairs(rows))}
    per_example = []
    for r in rows:
        a = anns.get(r["id"])
        per_example.append({"id": r["id"], "subset": r["subset"],
                            "correct": bool(a is not None and a.preferred == "A"),
                            "preferred": a.preferred if a else None,
                            "p_chosen": a.p_a if a else None,
                            "confidence": a.confidence if a else None})
    res = rewardbench_sections(per_example, weighting=weighting)
    report = {"sections": res.sections, "overall": res.overall, "weighting": res.weighting,
              "subset_accuracy": res.subset_accuracy, "subset_counts": res.subset_counts,
              "unknown_subsets": res.unknown_subsets, "n_examples": len(rows),
              "n_unannotated": sum(a is None for a in (anns.get(r["id"]) for r in rows)),
              "n_ties": sum(e["preferred"] == "tie" for e in per_example),
              "annotator_stats": dict(getattr(annotator, "stats", {}) or {})}
    return report, per_example


# ---------------------------------------------------------------- `frugalign eval` settings


@dataclass
class EvalAnnotationsConfig:
    """``frugalign eval annotations``: annotations against reference labels."""

    annotations: str = field(default="", metadata={"help": "annotations to evaluate"})
    reference: str = field(default="", metadata={"help": "reference labels (an annotations file, e.g. human or gold)"})
    pairs: str | None = field(default=None, metadata={"help": "pairs file: checks ids and gives domains"})
    output: str | None = field(default=None, metadata={"help": "report JSON"})
    reliability_png: str | None = field(default=None, metadata={"help": "reliability diagram PNG"})
    n_bins: int = 10
    strict: bool = field(default=False, metadata={"help": "error (not count) on unmatched pair ids"})

    def validate(self) -> None:
        if not self.annotations or not self.reference:
            raise ConfigError("eval annotations needs annotations=... and reference=...")
        if self.n_bins < 1:
            raise ConfigError(f"n_bins must be >= 1, got {self.n_bins}")


@dataclass
class EvalRewardBenchConfig(AnnotatorSettings):
    """``frugalign eval rewardbench``: an annotator's RewardBench section scores on a file."""

    input: str = field(default="", metadata={"help": "RewardBench-format file: prompt, chosen, rejected, subset"})
    output: str | None = field(default=None, metadata={"help": "report JSON"})
    per_example_output: str | None = field(default=None, metadata={"help": "per-example results (.jsonl)"})
    weighting: str = field(default="official", metadata={"help": "official (RewardBench's subset weights) | observed"})

    def validate(self) -> None:
        if not self.input:
            raise ConfigError("eval rewardbench needs input=...")
        if self.weighting not in ("official", "observed"):
            raise ConfigError(f"weighting={self.weighting!r}: expected official or observed")
        if self.labels and not self.label_pairs and not self.judge_load:
            raise ConfigError("labels=... on a RewardBench file need label_pairs=... (the pairs they refer to)")
        super().validate()

"""Votes in original orientation -> Annotations; merging label rounds; inter-annotator agreement.

A :class:`Vote` is one person's (or one gold judge's) judgement of one pair,
already un-flipped to the pair's original A/B orientation. All votes on a
pair become one :class:`~frugalign.records.Annotation`:

* ``p_a`` = mean of 1 (A), 0 (B) and ½ (tie) over the votes;
* ``preferred`` = A if ``p_a`` > ½, B if < ½, else tie;
* ``confidence`` = 2·|p_a − ½| — CW-PO's C, so one clear human vote is 1,
  a tie or an even split is 0;
* ``details["votes"]`` keeps every vote, so a later import can merge.

A person labelling the same pair again replaces their earlier vote (votes
are keyed by pair id and annotator), so re-importing a file is harmless.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from ..errors import ConfigError
from ..records import Annotation
from ..weights import confidence_from_p
from .export import BatchItem, LabelRecord, check_labels, unflip

VOTE_VALUE = {"A": 1.0, "B": 0.0, "tie": 0.5}


@dataclass
class Vote:
    pair_id: str
    preferred: str                  # original orientation
    annotator: str = ""
    source: str = "human"
    comment: str = ""
    shown: str | None = None        # the label as displayed
    flipped: bool | None = None
    batch: str | None = None
    time: str | None = None

    def to_record(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def labels_to_votes(batch: Sequence[BatchItem], labels: Sequence[tuple[str, LabelRecord]],
                    source: str = "human", batch_name: str = "the batch") -> list[Vote]:
    """Check labels against the batch and un-flip them to the original orientation."""
    check_labels(batch, labels, batch_name)
    by_id = {it.pair_id: it for it in batch}
    votes = []
    for _, rec in labels:
        it = by_id[rec.pair_id]
        votes.append(Vote(rec.pair_id, unflip(rec.label, it.flipped), rec.annotator, source,
                          rec.comment, rec.label, it.flipped, it.batch, rec.time))
    return votes


def annotations_to_votes(annotations: Iterable[Annotation]) -> list[Vote]:
    """Earlier annotations back into votes (from ``details["votes"]``, else one vote each)."""
    votes = []
    for ann in annotations:
        stored = ann.details.get("votes") if isinstance(ann.details, dict) else None
        if stored:
            votes.extend(Vote(**{k: v for k, v in rec.items() if k in Vote.__dataclass_fields__})
                         for rec in stored)
        else:  # e.g. a model annotation: one vote named after its source
            votes.append(Vote(ann.pair_id, ann.preferred, ann.source, ann.source))
    return votes


def merge_votes(earlier: Iterable[Vote], new: Iterable[Vote]) -> list[Vote]:
    """Union of votes; a new vote replaces an earlier one by the same annotator on the same pair."""
    merged: dict[tuple[str, str], Vote] = {}
    for v in itertools.chain(earlier, new):
        merged[(v.pair_id, v.annotator)] = v
    return list(merged.values())


def votes_to_annotations(votes: Sequence[Vote]) -> list[Annotation]:
    """One Annotation per pair (first-seen pair order), aggregating its votes."""
    by_pair: dict[str, list[Vote]] = {}
    for v in votes:
        by_pair.setdefault(v.pair_id, []).append(v)
    out = []
    for pair_id, vs in by_pair.items():
        p_a = sum(VOTE_VALUE[v.preferred] for v in vs) / len(vs)
        preferred = "A" if p_a > 0.5 else "B" if p_a < 0.5 else "tie"
        sources = {v.source for v in vs}
        source = sources.pop() if len(sources) == 1 else ("human" if "human" in sources else "other")
        details = {"votes": [v.to_record() for v in vs], "n_votes": len(vs)}
        if len(vs) > 1:
            details["agreement"] = _pair_agreement([v.preferred for v in vs])
        out.append(Annotation(pair_id, preferred, p_a, round(confidence_from_p(p_a), 12), source, details))
    return out


def _pair_agreement(labels: Sequence[str]) -> float:
    """Fraction of vote pairs on one item that agree."""
    pairs = list(itertools.combinations(labels, 2))
    return sum(a == b for a, b in pairs) / len(pairs)


def agreement(votes: Sequence[Vote]) -> dict:
    """Agreement where two or more annotators labelled the same pair.

    ``percent_agreement`` is the fraction of agreeing vote pairs over all
    multiply-labelled pairs; per annotator pair it adds Cohen's kappa over
    the pairs both labelled (NaN -> None when undefined).
    """
    from ..metrics import cohens_kappa

    by_pair: dict[str, dict[str, str]] = {}
    for v in votes:
        by_pair.setdefault(v.pair_id, {})[v.annotator] = v.preferred
    multi = {p: d for p, d in by_pair.items() if len(d) > 1}
    vote_pairs = [(a, b) for d in multi.values() for a, b in itertools.combinations(d.values(), 2)]
    report = {"pairs_labelled": len(by_pair), "pairs_with_2plus_annotators": len(multi),
              "percent_agreement": (sum(a == b for a, b in vote_pairs) / len(vote_pairs)) if vote_pairs else None,
              "annotator_pairs": []}
    names = sorted({a for d in multi.values() for a in d})
    for x, y in itertools.combinations(names, 2):
        both = [(d[x], d[y]) for d in multi.values() if x in d and y in d]
        if not both:
            continue
        kappa = cohens_kappa([a for a, _ in both], [b for _, b in both])
        report["annotator_pairs"].append({
            "annotators": [x or "(unnamed)", y or "(unnamed)"], "n": len(both),
            "agreement": sum(a == b for a, b in both) / len(both),
            "kappa": None if math.isnan(kappa) else round(kappa, 4)})
    return report


def format_agreement(report: dict) -> str:
    """The agreement report as a few terminal lines."""
    if not report["pairs_with_2plus_annotators"]:
        return f"{report['pairs_labelled']} pairs labelled; no pair has two annotators (no agreement to report)"
    lines = [f"{report['pairs_labelled']} pairs labelled; {report['pairs_with_2plus_annotators']} by two or "
             f"more annotators: agreement {report['percent_agreement']:.3f}"]
    for ap in report["annotator_pairs"]:
        lines.append(f"  {ap['annotators'][0]} vs {ap['annotators'][1]}: n={ap['n']} "
                     f"agreement={ap['agreement']:.3f} kappa={ap['kappa']}")
    return "\n".join(lines)


def import_labels(batch_path, label_paths: Sequence, *, earlier=None, annotator: str | None = None,
                  source: str = "human") -> tuple[list[Annotation], dict]:
    """Read label files against a batch, un-flip, merge with ``earlier`` annotations (a path or list).

    Label files: the page's JSONL, a filled-in CSV sheet, or a Label Studio JSON export.

    Returns the merged annotations (one per labelled pair) and a report with
    counts and agreement. Unknown pair ids raise a one-line DataError.
    """
    from ..data import read_annotations
    from .export import read_batch, read_labels
    from .label_studio import load_export, read_export

    batch = read_batch(batch_path)
    new: list[Vote] = []
    for path in label_paths:
        tasks = load_export(path)  # a Label Studio JSON export is recognised by its content
        labels = read_labels(path, annotator) if tasks is None else read_export(path, annotator, tasks)
        new = merge_votes(new, labels_to_votes(batch, labels, source, batch_name=str(batch_path)))
    old = []
    if earlier is not None:
        old = annotations_to_votes(read_annotations(earlier) if not isinstance(earlier, list) else earlier)
    votes = merge_votes(old, new)
    anns = votes_to_annotations(votes)
    report = {"batch_pairs": len(batch), "new_votes": len(new), "earlier_votes": len(old),
              "annotations": len(anns), "unlabelled_in_batch": len({b.pair_id for b in batch} - {a.pair_id for a in anns}),
              "agreement": agreement(votes)}
    return anns, report


@dataclass
class ImportConfig:
    """``frugalign label import``: labels of a batch back into annotations, merged, with agreement."""

    batch: str = field(default="", metadata={"help": "the batch key file (BATCH.jsonl)"})
    labels: list = field(default_factory=list, metadata={
        "help": "label files (.jsonl from the page, filled .csv, or a Label Studio JSON export)"})
    output: str = field(default="", metadata={"help": "annotations file to write"})
    earlier: str | None = field(default=None, metadata={"help": "earlier annotations to merge with (may equal output)"})
    annotator: str | None = field(default=None, metadata={"help": "annotator id for records that name none"})
    report: str | None = field(default=None, metadata={"help": "also write the import/agreement report (JSON)"})

    def validate(self) -> None:
        if not self.batch or not self.labels or not self.output:
            raise ConfigError("label import needs BATCH LABELS... and output=FILE")

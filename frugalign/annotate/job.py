"""The ``frugalign annotate`` job on files: its settings, the human labels it trains or calibrates on,
the pairs it annotates (given, or built from a pool) and the training table it can write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError
from ..formats import FORMAT_HELP, FORMATS, default_layout
from .factory import AnnotatorSettings


@dataclass
class AnnotateConfig(AnnotatorSettings):
    """``frugalign annotate``: :class:`AnnotatorSettings` plus the files it reads and writes."""

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

    def pairs_path(self) -> str:
        """Where a pool input's pairs go: ``pairs_output``, else ``<output>.pairs.jsonl``."""
        p = Path(self.output)
        return self.pairs_output or str(p.with_name(f"{p.stem}.pairs.jsonl"))


def training_labels(cfg: AnnotateConfig, kind: str, items):
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
    """The annotated and the human-labelled pairs as one training table (:func:`frugalign.data.labels_to_training`).

    A pair both annotated and labelled (``annotate_labelled``) keeps the annotator's label, as it always has.
    """
    from ..data import labels_to_training, write_records

    rows, counts = labels_to_training([*(train_pairs or []), *pairs], anns, labels or [],
                                      weighting=cfg.training_weights)
    if not rows:
        raise DataError("no training rows (every judged pair is a tie); training table not written")
    write_records(cfg.training_output, rows, layout or default_layout(r.prompt for r in rows))
    return counts

"""The human side: labelling batches, label import and merging, a local labelling page, gold judges.

* :mod:`.export` — batches with a recorded random A/B orientation per pair;
  the labeller's CSV sheet; reading labels back and checking them.
* :mod:`.merge` — labels -> votes in original orientation -> Annotations;
  merging label rounds; agreement between annotators.
* :mod:`.server` — ``frugalign label serve``: the keyboard-driven page.
* :mod:`.gold` — simulated humans: a gold judge labels pairs instead of people.
"""

from .export import BatchItem, LabelRecord, make_batch, read_batch, read_labels, write_batch, write_labels
from .gold import GoldJudge, GoldVerdict, gold_annotate_batch, gold_annotate_pairs, gold_label_batch, load_judge
from .merge import Vote, agreement, import_labels, labels_to_votes, merge_votes, votes_to_annotations

__all__ = [
    "BatchItem", "LabelRecord", "make_batch", "read_batch", "read_labels", "write_batch", "write_labels",
    "GoldJudge", "GoldVerdict", "gold_annotate_batch", "gold_annotate_pairs", "gold_label_batch", "load_judge",
    "Vote", "agreement", "import_labels", "labels_to_votes", "merge_votes", "votes_to_annotations",
]

"""Automatic annotators: every one returns a label *and* a calibrated confidence.

The one protocol is :class:`Annotator`: ``annotate(pairs) -> list[Annotation]``
(one annotation per pair, in input order, unless a pair is dropped and
counted in ``stats``). Four implementations:

* :mod:`.weak_judge` — CW-PO's Bradley–Terry weak judge trained on the
  human-labelled pairs (frozen MiniLM embeddings + small head, or a causal-LM
  backbone with a scalar head, full or LoRA);
* :mod:`.density_ratio` — Dr.SoW: Σ log p_strong − Σ log p_weak with a domain
  router and per-domain system prompts;
* :mod:`.implicit` — SPA: β·(log π_θ − log π_ref), optionally from
  extrapolated logits;
* :mod:`.llm_judge` — baseline: P("A") vs P("B") from a judge model, both
  presentation orders averaged.

The three reward-based ones share :class:`~.base.RewardAnnotator`, which turns
per-response rewards into p = σ((r_A − r_B)/T) and C = 2·(max(p, 1−p) − 0.5),
and builds pairs from pools (best-of-N / min–max).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..records import Annotation, PreferencePair
from .base import (
    RewardAnnotator,
    RewardFunction,
    RewardItem,
    annotation_from_rewards,
    confidence_from_p,
    pairs_from_pool,
    sigmoid,
)


@runtime_checkable
class Annotator(Protocol):
    """Anything that judges pairs; ``stats`` holds counts of what was dropped or defaulted."""

    stats: dict

    def annotate(self, pairs: Sequence[PreferencePair]) -> list[Annotation]: ...


__all__ = [
    "Annotator", "RewardAnnotator", "RewardFunction", "RewardItem", "annotation_from_rewards",
    "confidence_from_p", "pairs_from_pool", "sigmoid",
]

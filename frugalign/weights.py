"""How much a labelled pair counts in the loss: CW-PO's confidence weights (arXiv 2603.04968).

One vocabulary, used by ``frugalign run``, ``train``, ``iterate`` and ``study``:

``confidence``  CW-PO: a machine label counts as much as its annotator is sure of it,
                C = 2·(σ(Δ) − ½) ∈ [0, 1]; a human label counts fully (weight 1),
                whatever the confidence of its vote.
``none``        every labelled pair counts 1 (plain DPO).

``frugalign train`` also accepts ``column``: use the ``weight`` column of the file
as written (a file that :func:`pair_weight` already weighted, or the user's own).
The loss multiplies each pair's ℓ by its weight; the normalisation is
:func:`frugalign.losses.reduce_losses`'s setting.
"""

from __future__ import annotations

from .errors import ConfigError, DataError

WEIGHTINGS = ("confidence", "none")
HUMAN = "human"  # the source of labels people gave (simulated by the gold judge in studies)


def confidence_from_p(p: float) -> float:
    """CW-PO's confidence of a judgement whose P(A preferred) is ``p``: C = 2·(max(p, 1−p) − ½) ∈ [0, 1]
    (0 for a tie or a coin flip, 1 for a certain one). Every annotator and label merge uses this one."""
    return min(1.0, max(0.0, 2.0 * (max(p, 1.0 - p) - 0.5)))


def check_weighting(value: str, allowed: tuple[str, ...] = WEIGHTINGS) -> str:
    if value not in allowed:
        raise ConfigError(f"weights={value!r}: expected one of {', '.join(allowed)}")
    return value


def pair_weight(confidence: float | None, source: str | None, weighting: str, where: str = "") -> float:
    """The weight of one labelled pair under ``weighting`` (see the module docstring)."""
    if weighting == "none" or source == HUMAN:
        return 1.0
    check_weighting(weighting)
    if confidence is None:
        raise DataError(f"{where + ': ' if where else ''}field 'confidence': missing (weights=confidence)")
    return float(confidence)


def row_weight(row, weights: str, where: str = "") -> float:
    """A training row's weight in the loss: its ``weight`` column as written (``column``) or
    :func:`pair_weight` from its confidence and source. Either replaces, never multiplies: a table
    that annotation already weighted trains the same under ``column`` and ``confidence``."""
    if weights == "column":
        return float(row.weight)
    return pair_weight(row.confidence, row.source, weights, where)

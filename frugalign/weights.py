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

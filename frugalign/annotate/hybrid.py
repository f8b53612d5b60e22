"""The hybrid annotator: cheap automatic signals calibrated on the human labels, with confidence gating.

An automatic annotator alone ignores the labels a user paid for. Here the human
labels *fit* it (Platt scaling / stacking, DESIGN.md "Calibrating an automatic
annotator"): each pair gets a few signals, each the difference of a per-response
quantity between A and B, and

    p(A preferred) = σ(w · f(A, B))

is a logistic regression without intercept, fitted on the human-labelled pairs.
Every signal is antisymmetric (f(B, A) = −f(A, B)), the fit sees each label in
both orders, and there is no intercept, so swapping A and B gives exactly 1 − p.
The L2 strength is chosen by cross-validation grouped by prompt; the
cross-validated probabilities also choose the **gate**: the lowest confidence
C (:func:`frugalign.weights.confidence_from_p`) at which the labels the annotator would keep agree with the human
ones at least ``min_agreement`` of the time (Laplace-smoothed, so three lucky
pairs do not pass). Pairs under the gate are not labelled (they train nothing).

Signals (``SIGNALS``):

* ``length``: log of the word-count ratio;
* ``unfinished``: whether a response stops mid-sentence (a sampled response cut
  at ``max_new_tokens``);
* ``format``: how much layout a response carries: markdown list/heading/bold
  markers and line breaks, log(1 + count);
* ``drsow``: Dr.SoW's margin r(A) − r(B) (needs a density-ratio reward; costs
  two model passes per response, the rest cost nothing).

With tens of labels a handful of weights is what the data can fit; the weights
are printed, so a user sees what the labels taught.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataError
from ..records import Annotation, PreferencePair
from ..weights import confidence_from_p

SIGNALS = ("length", "unfinished", "format", "drsow")
_MARKDOWN = re.compile(r"^\s*(?:[-*•+]\s|\d+[.)]\s|#{1,6}\s)|\*\*", re.MULTILINE)
#: L2 strengths tried by cross-validation (sklearn's C: larger = weaker penalty).
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
#: Fewest non-tied human labels the calibration accepts.
MIN_LABELS = 4
# Below this many non-tied labels an open gate is a gamble: on ifeval at 3 % (15 labels) the CV estimate said
# >= 0.75 and the kept labels agreed with gold 0.64 (docs/results.md section 2). Warned, not forbidden.
GATE_WARN_LABELS = 30


def _words(text: str) -> int:
    return len(text.split())


def _unfinished(text: str) -> float:
    return 0.0 if re.search(r"[.!?][\"')\]]*\s*$", text.strip()) else 1.0


def _format(text: str) -> float:
    return math.log1p(len(_MARKDOWN.findall(text)) + text.strip().count("\n"))


_PER_RESPONSE: dict[str, Callable[[str], float]] = {
    "length": lambda t: math.log(_words(t) + 1),
    "unfinished": _unfinished,
    "format": _format,
}


def check_signals(signals: Sequence[str]) -> None:
    unknown = [s for s in signals if s not in SIGNALS]
    if unknown or not signals:
        raise ConfigError(f"signals={list(signals)}: expected a non-empty subset of {SIGNALS}")


def pair_signals(pairs: Sequence[PreferencePair], signals: Sequence[str],
                 drsow_margins: Sequence[float] | None = None) -> np.ndarray:
    """``(len(pairs), len(signals))`` antisymmetric signals: value(A) − value(B) per signal."""
    check_signals(signals)
    cols = []
    for name in signals:
        if name == "drsow":
            if drsow_margins is None or len(drsow_margins) != len(pairs):
                raise ConfigError("signal 'drsow' needs one Dr.SoW margin per pair")
            cols.append(np.asarray(drsow_margins, dtype=float))
        else:
            f = _PER_RESPONSE[name]
            cols.append(np.array([f(p.response_a) - f(p.response_b) for p in pairs], dtype=float))
    return np.stack(cols, axis=1) if cols else np.zeros((len(pairs), 0))


def _fit_logistic(x: np.ndarray, y: np.ndarray, c: float) -> np.ndarray:
    """Weights of a no-intercept L2 logistic regression on both orders of every pair."""
    from sklearn.linear_model import LogisticRegression

    xx, yy = np.concatenate([x, -x]), np.concatenate([y, 1 - y])
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=1000)
    return model.fit(xx, yy).coef_[0]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _folds(groups: Sequence[str], k: int) -> list[np.ndarray]:
    """Indices of ``k`` folds that keep a prompt's pairs together (deterministic)."""
    order = sorted(set(groups))
    fold_of = {g: i % k for i, g in enumerate(order)}
    return [np.array([i for i, g in enumerate(groups) if fold_of[g] == f]) for f in range(k)]


def cross_validated(x: np.ndarray, y: np.ndarray, groups: Sequence[str], c: float, k: int = 5) -> np.ndarray:
    """Out-of-fold p(A) for every labelled pair (folds grouped by prompt)."""
    k = max(2, min(k, len(set(groups))))
    p = np.full(len(y), 0.5)
    for test in _folds(groups, k):
        train = np.setdiff1d(np.arange(len(y)), test)
        if len(test) and len(train):
            p[test] = _sigmoid(x[test] @ _fit_logistic(x[train], y[train], c))
    return p


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def choose_gate(p_cv: np.ndarray, y: np.ndarray, min_agreement: float) -> tuple[float, float, int]:
    """Lowest confidence threshold whose kept cross-validated labels agree ≥ ``min_agreement``.

    Agreement is Laplace-smoothed, (right + 1) / (kept + 2). Returns (threshold,
    smoothed agreement, kept count); when no threshold reaches the target the
    gate is closed (threshold above 1: no automatic label is kept).
    """
    conf = np.array([confidence_from_p(float(p)) for p in p_cv])
    right = (p_cv > 0.5) == (y == 1)
    for t in sorted(set(conf.tolist())):
        kept = conf >= t
        agree = (right[kept].sum() + 1) / (kept.sum() + 2)
        if agree >= min_agreement:
            return float(t), float(agree), int(kept.sum())
    return 1.01, float("nan"), 0


@dataclass
class HybridSettings:
    """How the hybrid annotator is fitted (``annotator=hybrid``)."""

    signals: tuple[str, ...] = field(default=("length", "unfinished", "format"), metadata={
        "help": f"subset of {SIGNALS}; drsow adds Dr.SoW's margin (two model passes per response)"})
    min_agreement: float = field(default=0.75, metadata={
        "help": "gate: keep automatic labels only above the confidence at which cross-validated "
                "agreement with the human labels reaches this; 0 keeps every pair"})
    folds: int = 10

    def validate(self) -> None:
        check_signals(self.signals)
        if not 0.0 <= self.min_agreement < 1.0:
            raise ConfigError(f"min_agreement={self.min_agreement}: expected a value in [0, 1)")
        if self.folds < 2:
            raise ConfigError(f"folds={self.folds}: expected >= 2")


@dataclass
class HybridFit:
    """What the human labels taught: weights per signal, the L2 strength, the gate, CV figures."""

    signals: tuple[str, ...]
    scale: np.ndarray
    weights: np.ndarray
    c: float
    threshold: float
    cv_agreement: float
    cv_log_loss: float
    gate_agreement: float
    labels: int
    cv_right: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per non-tied label: CV prediction right


    def p_a(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid((x / self.scale) @ self.weights)

    def summary(self) -> dict:
        return {"signals": list(self.signals), "weights": dict(zip(self.signals, np.round(self.weights, 4).tolist())),
                "l2_c": self.c, "gate_threshold": round(self.threshold, 4), "cv_agreement": round(self.cv_agreement, 4),
                "cv_log_loss": round(self.cv_log_loss, 4), "gate_cv_agreement": self.gate_agreement,
                "calibration_labels": self.labels}


def fit_hybrid(x_labelled: np.ndarray, winners: Sequence[str], groups: Sequence[str], settings: HybridSettings,
               scale: np.ndarray) -> HybridFit:
    """Fit the weights (C by grouped CV log-loss) and the gate on non-tied human labels."""
    settings.validate()
    keep = [i for i, w in enumerate(winners) if w in ("A", "B")]
    if len(keep) < MIN_LABELS:
        raise DataError(f"the hybrid annotator needs at least {MIN_LABELS} non-tied human labels to calibrate, "
                        f"got {len(keep)}: raise the budget")
    x = x_labelled[keep] / scale
    y = np.array([1.0 if winners[i] == "A" else 0.0 for i in keep])
    g = [groups[i] for i in keep]
    scored = []
    for c in C_GRID:
        p_cv = cross_validated(x, y, g, c, settings.folds)
        scored.append((log_loss(p_cv, y), c, p_cv))
    loss, c, p_cv = min(scored, key=lambda t: (t[0], t[1]))
    if settings.min_agreement > 0:
        threshold, gate_agree, _ = choose_gate(p_cv, y, settings.min_agreement)
    else:
        threshold, gate_agree = 0.0, float("nan")
    right = ((p_cv > 0.5) == (y == 1)).astype(float)
    return HybridFit(tuple(settings.signals), scale, _fit_logistic(x, y, c), c, threshold, float(right.mean()), loss,
                     gate_agree, len(keep), right)


def signal_scale(x_all: np.ndarray) -> np.ndarray:
    """RMS of each signal over every pair (labelled or not: no label is used), so C means the same for each."""
    rms = np.sqrt(np.mean(x_all ** 2, axis=0)) if len(x_all) else np.ones(x_all.shape[1])
    return np.where(rms > 0, rms, 1.0)


class HybridAnnotator:
    """Fit on human labels, then label (or gate out) the rest; see the module docstring."""

    source = "hybrid"

    def __init__(self, settings: HybridSettings, drsow=None):
        settings.validate()
        if "drsow" in settings.signals and drsow is None:
            raise ConfigError("signal 'drsow' needs a density-ratio annotator (annotator settings of Dr.SoW)")
        self.settings, self.drsow = settings, drsow
        self.fit_result: HybridFit | None = None
        self.counts: Counter = Counter()
        self._rest_signals: tuple[list, np.ndarray] | None = None  # the pairs fit() saw unlabelled: scored once

    @property
    def stats(self) -> dict:
        return dict(self.counts)

    def _signals(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        margins = None
        if "drsow" in self.settings.signals:
            anns = {a.pair_id: a for a in self.drsow.annotate(pairs)}
            margins = [anns[p.id].details["margin"] if p.id in anns else 0.0 for p in pairs]
        return pair_signals(pairs, self.settings.signals, margins)

    def fit(self, human_pairs: Sequence[PreferencePair], labels: Sequence[Annotation],
            rest: Sequence[PreferencePair]) -> HybridFit:
        """Calibrate on the human-labelled pairs; the signals' scale comes from every pair."""
        by_id = {a.pair_id: a.preferred for a in labels}
        missing = [p.id for p in human_pairs if p.id not in by_id]
        if missing:
            raise DataError(f"human-labelled pairs without a label: {missing[:3]} ({len(missing)} in all)")
        x_h, x_r = self._signals(human_pairs), self._signals(rest)
        self._rest_signals = (list(rest), x_r)
        scale = signal_scale(np.concatenate([x_h, x_r]))
        groups = [p.prompt_id or p.id for p in human_pairs]
        fit = self.fit_result = fit_hybrid(x_h, [by_id[p.id] for p in human_pairs], groups, self.settings, scale)
        if self.settings.min_agreement > 0 and fit.threshold <= 1.0 and fit.labels < GATE_WARN_LABELS:
            warnings.warn(f"the hybrid gate opened on only {fit.labels} non-tied human labels; below "
                          f"{GATE_WARN_LABELS} its agreement estimate is unreliable (check `frugalign plan`'s "
                          "interval, or raise the budget)", stacklevel=2)
        return fit

    def annotate(self, pairs: Sequence[PreferencePair]) -> list[Annotation]:
        """Every pair judged; ``details["gated"]`` marks the ones under the gate (they must not train)."""
        if self.fit_result is None:
            raise ConfigError("fit the hybrid annotator on human labels before annotating")
        cached = self._rest_signals
        x = cached[1] if cached and cached[0] == list(pairs) else self._signals(pairs)
        fit, out = self.fit_result, []
        for pair, row, p in zip(pairs, x, fit.p_a(x)):
            conf = confidence_from_p(float(p))
            preferred = "A" if p > 0.5 else "B" if p < 0.5 else "tie"
            gated = conf < fit.threshold
            self.counts["gated" if gated else "kept"] += 1
            details = {"signals": dict(zip(fit.signals, np.round(row, 5).tolist())), "gated": gated}
            out.append(Annotation(pair.id, preferred, float(p), conf, self.source, details))
        return out

"""Which annotator to trust at a budget: an annotator benchmark against gold, and a planner from a user's labels.

Both answer the question before any training hour is spent.

* :func:`benchmark_recipe` (needs gold scores for every pair, e.g. a simulated
  study pool): spend ``budget`` human labels on pairs chosen by ``selection``,
  let an annotator label the rest, and measure agreement with gold on the
  non-tied automatic labels it keeps (with a bootstrap interval clustered by
  prompt), Cohen's kappa, coverage after its gate, and the **gold signal the
  recipe delivers**, :func:`gold_gap_ratio`.
* :func:`plan` (needs only the human labels a user already has): the same
  annotators fitted and scored by cross-validation on those labels, with the
  coverage their gates would give on the unlabelled pairs.

Annotators are named recipes over :mod:`frugalign.annotate.hybrid`:
``hybrid`` (cheap signals, gate at 0.75 cross-validated agreement), ``hybrid-strict`` (gate at 0.85, the
demo's), ``hybrid+drsow`` (plus Dr.SoW's margin) and
``drsow`` (Dr.SoW's margin alone, calibrated, no gate: the zero-label method
with its temperature fitted on the labels).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ConfigError, DataError
from ..metrics import bootstrap_ci, cohens_kappa
from ..records import Annotation, PreferencePair
from .hybrid import HybridAnnotator, HybridSettings

#: Annotator name -> its hybrid settings.
ANNOTATORS: dict[str, HybridSettings] = {
    "hybrid": HybridSettings(),
    "hybrid-strict": HybridSettings(min_agreement=0.85),  # the demo's gate: fewer, cleaner labels
    "hybrid+drsow": HybridSettings(signals=("length", "unfinished", "format", "drsow")),
    "drsow": HybridSettings(signals=("drsow",), min_agreement=0.0),
}
SELECTIONS = ("random", "dissimilar", "routed")


def check_names(annotators: Sequence[str], selections: Sequence[str] = ()) -> None:
    bad = [a for a in annotators if a not in ANNOTATORS] + [s for s in selections if s not in SELECTIONS]
    if bad:
        raise ConfigError(f"unknown annotator or selection {bad}: annotators {tuple(ANNOTATORS)}, "
                          f"selections {SELECTIONS}")


def budget_count(budget: float, n_pairs: int) -> int:
    """A budget as a label count: a fraction in (0, 1] of the pairs, or a count (> 1) no larger than the pool."""
    if budget <= 0 or (budget > 1 and (budget != int(budget) or budget > n_pairs)):
        raise ConfigError(f"budget={budget}: expected a fraction in (0, 1] or a whole count <= {n_pairs} pairs")
    return max(1, int(round(budget * n_pairs))) if budget <= 1 else int(budget)


def gold_gap_ratio(labels: Mapping[str, str], gold_diff: Mapping[str, float]) -> float:
    """Σ over labelled pairs of gold(chosen) − gold(rejected) (a wrong label subtracts), divided by
    Σ over all pairs of |gold(A) − gold(B)|: the share of what gold labels on every pair would deliver."""
    total = sum(abs(d) for d in gold_diff.values())
    got = sum(gold_diff[pid] if lab == "A" else -gold_diff[pid] if lab == "B" else 0.0 for pid, lab in labels.items())
    return got / total if total > 0 else float("nan")


@dataclass
class Pool:
    """Candidate pairs with what selection and the annotators need (gold only for measurement)."""

    pairs: list[PreferencePair]
    drsow: dict[str, float] | None = None          # pair id -> Dr.SoW margin r(A) − r(B)
    similarity: dict[str, float] | None = None     # pair id -> cosine of the two responses (REAL)


def _annotator(name: str, pool: Pool) -> HybridAnnotator:
    settings = ANNOTATORS[name]
    drsow = _MarginLookup(pool.drsow) if "drsow" in settings.signals else None
    if "drsow" in settings.signals and pool.drsow is None:
        raise ConfigError(f"annotator {name} needs Dr.SoW margins for the pairs")
    return HybridAnnotator(replace(settings), drsow)


class _MarginLookup:
    """Stands in for a density-ratio annotator with margins already computed."""

    def __init__(self, margins: Mapping[str, float]):
        self.margins = margins

    def annotate(self, pairs):
        return [Annotation(p.id, "tie", 0.5, 0.0, "density_ratio", {"margin": self.margins[p.id]}) for p in pairs]


def choose_human(pool: Pool, k: int, selection: str, seed: int, gold: Mapping[str, str], rounds: int = 2) -> list[int]:
    """Indices of the ``k`` pairs humans label. ``routed``: half at random, then ``rounds`` batches of the
    pairs the hybrid annotator, refitted on the labels so far, is least sure of (``gold`` stands for the
    humans' answers to the batches already bought, and only those)."""
    order = list(range(len(pool.pairs)))
    random.Random(seed).shuffle(order)
    if selection == "random":
        return order[:k]
    if selection == "dissimilar":
        if pool.similarity is None:
            raise ConfigError("selection dissimilar needs response embeddings (similarity per pair)")
        return sorted(order, key=lambda i: pool.similarity[pool.pairs[i].id])[:k]
    chosen = order[: max(1, k // 2)]
    for r in range(rounds):
        taken = set(chosen)
        rest = [i for i in order if i not in taken]
        want = (k - len(chosen)) // (rounds - r)
        try:
            ann = _annotator("hybrid", pool)
            ann.fit([pool.pairs[i] for i in chosen], [_human(pool.pairs[i], gold) for i in chosen],
                    [pool.pairs[i] for i in rest])
            conf = [a.confidence for a in ann.annotate([pool.pairs[i] for i in rest])]
            chosen += [rest[j] for j in np.argsort(conf, kind="stable")[:want]]
        except DataError:  # too few non-tied labels to fit yet: buy the next batch at random
            chosen += rest[:want]
    return chosen


def _human(pair: PreferencePair, gold: Mapping[str, str]) -> Annotation:
    return Annotation(pair.id, gold[pair.id], 0.5, 1.0, "human")


def _agreement(kept: Sequence[Annotation], gold: Mapping[str, str], groups: Mapping[str, str], seed: int):
    nt = [a for a in kept if gold[a.pair_id] != "tie"]
    right = np.array([a.preferred == gold[a.pair_id] for a in nt], dtype=float)
    if not len(right):
        return float("nan"), float("nan"), float("nan"), 0
    low, high = bootstrap_ci(right, np.mean, seed=seed, groups=[groups[a.pair_id] for a in nt])
    return float(right.mean()), low, high, len(right)


def benchmark_recipe(pool: Pool, gold_diff: Mapping[str, float], gold: Mapping[str, str], annotator: str,
                     budget: float, selection: str, seed: int) -> dict:
    """One row of the annotator benchmark (see the module docstring)."""
    check_names([annotator], [selection])
    k = budget_count(budget, len(pool.pairs))
    human_idx = choose_human(pool, k, selection, seed, gold)
    hset = set(human_idx)
    human = [pool.pairs[i] for i in human_idx]
    rest = [p for i, p in enumerate(pool.pairs) if i not in hset]
    labels = {p.id: gold[p.id] for p in human}
    row = {"annotator": annotator, "budget": budget, "selection": selection, "seed": seed, "human_labels": k,
           "human_ties": sum(v == "tie" for v in labels.values())}
    try:
        ann = _annotator(annotator, pool)
        fit = ann.fit(human, [_human(p, gold) for p in human], rest)
        auto = ann.annotate(rest)
    except DataError as e:  # too few non-tied labels: the recipe is human labels only
        return {**row, "agreement": float("nan"), "agreement_ci_low": float("nan"), "agreement_ci_high": float("nan"),
                "agreement_n": 0, "kappa": float("nan"), "coverage": 0.0, "fit_error": str(e),
                "gold_gap_ratio": gold_gap_ratio(labels, gold_diff)}
    kept = [a for a in auto if not a.details["gated"]]
    groups = {p.id: p.prompt_id or p.id for p in pool.pairs}
    agree, low, high, n = _agreement(kept, gold, groups, seed)
    labels.update({a.pair_id: a.preferred for a in kept})
    return {**row, "agreement": agree, "agreement_ci_low": low, "agreement_ci_high": high, "agreement_n": n,
            "kappa": cohens_kappa([a.preferred for a in kept], [gold[a.pair_id] for a in kept]) if kept else float("nan"),
            "coverage": len(kept) / len(rest) if rest else 0.0, "gold_gap_ratio": gold_gap_ratio(labels, gold_diff),
            "cv_agreement": fit.cv_agreement, "gate_threshold": fit.threshold}


def plan(labelled: Sequence[PreferencePair], labels: Sequence[Annotation], unlabelled: Sequence[PreferencePair],
         annotators: Sequence[str], drsow: Mapping[str, float] | None = None) -> list[dict]:
    """Per annotator, from the user's labels alone: cross-validated agreement (interval over prompts), the gate,
    the coverage it gives on the unlabelled pairs, and the expected net correct labels it adds."""
    check_names(annotators)
    by_id = {a.pair_id: a for a in labels}
    unknown = [p.id for p in labelled if p.id not in by_id]
    if unknown:
        raise DataError(f"{len(unknown)} labelled pairs have no label (e.g. {unknown[0]!r})")
    pool = Pool(list(labelled) + list(unlabelled), drsow)
    rows = []
    for name in annotators:
        ann = _annotator(name, pool)
        fit = ann.fit(list(labelled), [by_id[p.id] for p in labelled], list(unlabelled))
        auto = ann.annotate(list(unlabelled))
        kept = sum(not a.details["gated"] for a in auto)
        cv_right = fit.cv_right
        groups = [p.prompt_id or p.id for p in labelled if by_id[p.id].preferred != "tie"]
        low, high = bootstrap_ci(cv_right, np.mean, groups=groups)
        gate_agree = fit.gate_agreement if fit.threshold > 0 else fit.cv_agreement
        rows.append({"annotator": name, "labels": fit.labels, "cv_agreement": fit.cv_agreement,
                     "cv_agreement_ci_low": low, "cv_agreement_ci_high": high, "gate_threshold": fit.threshold,
                     "expected_agreement_kept": gate_agree, "coverage": kept / len(auto) if auto else 0.0,
                     "expected_net_labels": kept * (2 * gate_agree - 1) if kept else 0.0,
                     "weights": fit.summary()["weights"]})
    return rows


@dataclass
class PlanSettings:
    """``frugalign plan``: which annotator to trust, from the human labels a user already has."""

    labels: str = field(default="", metadata={"help": "human labels (annotations file) on some of the input pairs"})
    input: str = field(default="", metadata={"help": "every candidate pair, labelled or not (pairs or any TRL layout)"})
    annotators: list[str] = field(default_factory=lambda: ["hybrid"], metadata={
        "help": f"any of {', '.join(ANNOTATORS)} (the Dr.SoW ones load two models and score every pair)"})
    output: str | None = field(default=None, metadata={"help": "plan JSON"})
    dtype: str = "auto"
    progress: bool = True

    def validate(self) -> None:
        if not self.labels or not self.input:
            raise ConfigError("plan needs labels=... (human labels) and input=... (the candidate pairs)")
        check_names(self.annotators)


def plan_from_files(s: PlanSettings) -> dict:
    """Read, check, plan; the margins of Dr.SoW only when an annotator needs them."""
    from ..data import read_annotations, read_pairs
    from .factory import AnnotatorSettings, build_annotator

    s.validate()
    pairs, labels = read_pairs(s.input), read_annotations(s.labels)
    ids = {p.id for p in pairs}
    unknown = [a.pair_id for a in labels if a.pair_id not in ids]
    if unknown:
        raise DataError(f"{s.labels}: {len(unknown)} labels name pairs that are not in {s.input} "
                        f"(e.g. pair_id {unknown[0]!r})")
    labelled_ids = {a.pair_id for a in labels}
    labelled = [p for p in pairs if p.id in labelled_ids]
    unlabelled = [p for p in pairs if p.id not in labelled_ids]
    margins = None
    if any("drsow" in ANNOTATORS[a].signals for a in s.annotators):
        drsow = build_annotator(AnnotatorSettings(method="density-ratio", overflow="truncate", dtype=s.dtype,
                                                  progress=s.progress))
        margins = {a.pair_id: a.details["margin"] for a in drsow.annotate(pairs)}
    rows = plan(labelled, labels, unlabelled, s.annotators, margins)
    best = max(rows, key=lambda r: r["expected_net_labels"])
    beats_chance = best["cv_agreement_ci_low"] > 0.5
    return {"rows": rows, "labelled": len(labelled), "unlabelled": len(unlabelled),
            "recommended": best["annotator"] if beats_chance else None}

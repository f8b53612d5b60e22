"""Rewards -> annotations: the arithmetic every reward-based annotator shares.

A *reward function* scores single responses (``rewards(items)``); this module
turns rewards into pair judgements and builds pairs from pools:

* p = σ((r_A − r_B) / T); the preferred side is the higher reward, an exact
  tie is ``"tie"`` with p = 0.5; confidence C = 2·(max(p, 1−p) − 0.5) (CW-PO,
  :func:`frugalign.weights.confidence_from_p`);
* best-of-N / min–max pair building over a prompt's N responses: chosen =
  highest reward, rejected = lowest (SPA, default) or a random other one with a
  strictly lower reward (Dr.SoW); prompts whose rewards all tie are dropped.

Nothing is dropped silently: every skipped pair, response or prompt increments
a counter in ``stats`` that the CLI prints.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from tqdm.auto import tqdm

from ..errors import ConfigError, DataError
from ..records import Annotation, PreferencePair, Prompt, PromptItem
from ..weights import confidence_from_p

NAN_POLICIES = ("error", "skip")
REJECTED_MODES = ("lowest", "random")


@dataclass
class RewardItem:
    """One response to score; ``domain`` is the pair's or prompt's domain if known."""

    prompt: Prompt
    response: str
    system: str | None = None
    domain: str | None = None


@dataclass
class RewardResult:
    value: float                       # NaN when the response could not be scored
    details: dict = field(default_factory=dict)


class RewardFunction(Protocol):
    """Scores responses one by one; ``stats`` counts routing fallbacks, cache hits, ..."""

    stats: dict

    def rewards(self, items: Sequence[RewardItem]) -> list[RewardResult]: ...


def stats_of(part) -> dict:
    """Numeric counters of a component's ``stats`` (a dict, a Counter or a dataclass such as
    :class:`~frugalign.logprobs.ScorerStats`); ``{}`` when it has none."""
    st = getattr(part, "stats", None)
    if st is None:
        return {}
    if dataclasses.is_dataclass(st):
        st = dataclasses.asdict(st)
    return {k: v for k, v in dict(st).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def sigmoid(x: float) -> float:
    """Numerically stable logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def annotation_from_rewards(pair_id: str, r_a: float, r_b: float, source: str, *,
                            temperature: float = 1.0, details: dict | None = None) -> Annotation:
    """Judge a pair from its two rewards: p = σ((r_A − r_B)/T), C from p."""
    if math.isnan(r_a) or math.isnan(r_b):
        raise DataError(f"pair {pair_id}: reward is NaN (r_A={r_a}, r_B={r_b})")
    p = sigmoid((r_a - r_b) / temperature)
    preferred = "A" if r_a > r_b else "B" if r_b > r_a else "tie"
    info = {"r_a": r_a, "r_b": r_b, "margin": r_a - r_b}
    info.update(details or {})
    return Annotation(pair_id, preferred, p, confidence_from_p(p), source, info)


def labelled_examples(pairs: Sequence[PreferencePair], labels: Sequence[Annotation]
                      ) -> tuple[list[tuple[PreferencePair, str]], Counter]:
    """Join labels to pairs as ``(pair, winner)``; unknown ids are an error, ties are counted."""
    by_id = {p.id: p for p in pairs}
    unknown = [a.pair_id for a in labels if a.pair_id not in by_id]
    if unknown:
        raise DataError(f"labels refer to unknown pair ids: {unknown[:5]}"
                        f"{' …' if len(unknown) > 5 else ''} ({len(unknown)} in all)")
    counts = Counter(labels=len(labels))
    out = []
    for a in labels:
        if a.preferred == "tie":
            counts["label_ties_dropped"] += 1
        else:
            out.append((by_id[a.pair_id], a.preferred))
    if not out:
        raise DataError("no usable labels: every label is a tie (need A/B labels)")
    return out, counts


def fit_temperature(margins: torch.Tensor, smoothing: bool = True) -> float:
    """T minimising the mean −log σ(m/T) over labelled margins m = r⁺ − r⁻ (grid on log T).

    With ``smoothing`` two pseudo-pairs at ± the median |m| (one agreeing, one
    not: add-one smoothing) join the margins, so a small all-correct holdout
    gives p ≈ (n+1)/(n+2) instead of T -> 0 and confidence 1. A grid, not an
    optimiser: the 1-D NLL is smooth and a grid cannot diverge.
    """
    m = margins.double().flatten()
    if smoothing and m.numel():
        med = m.abs().median()
        m = torch.cat([m, torch.stack([med, -med])])
    grid = torch.linspace(math.log(1e-3), math.log(1e3), 301, dtype=torch.float64)
    nll = torch.stack([-torch.nn.functional.logsigmoid(m / math.exp(g)).mean() for g in grid.tolist()])
    return float(math.exp(grid[int(nll.argmin())]))


def check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    """One-line ConfigError for a setting outside ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: expected one of {tuple(allowed)}")


class RewardAnnotator:
    """Annotator built from a reward function (density ratio, implicit reward, weak judge)."""

    def __init__(self, reward: RewardFunction, source: str, *, temperature: float = 1.0,
                 nan_policy: str = "error", progress: bool = False):
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        check_choice("nan_policy", nan_policy, NAN_POLICIES)
        self.reward, self.source = reward, source
        self.temperature, self.nan_policy, self.progress = temperature, nan_policy, progress
        self.counts: Counter = Counter()

    @property
    def stats(self) -> dict:
        """This annotator's counts plus the reward function's (routing, cache, ...)."""
        out = stats_of(self.reward)
        out.update(self.counts)
        return out

    def _score(self, items: list[RewardItem]) -> list[RewardResult]:
        results = self.reward.rewards(items)
        if len(results) != len(items):
            raise RuntimeError("reward function returned a wrong number of results")
        return results

    def annotate(self, pairs: Sequence[PreferencePair]) -> list[Annotation]:
        """One annotation per pair; NaN rewards raise or are skipped and counted (``nan_policy``)."""
        items = [RewardItem(p.prompt, r, p.system, p.domain)
                 for p in pairs for r in (p.response_a, p.response_b)]
        results = self._score(items)
        out = []
        self.counts["pairs"] += len(pairs)
        for k, pair in enumerate(tqdm(pairs, desc=f"{self.source}", disable=not self.progress,
                                      leave=False)):
            ra, rb = results[2 * k], results[2 * k + 1]
            if math.isnan(ra.value) or math.isnan(rb.value):
                self._nan(f"pair {pair.id}", "nan_pairs_skipped")
                continue
            details = _merge_details(ra.details, rb.details)
            ann = annotation_from_rewards(pair.id, ra.value, rb.value, self.source,
                                          temperature=self.temperature, details=details)
            self.counts["score_ties"] += ann.preferred == "tie"
            out.append(ann)
        self.counts["annotated"] += len(out)
        return out

    def calibrate(self, pairs: Sequence[PreferencePair], labels: Sequence[Annotation]) -> float:
        """Fit the temperature T on labelled pairs (the same σ((r_A − r_B)/T) NLL as the weak judge).

        Only the labelled pairs are scored (a cache makes this free on a re-run);
        pairs with a NaN reward are left out and counted; if every label is a
        tie, T is kept and ``calibration_skipped_all_ties`` is set.
        """
        if all(a.preferred == "tie" for a in labels):  # nothing to fit on: keep T, say so
            self.counts["calibration_skipped_all_ties"] = 1
            return self.temperature
        examples, counts = labelled_examples(pairs, labels)
        items = [RewardItem(p.prompt, r, p.system, p.domain)
                 for p, _ in examples for r in (p.response_a, p.response_b)]
        res = self._score(items)
        margins = []
        for k, (_, winner) in enumerate(examples):
            ra, rb = res[2 * k].value, res[2 * k + 1].value
            if math.isnan(ra) or math.isnan(rb):
                self.counts["calibration_nan_skipped"] += 1
                continue
            margins.append(ra - rb if winner == "A" else rb - ra)
        if not margins:
            raise DataError("temperature calibration: no labelled pair could be scored")
        self.temperature = fit_temperature(torch.tensor(margins, dtype=torch.float64))
        self.counts["calibration_pairs"] = len(margins)
        self.counts["calibration_label_ties_dropped"] = counts["label_ties_dropped"]
        return self.temperature

    def _nan(self, what: str, counter: str) -> None:
        if self.nan_policy == "error":
            raise DataError(f"{what}: reward is NaN (a response was skipped for context length "
                            "or the model produced NaN); set nan_policy=skip to drop and count it")
        self.counts[counter] += 1

    def annotate_pool(self, pool: Sequence[PromptItem], *, rejected: str = "lowest", seed: int = 0,
                      min_margin: float = 0.0) -> tuple[list[PreferencePair], list[Annotation]]:
        """Best-of-N pairs from a pool: score every response, keep one judged pair per prompt."""
        items = [RewardItem(it.prompt, r, it.system, it.domain) for it in pool for r in it.responses]
        results = self._score(items)
        per_prompt, k = [], 0
        for it in pool:
            rs = results[k:k + len(it.responses)]
            k += len(it.responses)
            for res in rs:
                if math.isnan(res.value):
                    self._nan(f"prompt {it.id}", "nan_responses_skipped")
            per_prompt.append(rs)
        pairs, anns, counts = pairs_from_pool(pool, per_prompt, source=self.source, rejected=rejected,
                                              seed=seed, temperature=self.temperature, min_margin=min_margin)
        self.counts.update(counts)
        return pairs, anns


def pairs_from_pool(pool: Sequence[PromptItem], rewards: Sequence[Sequence[RewardResult]], *,
                    source: str, rejected: str = "lowest", seed: int = 0, temperature: float = 1.0,
                    min_margin: float = 0.0) -> tuple[list[PreferencePair], list[Annotation], Counter]:
    """One pair per prompt: chosen = highest reward, rejected = lowest or a random lower one.

    NaN rewards are left out of the choice, and identical responses count once
    (the first copy); prompts with fewer than two such responses, or where no
    response scores more than ``min_margin`` below the best (ties), are dropped
    and counted. Response A is the one with the lower index in the pool, so the
    label is not always "A".
    """
    check_choice("rejected", rejected, REJECTED_MODES)
    pairs, anns, counts = [], [], Counter()
    for it, rs in zip(pool, rewards):
        valid = [(i, r) for i, r in enumerate(rs)
                 if not math.isnan(r.value) and it.responses[i] not in it.responses[:i]]
        if len(valid) < 2:
            counts["prompts_too_few_responses"] += 1
            continue
        best = max(valid, key=lambda t: t[1].value)
        lower = [t for t in valid if best[1].value - t[1].value > min_margin]
        if not lower:
            counts["prompts_all_tied"] += 1
            continue
        if rejected == "lowest":
            worst = min(lower, key=lambda t: t[1].value)
        else:  # seeded per prompt, so the choice does not depend on pool order
            worst = random.Random(f"{seed}:{it.id}").choice(lower)
        (ia, ra), (ib, rb) = sorted([best, worst], key=lambda t: t[0])
        pair = PreferencePair(
            id=f"{it.id}:{ia}-{ib}", prompt=it.prompt, response_a=it.responses[ia],
            response_b=it.responses[ib], system=it.system, domain=it.domain, prompt_id=it.id,
            meta={"index_a": ia, "index_b": ib, "selection": f"best-vs-{rejected}",
                  "n_responses": len(rs)})
        details = _merge_details(ra.details, rb.details)
        anns.append(annotation_from_rewards(pair.id, ra.value, rb.value, source,
                                            temperature=temperature, details=details))
        pairs.append(pair)
    counts["prompts_paired"] += len(pairs)
    return pairs, anns, counts


def _merge_details(da: dict, db: dict) -> dict:
    """Per-response details as ``key_a``/``key_b``; keys equal on both sides (domain) once."""
    out = {}
    for key in sorted(set(da) | set(db)):
        va, vb = da.get(key), db.get(key)
        if va == vb:
            out[key] = va
        else:
            out[f"{key}_a"], out[f"{key}_b"] = va, vb
    return out

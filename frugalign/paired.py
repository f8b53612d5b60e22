"""Paired comparisons of policies on the same test prompts (numpy only).

A policy's result on one test prompt is its **prompt win rate** against the
initial policy: over every (trained sample, initial sample) pair of that prompt,
1 for a higher gold score, ½ for a tie, 0 for a lower one. Using all k×k
sample pairs (not k aligned ones) removes the arbitrary pairing of samples and
its variance; the unit of resampling stays the prompt.

Arms trained with several seeds are pooled by averaging each prompt's win rate
over the seeds. Two arms evaluated on the same prompts are compared **paired**:
the per-prompt difference of their win rates, bootstrapped over prompts, so
prompt difficulty cancels out. Everything is deterministic for a given seed.

Prompts that share a base question (constraint variants of one question, or
the same question drawn twice) are not independent, so every interval here
resamples **base questions**, each with all its prompts (:func:`base_question`
reads it from the benchmark's ``task/question_id/s{seed}v{variant}`` ids; any
other id is its own cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import bootstrap_ci, win_outcomes


def base_question(prompt_id: str) -> str:
    """The cluster of a prompt: the base question of a benchmark id ``task/question_id/s{seed}v{variant}``,
    else the id itself."""
    parts = prompt_id.split("/")
    return parts[1] if len(parts) == 3 and parts[2].startswith("s") and "v" in parts[2] else prompt_id


Cluster = Callable[[str], str]


def _groups(keys: Sequence[str], cluster: Cluster | None) -> list[str] | None:
    return None if cluster is None else [cluster(k) for k in keys]


def prompt_win_rate(policy: Sequence[float], baseline: Sequence[float], tie_tol: float = 0.0) -> float:
    """Mean outcome over all ``len(policy) × len(baseline)`` sample pairs of one prompt."""
    a = np.repeat(np.asarray(policy, dtype=float), len(baseline))
    b = np.tile(np.asarray(baseline, dtype=float), len(policy))
    if not a.size:
        raise ValueError("a prompt needs at least one sample on each side")
    return float(win_outcomes(a, b, tie_tol).mean())


def prompt_win_rates(policy: Mapping[str, Sequence[float]], baseline: Mapping[str, Sequence[float]],
                     tie_tol: float = 0.0) -> dict[str, float]:
    """Per prompt id: :func:`prompt_win_rate`. Both sides must cover the same prompts."""
    if set(policy) != set(baseline):
        only = sorted(set(policy) ^ set(baseline))
        raise ValueError(f"policy and baseline cover different prompts (e.g. {only[:3]})")
    return {pid: prompt_win_rate(policy[pid], baseline[pid], tie_tol) for pid in sorted(policy)}


def pool_seeds(per_seed: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Average each prompt's value over seeds (all seeds must cover the same prompts)."""
    if not per_seed:
        raise ValueError("no seeds to pool")
    keys = set(per_seed[0])
    if any(set(s) != keys for s in per_seed):
        raise ValueError("seeds cover different test prompts; they cannot be pooled")
    return {k: float(np.mean([s[k] for s in per_seed])) for k in sorted(keys)}


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


def mean_ci(by_prompt: Mapping[str, float], *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0,
            cluster: Cluster | None = base_question) -> Estimate:
    """Mean over prompts with a percentile bootstrap interval over clusters of prompts (``None``: over prompts)."""
    keys = sorted(by_prompt)
    v = np.array([by_prompt[k] for k in keys], dtype=float)
    low, high = bootstrap_ci(v, np.mean, n_boot=n_boot, alpha=alpha, seed=seed, groups=_groups(keys, cluster))
    return Estimate(float(v.mean()), low, high)


def _matrix(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[np.ndarray, list[str]]:
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("the two arms share no test prompt: they cannot be compared paired")
    return np.array([[a[k], b[k]] for k in shared], dtype=float), shared


def paired_difference(arm: Mapping[str, float], baseline: Mapping[str, float], *, n_boot: int = 2000,
                      alpha: float = 0.05, seed: int = 0, cluster: Cluster | None = base_question) -> Estimate:
    """mean(arm − baseline) over the prompts both cover, bootstrapped over their clusters."""
    m, keys = _matrix(arm, baseline)
    diff = lambda x: float((x[:, 0] - x[:, 1]).mean())  # noqa: E731
    low, high = bootstrap_ci(m, diff, n_boot=n_boot, alpha=alpha, seed=seed, groups=_groups(keys, cluster))
    return Estimate(diff(m), low, high)


def recovered_fraction(arm: Mapping[str, float], full: Mapping[str, float], *, n_boot: int = 2000,
                       alpha: float = 0.05, seed: int = 0, cluster: Cluster | None = base_question) -> Estimate:
    """(arm's win rate − ½) / (full's win rate − ½): the share of the full-label gain an arm recovers.

    The bootstrap resamples prompts jointly; a resample where ``full`` shows no
    gain gives no ratio and is left out (NaN when most of them do).
    """
    m, keys = _matrix(arm, full)

    def ratio(x: np.ndarray) -> float:
        gain = x[:, 1].mean() - 0.5
        return float((x[:, 0].mean() - 0.5) / gain) if gain > 1e-9 else float("nan")

    low, high = bootstrap_ci(m, ratio, n_boot=n_boot, alpha=alpha, seed=seed, groups=_groups(keys, cluster))
    return Estimate(ratio(m), low, high)

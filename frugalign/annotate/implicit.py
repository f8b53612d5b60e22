"""SPA: the policy judges its own samples with its implicit DPO reward.

    r(x, y) = β·(log π_θ(y|x) − log π_ref(y|x))

π_ref is the initial (SFT) model. Over K responses per prompt the pair is
min–max (chosen = highest r, rejected = lowest; ``RewardAnnotator.annotate_pool``
with ``rejected="lowest"``) and p = σ(r_A − r_B).

Decoupled noise detection (``mix_lambda`` = λ > 0) replaces log π_θ by the
log-prob under extrapolated logits h = (1 + λ)·h_θ − λ·h_ref, i.e. an
approximation of a stronger model than the current policy, so
r = β·(log π_mix − log π_ref). The policy and the reference must then share
a tokenizer (the scorer checks the vocabulary size).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..logprobs import ScoreItem
from ..losses import implicit_reward
from .base import RewardAnnotator, RewardItem, RewardResult, stats_of


class ImplicitReward:
    """β·(log π_θ − log π_ref); ``policy``/``reference`` are (cached) log-prob scorers."""

    def __init__(self, policy, reference, *, beta: float = 0.1, mix_lambda: float = 0.0):
        if not beta > 0:
            raise ConfigError(f"beta must be > 0, got {beta}")
        if mix_lambda < 0:
            raise ConfigError(f"mix_lambda must be >= 0, got {mix_lambda}")
        self.policy, self.reference = policy, reference
        self.beta, self.mix_lambda = beta, mix_lambda

    @property
    def stats(self) -> dict:
        """The two scorers' counters (cache hits/misses), prefixed ``policy_`` / ``reference_``."""
        out = {}
        for name, part in (("policy", self.policy), ("reference", self.reference)):
            out.update({f"{name}_{k}": v for k, v in stats_of(part).items()})
        return out

    def rewards(self, items: Sequence[RewardItem]) -> list[RewardResult]:
        """β·(log π_θ − log π_ref) per response (log π_mix with λ > 0); NaN if a side was skipped."""
        scored = [ScoreItem(it.prompt, it.response, it.system) for it in items]
        mix = (self.reference.model, self.mix_lambda) if self.mix_lambda > 0 else None
        rp = self.policy.score(scored, mix_with=mix)
        rr = self.reference.score(scored)
        out = []
        for p, r in zip(rp, rr):
            value = float("nan") if (p.skipped or r.skipped) else implicit_reward(p.logprob, r.logprob, self.beta)
            details = {"logp_policy": p.logprob, "logp_ref": r.logprob}
            if mix:
                details["mix_lambda"] = self.mix_lambda
            out.append(RewardResult(value, details))
        return out


def implicit_annotator(policy, reference, *, beta: float = 0.1, mix_lambda: float = 0.0,
                       nan_policy: str = "error", progress: bool = False) -> RewardAnnotator:
    """SPA's self-annotator: p = σ(r_A − r_B) with r the implicit reward (T = 1; β is the scale)."""
    reward = ImplicitReward(policy, reference, beta=beta, mix_lambda=mix_lambda)
    return RewardAnnotator(reward, "implicit", nan_policy=nan_policy, progress=progress)

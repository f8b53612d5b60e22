"""Preference losses on per-pair log-probabilities, their reduction, and SPA self-refinement.

Every loss takes four tensors of shape ``[B]``: the *summed* response
log-probabilities log π(y|x) of the policy and of the reference, for the chosen
(y⁺) and rejected (y⁻) response of each pair. With

    z = (π_c − ref_c) − (π_r − ref_r)          (implicit log-ratio margin)

and a per-pair label smoothing ε ∈ [0, 0.5) (a float, or a tensor broadcast to ``[B]``):

* DPO with conservative smoothing (cDPO; Rafailov et al. 2023, Mitchell 2023):
      ℓ = −(1 − ε)·log σ(βz) − ε·log σ(−βz)
* IPO (Azar et al. 2023, Eq. 17, as in TRL 1.16):
      ℓ = (z − 1/(2β))²                      at ε = 0, exactly TRL's formula;
      ℓ = (1 − ε)(z − 1/(2β))² + ε(z + 1/(2β))²  for ε > 0.
  TRL ignores ``label_smoothing`` for IPO. We use the label-flipped mixture: it
  is the expected IPO loss when the label is wrong with probability ε, and it
  equals (z − (1 − 2ε)/(2β))² + const, i.e. it shrinks the target margin
  towards 0 exactly as smoothing shrinks DPO's target probability. So SPA's
  flagged pairs mean the same thing under IPO as under DPO.
  TRL divides each log-ratio by the completion length before the square; pass
  ``chosen_lengths``/``rejected_lengths`` to reproduce that, omit them for the
  paper's sequence-level form.
* robust DPO (Chowdhury et al. 2024, as TRL implements it):
      ℓ = [−(1 − ε)·log σ(βz) + ε·log σ(−βz)] / (1 − 2ε)
  an unbiased estimate of the clean-label DPO loss under flip rate ε.

Each loss returns :class:`PreferenceLossOutput` with the per-pair losses and the
implicit rewards β·(π − ref) (detached, for logging and self-annotation).

Why weights are not a loss argument: a per-pair confidence (CW-PO's C, a
human-vs-machine label weight) scales a pair's contribution to the batch
objective, whichever loss is used. Keeping it in :func:`reduce_losses` keeps the
loss functions pure and comparable with TRL, makes the normalisation an
explicit, visible setting of the training loop, and lets one weight vector be
combined with any loss (DPO = weight 1 & smoothing 0, cDPO = constant smoothing,
CW-PO = weight C, SPA = smoothing on flagged pairs).

SPA self-refinement (Kim et al. 2025) flags a pair as noisy (p = 0) when its
margin β·z falls below τ, the 10th percentile of recent margins, and uses
    ℓ = −(1 − α + αp)·log σ(βz) − (α − αp)·log σ(−βz),
which is exactly :func:`dpo_loss` with per-pair smoothing ε = α(1 − p).
:class:`SelfRefinement` produces that smoothing tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from frugalign.errors import ConfigError, DataError

__all__ = [
    "LOSSES",
    "REDUCTIONS",
    "PreferenceLossOutput",
    "SelfRefinement",
    "dpo_loss",
    "get_loss",
    "implicit_margin",
    "implicit_reward",
    "ipo_loss",
    "reduce_losses",
    "reduction_denominator",
    "robust_dpo_loss",
]

Smoothing = float | Tensor
REDUCTIONS = ("mean", "weight_normalized")


class PreferenceLossOutput(NamedTuple):
    """Per-pair losses (with grad) and detached implicit rewards β·(π − ref), all ``[B]``."""

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor


# --------------------------------------------------------------------------- checks


def _check_logps(*logps: Tensor) -> None:
    shape = logps[0].shape
    if any(t.shape != shape for t in logps):
        raise DataError(f"log-prob tensors must share one shape [B]; got {[tuple(t.shape) for t in logps]}")


def _check_beta(beta: float) -> None:
    if not (math.isfinite(beta) and beta > 0):
        raise ConfigError(f"beta must be a finite number > 0, got {beta}")


def _smoothing_tensor(label_smoothing: Smoothing, like: Tensor) -> Tensor | float:
    """Validate ε ∈ [0, 0.5) and return it as a float or a tensor broadcast to ``like``."""
    if not isinstance(label_smoothing, Tensor):
        eps = float(label_smoothing)
        if not (0.0 <= eps < 0.5):  # also rejects NaN
            raise ConfigError(f"label_smoothing must lie in [0, 0.5), got {eps}")
        return eps
    eps_t = label_smoothing.detach().to(device=like.device, dtype=like.dtype)
    try:
        eps_t = torch.broadcast_to(eps_t, like.shape)
    except RuntimeError as exc:
        raise ConfigError(
            f"label_smoothing of shape {tuple(label_smoothing.shape)} does not broadcast to {tuple(like.shape)}"
        ) from exc
    bad = ~((eps_t >= 0) & (eps_t < 0.5))  # NaN fails both comparisons
    if bool(bad.any()):
        raise ConfigError(f"label_smoothing must lie in [0, 0.5) for every pair; got {eps_t[bad].tolist()[:5]}")
    return eps_t


def _weights_tensor(weights: float | Tensor, like: Tensor) -> Tensor:
    w = weights if isinstance(weights, Tensor) else torch.tensor(float(weights))
    w = w.to(device=like.device, dtype=like.dtype)
    try:
        w = torch.broadcast_to(w, like.shape)
    except RuntimeError as exc:
        raise DataError(f"weights of shape {tuple(w.shape)} do not broadcast to losses {tuple(like.shape)}") from exc
    if not bool(torch.isfinite(w).all()):
        raise DataError("weights must be finite; got NaN or inf")
    if bool((w < 0).any()):
        raise DataError(f"weights must be >= 0; got {w[w < 0].tolist()[:5]}")
    return w


# --------------------------------------------------------------------------- losses


def _log_ratio_margin(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    _check_logps(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    return chosen_ratio - rejected_ratio, chosen_ratio, rejected_ratio


def implicit_reward(logp, ref_logp, beta: float):
    """DPO's implicit reward β·(log π(y|x) − log π_ref(y|x)); floats or tensors (SPA's self-judge)."""
    return beta * (logp - ref_logp)


def implicit_margin(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    *,
    beta: float = 0.1,
) -> Tensor:
    """β·z = r(y⁺) − r(y⁻), the implicit-reward margin of each pair (not detached; SPA's noise signal)."""
    _check_beta(beta)
    _check_logps(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return implicit_reward(policy_chosen, ref_chosen, beta) - implicit_reward(policy_rejected, ref_rejected, beta)


def _output(losses: Tensor, chosen_ratio: Tensor, rejected_ratio: Tensor, beta: float) -> PreferenceLossOutput:
    return PreferenceLossOutput(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, *,
             beta: float = 0.1, label_smoothing: Smoothing = 0.0) -> PreferenceLossOutput:
    """Sigmoid DPO with conservative smoothing: −(1−ε)·log σ(βz) − ε·log σ(−βz)."""
    _check_beta(beta)
    z, chosen_ratio, rejected_ratio = _log_ratio_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    eps = _smoothing_tensor(label_smoothing, z)
    logits = beta * z
    # logsigmoid is the numerically stable form of log σ for large |βz|
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return _output(losses, chosen_ratio, rejected_ratio, beta)


def ipo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, *,
             beta: float = 0.1, label_smoothing: Smoothing = 0.0, chosen_lengths: Tensor | None = None,
             rejected_lengths: Tensor | None = None) -> PreferenceLossOutput:
    """IPO: (1−ε)(z − 1/2β)² + ε(z + 1/2β)²; at ε = 0 exactly TRL's (z − 1/2β)².

    With ``chosen_lengths``/``rejected_lengths`` (completion token counts, ``[B]``)
    each log-ratio is divided by its length first, as TRL 1.16 does. Rewards stay
    the unnormalised β·(π − ref), as TRL logs them.
    """
    _check_beta(beta)
    z, chosen_ratio, rejected_ratio = _log_ratio_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise ConfigError("pass both chosen_lengths and rejected_lengths, or neither")
    if chosen_lengths is not None and rejected_lengths is not None:
        # clamp(min=1) as TRL does, so an empty completion cannot divide by zero
        c_len = chosen_lengths.to(z.device, z.dtype).clamp(min=1.0)
        r_len = rejected_lengths.to(z.device, z.dtype).clamp(min=1.0)
        z = chosen_ratio / c_len - rejected_ratio / r_len
    eps = _smoothing_tensor(label_smoothing, z)
    target = 1 / (2 * beta)
    losses = (1 - eps) * (z - target) ** 2 + eps * (z + target) ** 2
    return _output(losses, chosen_ratio, rejected_ratio, beta)


def robust_dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, *,
                    beta: float = 0.1, label_smoothing: Smoothing = 0.0) -> PreferenceLossOutput:
    """Robust DPO (Chowdhury et al.): [−(1−ε)·log σ(βz) + ε·log σ(−βz)] / (1 − 2ε)."""
    _check_beta(beta)
    z, chosen_ratio, rejected_ratio = _log_ratio_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    eps = _smoothing_tensor(label_smoothing, z)
    logits = beta * z
    clean = -(1 - eps) * F.logsigmoid(logits)
    flipped = -eps * F.logsigmoid(-logits)
    # ε < 0.5 is validated above, so the denominator is > 0
    losses = (clean - flipped) / (1 - 2 * eps)
    return _output(losses, chosen_ratio, rejected_ratio, beta)


LossFn = Callable[..., PreferenceLossOutput]
LOSSES: dict[str, LossFn] = {"dpo": dpo_loss, "ipo": ipo_loss, "robust": robust_dpo_loss}


def get_loss(name: str) -> LossFn:
    """Look a loss up by its CLI name (``dpo``, ``ipo``, ``robust``)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None


# --------------------------------------------------------------------------- reduction


def reduction_denominator(weights, mode: str = "mean") -> float:
    """The normaliser D of a whole batch: its size n (``mean``) or Σw (``weight_normalized``, 1 if Σw = 0)."""
    if mode not in REDUCTIONS:
        raise ConfigError(f"unknown reduction mode {mode!r}; choose one of {list(REDUCTIONS)}")
    weights = [float(w) for w in weights]
    total = sum(weights)
    return float(len(weights)) if mode == "mean" else (total if total > 0 else 1.0)


def reduce_losses(losses: Tensor, weights: float | Tensor | None = None, mode: str = "mean", *,
                  denominator: float | None = None) -> Tensor:
    """Reduce per-pair losses to a scalar, applying per-pair weights.

    * ``"mean"``: mean(w·ℓ) over the batch. A batch of low-confidence pairs then
      contributes a small gradient, which is CW-PO's stated objective L = mean(C·ℓ).
    * ``"weight_normalized"``: Σ(w·ℓ) / Σw, a weighted average whose scale does
      not depend on how confident the batch is. If Σw = 0 it returns 0, still
      connected to the graph (all gradients exactly zero), so ``backward()`` works.

    Without weights both modes are the plain mean. Weights must be finite and >= 0.
    ``denominator`` (from :func:`reduction_denominator` over the *whole* batch) gives
    this part's share Σ(w·ℓ)/D when a batch is split into micro-batches or across
    processes, so the shares add up to the whole batch's value.
    """
    if mode not in REDUCTIONS:
        raise ConfigError(f"unknown reduction mode {mode!r}; choose one of {list(REDUCTIONS)}")
    if denominator is not None:
        w = _weights_tensor(1.0 if weights is None else weights, losses)
        return (w * losses).sum() / denominator
    if weights is None:
        # sum() keeps an empty batch at 0 instead of mean()'s NaN
        return losses.mean() if losses.numel() else losses.sum()
    w = _weights_tensor(weights, losses)
    weighted = w * losses
    if mode == "mean":
        return weighted.mean() if losses.numel() else weighted.sum()
    total = w.sum()
    # replacing a zero denominator (instead of torch.where on the quotient) avoids 0/0 NaN gradients;
    # when Σw = 0 the numerator is 0 anyway, so the result is 0 with a live graph. No host sync.
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    return weighted.sum() / safe_total


# --------------------------------------------------------------------------- SPA


def recent_window(run_margins: int, batch: int, cap: int = 1024) -> int:
    """How many margins count as "recent" for SPA's threshold in a run that sees ``run_margins``.

    A tenth of the run, at least one batch, at most ``cap``. A window that spans
    the whole run would compare late margins with the small early ones (policy
    ≈ reference) and, as margins grow, flag nothing.
    """
    return int(max(batch, min(cap, run_margins // 10)))


class SelfRefinement:
    """SPA's noise-aware label smoothing from a rolling window of margins.

    Call :meth:`smoothing` once per optimisation step with the batch's margins
    β·z (the caller chooses how they are computed: from the policy, or from
    extrapolated logits for decoupled noise detection; they are detached here).

    * The batch's margins are appended to the window first, so the threshold τ
      (the ``percentile``-th percentile, linear interpolation as ``numpy``) is
      computed over the window *including the current batch*. The first batch
      is therefore judged against itself, and a batch larger than ``window`` is
      still judged in full.
    * A pair is noisy (p = 0, smoothing ``alpha``) iff its margin is strictly
      below τ, otherwise clean (p = 1, smoothing 0). The strict inequality differs
      from "clean iff above τ" only on ties, and keeps a window of identical
      margins (e.g. step 0, where policy = reference and every margin is 0) from
      flagging every pair.
    * During the first ``warmup_fraction`` of steps (``step < warmup_fraction ·
      total_steps``, steps counted from 0) the smoothing is all zeros, but the
      window still fills, so τ is meaningful when warmup ends.

    :meth:`state_dict`/:meth:`load_state_dict` capture the window, so a resumed
    run reproduces the same smoothing.
    """

    def __init__(
        self,
        alpha: float = 0.1,
        warmup_fraction: float = 0.2,
        percentile: float = 10.0,
        window: int = 1024,
    ) -> None:
        if not (0.0 <= alpha < 0.5):
            raise ConfigError(f"alpha must lie in [0, 0.5) (it becomes label smoothing), got {alpha}")
        if not (0.0 <= warmup_fraction <= 1.0):
            raise ConfigError(f"warmup_fraction must lie in [0, 1], got {warmup_fraction}")
        if not (0.0 <= percentile <= 100.0):
            raise ConfigError(f"percentile must lie in [0, 100], got {percentile}")
        if int(window) < 1:
            raise ConfigError(f"window must be a positive number of margins, got {window}")
        self.alpha = float(alpha)
        self.warmup_fraction = float(warmup_fraction)
        self.percentile = float(percentile)
        self.window = int(window)
        # float64 on CPU: exact round-trip through state_dict's Python floats
        self._margins = torch.empty(0, dtype=torch.float64)
        self.last_threshold: float | None = None

    def smoothing(self, margins: Tensor, *, step: int, total_steps: int) -> Tensor:
        """Record ``margins`` ([B]) and return per-pair label smoothing ([B], float32, margins' device)."""
        if total_steps < 1 or step < 0:
            raise ConfigError(f"need step >= 0 and total_steps >= 1, got step={step}, total_steps={total_steps}")
        batch = margins.detach().reshape(-1).to("cpu", torch.float64)
        if not bool(torch.isfinite(batch).all()):
            raise DataError("SPA margins must be finite; got NaN or inf (has training diverged?)")
        # the threshold always sees the whole current batch, even if it exceeds the window
        pool = torch.cat([self._margins, batch])[-max(self.window, batch.numel()) :]
        self._margins = pool[-self.window :].clone()
        out = torch.zeros(batch.numel(), dtype=torch.float32)
        if batch.numel():
            tau = torch.quantile(pool, self.percentile / 100.0)
            self.last_threshold = float(tau)
            if step >= self.warmup_fraction * total_steps:
                out[batch < tau] = self.alpha
        return out.reshape(margins.shape).to(margins.device)

    def state_dict(self) -> dict[str, Any]:
        """Plain Python values (JSON-serialisable): settings and the margin window."""
        return {
            "alpha": self.alpha,
            "warmup_fraction": self.warmup_fraction,
            "percentile": self.percentile,
            "window": self.window,
            "margins": self._margins.tolist(),
            "last_threshold": self.last_threshold,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore settings and window saved by :meth:`state_dict`."""
        try:
            fresh = SelfRefinement(state["alpha"], state["warmup_fraction"], state["percentile"], state["window"])
            margins = torch.tensor(list(state["margins"]), dtype=torch.float64)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a SelfRefinement state: {exc}") from exc
        self.alpha, self.warmup_fraction = fresh.alpha, fresh.warmup_fraction
        self.percentile, self.window = fresh.percentile, fresh.window
        self._margins = margins[-self.window :]
        self.last_threshold = state.get("last_threshold")

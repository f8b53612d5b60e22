"""Tests for frugalign.losses: hand-derived values, weighting, TRL parity, SPA self-refinement."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from frugalign.losses import (
    LOSSES,
    PreferenceLossOutput,
    SelfRefinement,
    dpo_loss,
    get_loss,
    implicit_margin,
    ipo_loss,
    reduce_losses,
    robust_dpo_loss,
)

LN3 = math.log(3.0)
BETA = 0.1


def _pair(chosen_ratio: float, rejected_ratio: float, ref_c: float = -20.0, ref_r: float = -25.0):
    """Summed log-probs (float64, policy ones require grad) with the given log-ratios."""
    pc = torch.tensor([ref_c + chosen_ratio], dtype=torch.float64, requires_grad=True)
    pr = torch.tensor([ref_r + rejected_ratio], dtype=torch.float64, requires_grad=True)
    return pc, pr, torch.tensor([ref_c], dtype=torch.float64), torch.tensor([ref_r], dtype=torch.float64)


def _random_batch(b: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logps = [-(torch.rand(b, generator=g, dtype=torch.float64) * 40 + 5) for _ in range(4)]
    logps[0].requires_grad_(True)
    logps[1].requires_grad_(True)
    return logps


# --------------------------------------------------------------------------- hand-derived values

# Chosen log-ratio +5·ln3, rejected −5·ln3, so z = 10·ln3 and βz = ln3 at β = 0.1:
#   σ(ln3) = 3/4, σ(−ln3) = 1/4.


def test_dpo_hand_values_and_gradients():
    pc, pr, rc, rr = _pair(5 * LN3, -5 * LN3)
    out = dpo_loss(pc, pr, rc, rr, beta=BETA)
    assert isinstance(out, PreferenceLossOutput)
    # ℓ = −log σ(ln3) = ln(4/3) ≈ 0.287682
    assert out.losses.item() == pytest.approx(math.log(4 / 3), abs=1e-12)
    # rewards β·(π − ref) = ±0.5·ln3, detached
    assert out.chosen_rewards.item() == pytest.approx(0.5 * LN3)
    assert out.rejected_rewards.item() == pytest.approx(-0.5 * LN3)
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    # dℓ/dπ_c = −β·σ(−βz) = −0.1·1/4 = −0.025 ; dℓ/dπ_r = +0.025
    out.losses.sum().backward()
    assert pc.grad.item() == pytest.approx(-0.025)
    assert pr.grad.item() == pytest.approx(0.025)


def test_dpo_conservative_smoothing_hand_value():
    pc, pr, rc, rr = _pair(5 * LN3, -5 * LN3)
    # ε = 0.1: 0.9·ln(4/3) + 0.1·ln 4 = 0.258914 + 0.138629 = 0.397543
    out = dpo_loss(pc, pr, rc, rr, beta=BETA, label_smoothing=0.1)
    assert out.losses.item() == pytest.approx(0.9 * math.log(4 / 3) + 0.1 * math.log(4), abs=1e-12)
    assert out.losses.item() == pytest.approx(0.397543, abs=1e-6)
    # dℓ/dπ_c = −β·[(1−ε)·σ(−βz) − ε·σ(βz)] = −0.1·(0.9/4 − 0.1·3/4) = −0.015
    out.losses.sum().backward()
    assert pc.grad.item() == pytest.approx(-0.015)


def test_ipo_hand_values():
    # 1/(2β) = 5. Chosen ratio +1, rejected −2 → z = 3.
    pc, pr, rc, rr = _pair(1.0, -2.0)
    # ε = 0: (3 − 5)² = 4
    assert ipo_loss(pc, pr, rc, rr, beta=BETA).losses.item() == pytest.approx(4.0)
    # ε = 0.25: 0.75·(3 − 5)² + 0.25·(3 + 5)² = 3 + 16 = 19
    #   = (z − (1 − 2ε)/(2β))² + 4ε(1−ε)/(4β²) = (3 − 2.5)² + 18.75 = 19
    assert ipo_loss(pc, pr, rc, rr, beta=BETA, label_smoothing=0.25).losses.item() == pytest.approx(19.0)


def test_ipo_length_normalised_hand_value():
    # ratios +6 over 2 tokens, −8 over 4 tokens → z = 3 − (−2) = 5 = 1/(2β) → loss 0
    pc, pr, rc, rr = _pair(6.0, -8.0)
    out = ipo_loss(
        pc, pr, rc, rr, beta=BETA, chosen_lengths=torch.tensor([2]), rejected_lengths=torch.tensor([4])
    )
    assert out.losses.item() == pytest.approx(0.0, abs=1e-12)
    # rewards stay unnormalised: 0.1·6, 0.1·(−8)
    assert out.chosen_rewards.item() == pytest.approx(0.6)
    assert out.rejected_rewards.item() == pytest.approx(-0.8)
    with pytest.raises(ValueError, match="both"):
        ipo_loss(pc, pr, rc, rr, chosen_lengths=torch.tensor([2]))


def test_robust_hand_values():
    pc, pr, rc, rr = _pair(5 * LN3, -5 * LN3)
    # ε = 0: plain DPO, ln(4/3)
    assert robust_dpo_loss(pc, pr, rc, rr, beta=BETA).losses.item() == pytest.approx(math.log(4 / 3))
    # ε = 0.1: (0.9·ln(4/3) − 0.1·ln 4) / 0.8 = (0.258914 − 0.138629) / 0.8 = 0.150356
    out = robust_dpo_loss(pc, pr, rc, rr, beta=BETA, label_smoothing=0.1)
    assert out.losses.item() == pytest.approx((0.9 * math.log(4 / 3) - 0.1 * math.log(4)) / 0.8, abs=1e-12)
    assert out.losses.item() == pytest.approx(0.150356, abs=1e-6)


def test_robust_is_unbiased_under_label_flips():
    # E over a label flipped w.p. ε of the robust loss = clean DPO loss −log σ(βz)
    pc, pr, rc, rr = _random_batch()
    eps = 0.2
    kept = robust_dpo_loss(pc, pr, rc, rr, beta=BETA, label_smoothing=eps).losses
    flipped = robust_dpo_loss(pr, pc, rr, rc, beta=BETA, label_smoothing=eps).losses
    clean = dpo_loss(pc, pr, rc, rr, beta=BETA).losses
    torch.testing.assert_close((1 - eps) * kept + eps * flipped, clean)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_per_pair_smoothing_tensor_matches_scalar_calls(name):
    pc, pr, rc, rr = _random_batch(b=3)
    eps = torch.tensor([0.0, 0.1, 0.3])
    batched = LOSSES[name](pc, pr, rc, rr, beta=BETA, label_smoothing=eps).losses
    for i in range(3):
        one = LOSSES[name](pc[i : i + 1], pr[i : i + 1], rc[i : i + 1], rr[i : i + 1], beta=BETA,
                           label_smoothing=float(eps[i]))
        torch.testing.assert_close(batched[i : i + 1], one.losses)


def test_registry_and_implicit_margin():
    assert set(LOSSES) == {"dpo", "ipo", "robust"}
    assert get_loss("robust") is robust_dpo_loss
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("kto")
    pc, pr, rc, rr = _pair(5 * LN3, -5 * LN3)
    assert implicit_margin(pc, pr, rc, rr, beta=BETA).item() == pytest.approx(LN3)


# --------------------------------------------------------------------------- weights & reduction


@pytest.mark.parametrize("mode", ["mean", "weight_normalized"])
def test_unit_weights_and_no_smoothing_reproduce_plain_dpo(mode):
    pc, pr, rc, rr = _random_batch()
    z = (pc - rc) - (pr - rr)
    plain = (-F.logsigmoid(BETA * z)).mean()
    out = dpo_loss(pc, pr, rc, rr, beta=BETA, label_smoothing=0.0)
    torch.testing.assert_close(reduce_losses(out.losses, torch.ones(6, dtype=torch.float64), mode=mode), plain)
    torch.testing.assert_close(reduce_losses(out.losses, 1.0, mode=mode), plain)
    torch.testing.assert_close(reduce_losses(out.losses, mode=mode), plain)


@pytest.mark.parametrize("mode", ["mean", "weight_normalized"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_zero_weight_pair_gets_exactly_zero_gradient(mode, name):
    pc, pr, rc, rr = _random_batch(b=4)
    out = LOSSES[name](pc, pr, rc, rr, beta=BETA, label_smoothing=0.1)
    weights = torch.tensor([0.0, 0.7, 1.0, 0.2], dtype=torch.float64)
    reduce_losses(out.losses, weights, mode=mode).backward()
    assert pc.grad[0].item() == 0.0 and pr.grad[0].item() == 0.0
    assert (pc.grad[1:] != 0).all() and (pr.grad[1:] != 0).all()


def test_mean_vs_weight_normalized_arithmetic():
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    w = torch.tensor([0.5, 1.0, 0.0, 0.5])
    # mean: (0.5 + 2 + 0 + 2) / 4 = 1.125 ; normalised: 4.5 / Σw = 4.5 / 2 = 2.25
    assert reduce_losses(losses, w, mode="mean").item() == pytest.approx(1.125)
    assert reduce_losses(losses, w, mode="weight_normalized").item() == pytest.approx(2.25)


def test_all_zero_weights_give_zero_with_grad_path():
    pc, pr, rc, rr = _random_batch(b=3)
    out = dpo_loss(pc, pr, rc, rr, beta=BETA)
    total = reduce_losses(out.losses, torch.zeros(3, dtype=torch.float64), mode="weight_normalized")
    assert total.item() == 0.0 and total.requires_grad
    total.backward()
    assert torch.equal(pc.grad, torch.zeros(3, dtype=torch.float64))
    assert reduce_losses(torch.empty(0), mode="mean").item() == 0.0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("weights", [[1.0, float("nan")], [1.0, -0.1], [float("inf"), 1.0]])
def test_bad_weights_raise(weights):
    with pytest.raises(ValueError, match="weights"):
        reduce_losses(torch.ones(2), torch.tensor(weights))


@pytest.mark.parametrize("eps", [0.5, -0.1, float("nan"), torch.tensor([0.1, 0.5])])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bad_smoothing_raises(name, eps):
    pc, pr, rc, rr = _random_batch(b=2)
    with pytest.raises(ValueError, match="label_smoothing"):
        LOSSES[name](pc, pr, rc, rr, label_smoothing=eps)


def test_bad_mode_shape_and_beta_raise():
    with pytest.raises(ValueError, match="reduction mode"):
        reduce_losses(torch.ones(2), mode="sum")
    pc, pr, rc, rr = _random_batch(b=2)
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(pc, pr, rc, rr[:1])
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(pc, pr, rc, rr, beta=0.0)


# --------------------------------------------------------------------------- TRL parity


def _trl_loss(loss_type: str, beta: float, eps: float, pc, pr, rc, rr, len_c, len_r):
    """Run TRL 1.16's DPOTrainer._compute_loss on given summed log-probs, with a stand-in trainer.

    TRL 1.16 computes the loss inline in ``_compute_loss`` (no standalone loss
    method), so we supply the attributes it reads and a fake model whose
    per-token log-probs sum to the given values. Reference log-probs go in as
    precomputed columns. Returns (mean loss, per-token log-prob leaf, metrics).
    """
    trl_trainer = pytest.importorskip("trl.trainer.dpo_trainer")
    b = pc.numel()
    lengths = torch.cat([len_c, len_r])
    t = 1 + int(lengths.max())  # one prompt token, then the completion
    completion_mask = torch.zeros(2 * b, t, dtype=torch.long)
    per_token = torch.zeros(2 * b, t - 1, dtype=torch.float64)
    summed = torch.cat([pc.detach(), pr.detach()])
    for i in range(2 * b):
        n = int(lengths[i])
        completion_mask[i, 1 : 1 + n] = 1
        per_token[i, :n] = summed[i] / n  # spread the sum evenly over the completion tokens
    per_token.requires_grad_(True)
    zeros = torch.zeros(2 * b, t - 1)

    def fake_model(**kwargs):
        return SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())

    stand_in = SimpleNamespace(
        model=SimpleNamespace(training=False),
        accelerator=SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x),
        aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
        loss_types=[loss_type], loss_weights=[1.0], beta=beta, label_smoothing=eps, use_weighting=False,
        _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1, args=SimpleNamespace(),
    )
    inputs = {
        "input_ids": torch.zeros(2 * b, t, dtype=torch.long),
        "attention_mask": torch.ones(2 * b, t, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }
    loss = trl_trainer.DPOTrainer._compute_loss(stand_in, fake_model, inputs, return_outputs=False)
    return loss, per_token, stand_in._metrics["eval"]


@pytest.mark.parametrize(
    ("trl_type", "ours", "eps", "beta"),
    [
        ("sigmoid", "dpo", 0.0, 0.1),
        ("sigmoid", "dpo", 0.0, 0.5),
        ("ipo", "ipo", 0.0, 0.1),
        ("ipo", "ipo", 0.0, 0.5),
        ("robust", "robust", 0.0, 0.1),
        ("robust", "robust", 0.2, 0.1),
        ("robust", "robust", 0.35, 0.5),
    ],
)
def test_parity_with_trl(trl_type, ours, eps, beta):
    pc, pr, rc, rr = _random_batch(b=5, seed=1)
    len_c = torch.tensor([3, 7, 1, 5, 9])
    len_r = torch.tensor([6, 2, 4, 8, 1])
    trl_loss, per_token, metrics = _trl_loss(trl_type, beta, eps, pc, pr, rc, rr, len_c, len_r)
    extra = {"chosen_lengths": len_c, "rejected_lengths": len_r} if ours == "ipo" else {}
    out = LOSSES[ours](pc, pr, rc, rr, beta=beta, label_smoothing=eps, **extra)
    ours_mean = reduce_losses(out.losses)
    torch.testing.assert_close(ours_mean, trl_loss.to(ours_mean.dtype), rtol=1e-9, atol=1e-12)
    # same gradient: dL/d(summed chosen log-prob) equals TRL's gradient on any chosen token
    ours_mean.backward()
    trl_loss.backward()
    torch.testing.assert_close(pc.grad, per_token.grad[:5, 0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(pr.grad, per_token.grad[5:, 0], rtol=1e-9, atol=1e-12)
    assert metrics["rewards/chosen"][0] == pytest.approx(out.chosen_rewards.mean().item())
    assert metrics["rewards/margins"][0] == pytest.approx((out.chosen_rewards - out.rejected_rewards).mean().item())


# --------------------------------------------------------------------------- SPA


def test_spa_loss_equals_dpo_with_smoothing_alpha_times_one_minus_p():
    pc, pr, rc, rr = _random_batch(b=6)
    alpha = 0.1
    p = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    z = (pc - rc) - (pr - rr)
    # SPA (Kim et al.): −(1 − α + αp)·log σ(βz) − (α − αp)·log σ(−βz)
    spa = -(1 - alpha + alpha * p) * F.logsigmoid(BETA * z) - (alpha - alpha * p) * F.logsigmoid(-BETA * z)
    ours = dpo_loss(pc, pr, rc, rr, beta=BETA, label_smoothing=alpha * (1 - p)).losses
    torch.testing.assert_close(ours, spa)


def test_self_refinement_warmup_gives_zeros():
    spa = SelfRefinement(alpha=0.1, warmup_fraction=0.2, percentile=10)
    margins = torch.arange(20.0)
    # warmup = first 20% of 10 steps = steps 0 and 1
    for step in (0, 1):
        assert torch.equal(spa.smoothing(margins, step=step, total_steps=10), torch.zeros(20))
    assert spa.smoothing(margins, step=2, total_steps=10).sum().item() > 0


def test_self_refinement_flags_exactly_the_bottom_decile():
    spa = SelfRefinement(alpha=0.1, warmup_fraction=0.0, percentile=10)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    margins = perm.float()  # values 0..19, shuffled
    # τ = 10th percentile of 0..19 (linear): position 0.1·19 = 1.9 → τ = 1.9; below it: 0 and 1
    eps = spa.smoothing(margins, step=0, total_steps=1)
    assert spa.last_threshold == pytest.approx(1.9)
    expected = torch.where(margins < 1.9, 0.1, 0.0)
    torch.testing.assert_close(eps, expected)
    assert int((eps > 0).sum()) == 2 and eps.dtype == torch.float32


def test_self_refinement_threshold_includes_current_batch():
    spa = SelfRefinement(alpha=0.1, warmup_fraction=0.5, percentile=10)
    spa.smoothing(torch.arange(10.0, 30.0), step=0, total_steps=2)  # warmup: only fills the window
    eps = spa.smoothing(torch.tensor([0.0, 1.0, 2.0, 3.0, 12.0]), step=1, total_steps=2)
    # pool = {0,1,2,3} ∪ {10..29} ∪ {12}: 25 values, position 0.1·24 = 2.4 → τ = 2 + 0.4·(3 − 2) = 2.4
    # (the window without the batch would give τ = 11.9 and also flag 3)
    assert spa.last_threshold == pytest.approx(2.4)
    torch.testing.assert_close(eps, torch.tensor([0.1, 0.1, 0.1, 0.0, 0.0]))


def test_self_refinement_ties_and_window():
    spa = SelfRefinement(window=5, warmup_fraction=0.0)
    # identical margins (policy = reference at step 0): nothing is strictly below τ
    assert spa.smoothing(torch.zeros(8), step=0, total_steps=4).sum().item() == 0.0
    # a batch larger than the window is judged in full; the window keeps the last 5
    assert len(spa.state_dict()["margins"]) == 5
    spa.smoothing(torch.arange(3.0), step=1, total_steps=4)
    assert spa.state_dict()["margins"] == [0.0, 0.0, 0.0, 1.0, 2.0]


def test_self_refinement_state_round_trip_reproduces_smoothing():
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(8, generator=g) for _ in range(10)]
    a = SelfRefinement(alpha=0.1, warmup_fraction=0.2, percentile=10, window=24)
    for step in range(4):
        a.smoothing(batches[step], step=step, total_steps=10)
    b = SelfRefinement(alpha=0.3, warmup_fraction=0.9, percentile=50, window=3)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))  # must survive JSON
    assert b.state_dict() == a.state_dict()
    flagged = 0
    for step in range(4, 10):
        ea = a.smoothing(batches[step], step=step, total_steps=10)
        eb = b.smoothing(batches[step], step=step, total_steps=10)
        assert torch.equal(ea, eb)
        flagged += int((ea > 0).sum())
    assert flagged > 0  # the comparison is not vacuous


def test_self_refinement_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        SelfRefinement(alpha=0.5)
    with pytest.raises(ValueError, match="finite"):
        SelfRefinement().smoothing(torch.tensor([0.0, float("nan")]), step=0, total_steps=1)
    with pytest.raises(ValueError, match="SelfRefinement state"):
        SelfRefinement().load_state_dict({"alpha": 0.1})


def test_recent_window_is_a_tenth_of_the_run_within_bounds():
    from frugalign.losses import recent_window

    assert recent_window(800, 8) == 80          # 100 steps of 8 pairs: the last 10 steps
    assert recent_window(40, 8) == 8            # never less than one batch
    assert recent_window(100_000, 8) == 1024    # long runs keep the old cap
    assert recent_window(10, 32) == 32


def test_whole_run_window_stops_flagging_as_margins_grow_recent_window_does_not():
    """Noisy margins that grow over training (the usual case): only a recent window keeps flagging."""
    from frugalign.losses import recent_window

    steps, batch = 100, 8
    g = torch.Generator().manual_seed(0)
    margins = [torch.randn(batch, generator=g) + 0.1 * s for s in range(steps)]   # noise sd 1, trend up
    flagged = {}
    for window in (1024, recent_window(steps * batch, batch)):
        refine = SelfRefinement(alpha=0.1, warmup_fraction=0.2, window=window)
        out = [refine.smoothing(m, step=s, total_steps=steps) for s, m in enumerate(margins)]
        flagged[window] = sum(int((o > 0).sum()) for o in out[steps // 2:])      # second half: 400 pairs
    assert flagged[1024] == 0
    # 80 margins (10 steps, trend 1.0 across them): about P(z < -1.8) ≈ 4% of pairs below the 10th percentile
    assert 0.01 * 400 <= flagged[80] <= 0.15 * 400

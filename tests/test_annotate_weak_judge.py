"""CW-PO weak judge: BT training reduces the loss and ranks a separable toy set; holdout,
calibration, bad labels, save/load; LoRA and full causal-LM backbones on a tiny model."""

from __future__ import annotations

import math
import random
import zlib

import pytest
import torch

from frugalign.annotate.base import sigmoid
from frugalign.annotate.weak_judge import (
    WeakJudge,
    WeakJudgeSettings,
    fit_temperature,
    labelled_examples,
    split_holdout,
    weak_judge_annotator,
)
from frugalign.errors import ConfigError, DataError
from frugalign.records import Annotation, PreferencePair


def toy_encoder(texts):
    """16-d embeddings: dimension 0 says good (+1) or bad (−1); the rest is text-seeded noise."""
    rows = []
    for t in texts:
        g = torch.Generator().manual_seed(zlib.crc32(t.encode()))
        v = torch.randn(16, generator=g) * 0.1
        v[0] = 1.0 if "good" in t else -1.0 if "bad" in t else 0.0
        rows.append(v)
    return torch.stack(rows)


def toy_set(n: int, seed: int = 0):
    rng = random.Random(seed)
    pairs, labels = [], []
    for k in range(n):
        good, bad = f"a good answer number {k}", f"a bad answer number {k}"
        flip = rng.random() < 0.5
        a, b = (bad, good) if flip else (good, bad)
        pairs.append(PreferencePair(id=str(k), prompt=f"question {k}", response_a=a, response_b=b))
        labels.append(Annotation(str(k), "B" if flip else "A", 0.0 if flip else 1.0, 1.0, "human"))
    return pairs, labels


def test_bt_training_reduces_loss_and_ranks_unseen_pairs():
    pairs, labels = toy_set(40)
    judge = WeakJudge(WeakJudgeSettings(epochs=40, lr=1e-2, holdout=0.25, patience=10), encoder=toy_encoder)
    report = judge.fit(pairs[:20], labels[:20])
    hist = report["history"]
    assert hist[0]["train_loss"] < math.log(2) + 0.3
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] and min(h["train_loss"] for h in hist) < 0.2
    assert report["train_pairs"] == 15 and report["holdout_pairs"] == 5 and "holdout_loss" in hist[0]
    out = weak_judge_annotator(judge).annotate(pairs[20:])
    assert [a.preferred for a in out] == [label.preferred for label in labels[20:]]
    for a in out:  # p = σ((r_A − r_B)/T), C = 2·(max(p, 1−p) − 0.5)
        p = sigmoid((a.details["r_a"] - a.details["r_b"]) / judge.temperature)
        assert a.p_a == pytest.approx(p) and a.confidence == pytest.approx(2 * (max(p, 1 - p) - 0.5))


def test_micro_batches_accumulate_to_the_full_batch_gradient():
    # One step of 16 pairs in one pass or in micro-batches of 3 (uneven on purpose) must give the same
    # gradient; only memory differs. (Weights after AdamW are not compared: Adam's normalisation blows
    # float-rounding differences in near-zero gradients up to ±lr.)
    pairs, labels = toy_set(16)
    grads = []
    for micro in (16, 3):
        judge = WeakJudge(WeakJudgeSettings(micro_batch=micro), encoder=toy_encoder)
        params = [p for p in judge.net.parameters() if p.requires_grad]
        judge._accumulate_step(list(zip(pairs, [a.preferred for a in labels])), torch.optim.SGD(params, lr=0.0))
        grads.append(torch.cat([p.grad.flatten() for p in params]))
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-7)
    with pytest.raises(ConfigError, match="micro_batch"):
        WeakJudgeSettings(micro_batch=0).validate()


def test_early_stopping_keeps_the_best_epoch():
    pairs, labels = toy_set(30)
    judge = WeakJudge(WeakJudgeSettings(epochs=200, lr=5e-2, holdout=0.3, patience=2), encoder=toy_encoder)
    judge.fit(pairs, labels)
    assert judge.stats["epochs_run"] < 200
    best = min(h["holdout_loss"] for h in judge.history)
    # improvements under 1e-6 do not count, so the kept epoch is within 1e-6 of the best
    assert judge.history[judge.stats["best_epoch"] - 1]["holdout_loss"] <= best + 1e-6


def test_temperature_calibration():
    # All margins right: without smoothing T -> the grid floor; with add-one smoothing
    # (pseudo-margins ±3) the optimum is σ(3/T) = 11/12 (10 + 1 agreeing of 12).
    assert fit_temperature(torch.full((10,), 3.0), smoothing=False) < 0.01
    t = fit_temperature(torch.full((10,), 3.0))
    assert 1 / (1 + math.exp(-3.0 / t)) == pytest.approx(11 / 12, abs=0.02)
    mixed = torch.tensor([3.0, -3.0] * 5)  # half wrong -> flatten to p ≈ 0.5 (T large)
    assert fit_temperature(mixed) > 10
    # Unsmoothed, the calibrated NLL is never worse than T = 1.
    m = torch.tensor([2.0, 1.0, -0.5, 4.0])
    t = fit_temperature(m, smoothing=False)
    nll = lambda T: float(-torch.nn.functional.logsigmoid(m / T).mean())  # noqa: E731
    assert nll(t) <= nll(1.0) + 1e-6


def test_label_problems_are_errors_or_counts():
    pairs, labels = toy_set(6)
    with pytest.raises(DataError, match="unknown pair ids: \\['nope'\\]"):
        labelled_examples(pairs, labels + [Annotation("nope", "A", 1.0, 1.0, "human")])
    tie = Annotation("0", "tie", 0.5, 0.0, "human")
    ex, counts = labelled_examples(pairs, [tie] + labels[1:])
    assert len(ex) == 5 and counts["label_ties_dropped"] == 1
    with pytest.raises(DataError, match="every label is a tie"):
        labelled_examples(pairs, [tie])
    with pytest.raises(ConfigError):
        WeakJudgeSettings(holdout=1.0).validate()


def test_holdout_split_is_by_prompt_and_skipped_when_too_small():
    pairs, labels = toy_set(10)
    shared = [PreferencePair(id=f"s{k}", prompt="same", response_a="x", response_b=f"y{k}", prompt_id="P")
              for k in range(3)]
    ex = [(p, "A") for p in pairs + shared]
    train, hold = split_holdout(ex, 0.3, seed=1)
    assert len(train) + len(hold) == 13
    in_hold = {p.id for p, _ in hold}
    assert {"s0", "s1", "s2"} <= in_hold or not ({"s0", "s1", "s2"} & in_hold)
    assert split_holdout(ex[:1], 0.2, seed=0) == (ex[:1], [])


def test_save_and_load_roundtrip(tmp_path):
    pairs, labels = toy_set(12)
    judge = WeakJudge(WeakJudgeSettings(epochs=5, lr=1e-2), encoder=toy_encoder)
    judge.fit(pairs, labels)
    judge.save(tmp_path / "judge.pt")
    again = WeakJudge.load(tmp_path / "judge.pt", encoder=toy_encoder)
    a = weak_judge_annotator(judge).annotate(pairs)
    b = weak_judge_annotator(again).annotate(pairs)
    assert [x.p_a for x in a] == pytest.approx([x.p_a for x in b]) and again.temperature == judge.temperature
    with pytest.raises(DataError):
        WeakJudge.load(tmp_path / "missing.pt", encoder=toy_encoder)


@pytest.mark.parametrize("lora", [True, False])
def test_causal_lm_backbone_learns_the_toy_set(tiny_tokenizer, lora):
    from conftest import build_model

    model = build_model(tiny_tokenizer, seed=5)  # a fresh copy: training changes the backbone
    pairs = [PreferencePair(id=str(k), prompt=f"Write {k}", response_a="happy good" if k % 2 else "sad bad",
                            response_b="sad bad" if k % 2 else "happy good") for k in range(8)]
    labels = [Annotation(str(k), "A" if k % 2 else "B", 1.0, 1.0, "human") for k in range(8)]
    settings = WeakJudgeSettings(backbone="tiny", lora=lora, epochs=8, lr=5e-3,
                                 holdout=0.0, batch_size=8)
    judge = WeakJudge(settings, model=model, tokenizer=tiny_tokenizer)
    trainable = sum(p.numel() for p in judge.net.parameters() if p.requires_grad)
    total = sum(p.numel() for p in judge.net.parameters())
    assert (trainable < total / 2) if lora else (trainable == total)
    judge.fit(pairs, labels)
    assert judge.history[-1]["train_loss"] < judge.history[0]["train_loss"]
    out = weak_judge_annotator(judge).annotate(pairs)
    assert [a.preferred for a in out] == [label.preferred for label in labels]


@pytest.mark.integration
def test_minilm_encoder_loads_from_the_package():
    from frugalign.annotate.encoder import minilm_encoder

    emb = minilm_encoder()(["a cat", "a dog"])
    assert emb.shape == (2, 384) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-4)

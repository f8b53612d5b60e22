"""LoRA on the upper layers: the frozen trunk's output is cached and reused exactly."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import build_model

from frugalign.data import write_records
from frugalign.errors import ConfigError
from frugalign.models import lora_targets
from frugalign.packing import PairLogProbs, build_examples, cache_trunks, collate, first_trainable_layer, trunk_states
from frugalign.records import TrainingRow
from frugalign.train import TrainConfig, prepare_model, train

ROWS = [TrainingRow("Write a poem about the sea.", "Waves and salt.", "I cannot help with that request."),
        TrainingRow("Give me a list.", "* first item\n* second item", "No."),
        TrainingRow("Say hi.", "The quick brown fox.", "def add(a, b):\n    return a + b")]


def lora_model(tokenizer, top: int = 1, layers: int = 3):
    cfg = TrainConfig(data="x", output_dir="y", finetune="lora", lora_r=4, lora_layers=top, gradient_checkpointing=False)
    model = prepare_model(cfg, build_model(tokenizer, layers=layers))
    with torch.no_grad():  # a non-zero adapter, so the upper layers differ from the base
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model


def test_lora_targets_only_the_top_layers(tiny_tokenizer):
    model = build_model(tiny_tokenizer, layers=3)
    names = lora_targets(model, "all-linear", 1)
    assert names and all(".layers.2." in n for n in names) and len(names) == 7  # q k v o gate up down
    two = lora_targets(model, "all-linear", 2)
    assert len(two) == 14 and lora_targets(model, "q_proj,v_proj", 2) == [n for n in two if n.endswith(("q_proj", "v_proj"))]
    assert lora_targets(model, "all-linear", 0) == "all-linear"
    with pytest.raises(ConfigError, match="matches no linear layer"):
        lora_targets(model, "nothing_here", 1)


def test_first_trainable_layer(tiny_tokenizer):
    assert first_trainable_layer(lora_model(tiny_tokenizer, top=1)) == 2
    assert first_trainable_layer(lora_model(tiny_tokenizer, top=3)) == 0
    full = build_model(tiny_tokenizer, layers=3)  # everything trains, embeddings included: nothing to cache
    assert first_trainable_layer(full) == 0


def test_forward_from_the_cached_trunk_equals_the_full_forward(tiny_tokenizer):
    model = lora_model(tiny_tokenizer, top=1)
    examples, _, _ = build_examples(ROWS, tiny_tokenizer, model)
    pad = tiny_tokenizer.pad_token_id
    with torch.no_grad():
        full, _ = PairLogProbs(model, chunk=7, recompute=False)(collate(examples, pad))
    # cache in two differently padded groups, then reuse in one batch
    used = cache_trunks(model, examples[:1], 2, pad, "cpu", 1e9, 0.0)
    used = cache_trunks(model, examples[1:], 2, pad, "cpu", 1e9, used)
    assert all(e.trunk is not None and e.trunk.shape == (len(e.ids), 32) for e in examples) and used > 0
    batch = collate(examples, pad)
    assert batch["trunk"].shape[:2] == batch["input_ids"].shape
    with torch.no_grad():
        cached, _ = PairLogProbs(model, chunk=7, recompute=False, trunk_layer=2)(batch)
    assert torch.allclose(cached, full, atol=1e-5)
    # the captured states are the input of layer 2, not of any other layer
    direct = trunk_states(model, collate(examples, pad), 1)
    assert not torch.allclose(direct[0, :len(examples[0].ids)], examples[0].trunk)


def test_trunk_cache_respects_its_memory_budget(tiny_tokenizer):
    model = lora_model(tiny_tokenizer, top=1)
    examples, _, _ = build_examples(ROWS, tiny_tokenizer, model)
    assert cache_trunks(model, examples, 2, 0, "cpu", budget_bytes=10, used_bytes=0.0) == 0.0
    assert all(e.trunk is None for e in examples)
    assert "trunk" not in collate(examples, 0)  # no cached trunk: the plain forward runs


def test_training_with_the_trunk_cache_matches_training_without(tiny_tokenizer, tmp_path):
    rows = [{"id": str(i), "prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected}
            for i, r in enumerate(ROWS * 2)]
    write_records(tmp_path / "d.jsonl", rows)
    runs = {}
    for gb in (0.0, 1.0):
        cfg = TrainConfig(data=str(tmp_path / "d.jsonl"), output_dir=str(tmp_path / f"gb{gb}"), finetune="lora",
                          lora_r=4, lora_layers=1, trunk_cache_gb=gb, lr=5e-2, batch_size=3, micro_batch_size=3,
                          epochs=3, warmup_ratio=0.0, precision="float32", progress=False, tensorboard=False,
                          threads=1, gradient_checkpointing=False)
        summary = train(cfg, build_model(tiny_tokenizer, layers=3), tiny_tokenizer)
        runs[gb] = [json.loads(ln) for ln in open(tmp_path / f"gb{gb}" / "metrics.jsonl")]
        assert summary["trunk_layer"] == (2 if gb else 0)
    assert len(runs[0.0]) == 6 and runs[1.0][-1]["loss"] < runs[1.0][0]["loss"]
    for a, b in zip(runs[0.0], runs[1.0]):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5) and b["margin"] == pytest.approx(a["margin"], abs=1e-4)

"""Two CPU processes (gloo, ``accelerate launch``) give the same losses as one at the same global batch."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import build_model, launch_two_processes

from frugalign.data import write_records
from frugalign.train import TrainConfig, train

pytestmark = pytest.mark.slow  # two training processes

PROMPTS = ["Write a poem about the sea.", "What is the capital of France?", "Give me a list.", "Say hi.",
           "Tell me about Berlin.", "Write a function.", "Name a colour.", "Count to three."]
RESPONSES = ["Paris is the capital of France.", "I cannot help with that request.", "Waves!", "Blue sea.",
             "* first item\n* second item", "The quick brown fox."]


def test_two_processes_match_one_process(tiny_tokenizer, tmp_path):
    model_dir = tmp_path / "model"
    build_model(tiny_tokenizer).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    rows = [{"id": str(i), "prompt": p, "chosen": RESPONSES[i % 6], "rejected": RESPONSES[(i + 1) % 6],
             "weight": [1.0, 0.3, 0.0, 0.8][i % 4]} for i, p in enumerate(PROMPTS)]
    # 7 pairs, batch 4: the last step's global batch (3 pairs) leaves one process a stand-in row.
    write_records(tmp_path / "d.jsonl", rows[:7])
    settings = dict(data=str(tmp_path / "d.jsonl"), model=str(model_dir), batch_size=4,
                    max_steps=4, lr=5e-3, warmup_ratio=0.0, reduction="weight_normalized",
                    self_refine_alpha=0.1, self_refine_warmup=0.25, progress=False, tensorboard=False,
                    precision="float32")

    # one process, 4 pairs per forward. (SPA's margin window is updated once per global
    # micro-step, micro_batch_size × processes pairs, so that product is kept equal.)
    train(TrainConfig(output_dir=str(tmp_path / "one"), threads=1, micro_batch_size=4, **settings))

    # two processes × 2 pairs: the same global batch of 4
    proc = launch_two_processes(["-m", "frugalign", "train", f"output_dir={tmp_path / 'two'}", "micro_batch_size=2"]
                                + [f"{k}={v}" for k, v in settings.items()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    one, two = ([json.loads(ln) for ln in open(tmp_path / d / "metrics.jsonl")] for d in ("one", "two"))
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        assert b["pairs"] == a["pairs"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6)
        for key in ("reward_accuracy", "weight", "smoothing", "flagged"):
            assert b[key] == pytest.approx(a[key], abs=1e-6)

    from safetensors.torch import load_file

    w1, w2 = (load_file(str(tmp_path / d / "final" / "model.safetensors")) for d in ("one", "two"))
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)

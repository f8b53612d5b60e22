"""The training loop on a tiny random Llama: packed forward, learning, resume, weights, bad input."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from conftest import build_model

from frugalign.cli import main as cli_main
from frugalign.data import write_records
from frugalign.logprobs import LogProbScorer, ScoreItem
from frugalign.losses import dpo_loss, reduce_losses
from frugalign.packing import PairLogProbs, build_examples, collate
from frugalign.records import TrainingRow
from frugalign.train import TrainConfig, compute_gradients, setup, train

PROMPTS = ["Write a poem about the sea.", "What is the capital of France?", "Give me a list.",
           "Say something nice.", "Tell me about Berlin.", "Write a function.", "Name a colour.", "Count to three."]
GOOD, BAD = "Paris is the capital of France.", "I cannot help with that request."
MULTI_TURN = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a city."},
              {"role": "assistant", "content": "Berlin."}, {"role": "user", "content": "And the capital of France?"}]


def toy_rows(n: int = 8, **extra) -> list[dict]:
    """A separable toy set: the chosen answer is always GOOD, the rejected always BAD."""
    return [{"id": str(i), "prompt": PROMPTS[i % len(PROMPTS)], "chosen": GOOD, "rejected": BAD, **extra}
            for i in range(n)]


def config(tmp_path, rows, name="run", **kw) -> TrainConfig:
    data = tmp_path / f"{name}.jsonl"
    write_records(data, rows)
    base = dict(data=str(data), output_dir=str(tmp_path / name), lr=5e-3, batch_size=4, micro_batch_size=2,
                max_steps=6, warmup_ratio=0.0, progress=False, tensorboard=False, threads=1, precision="float32")
    return TrainConfig(**{**base, **kw})


def metrics(cfg: TrainConfig) -> list[dict]:
    return [json.loads(line) for line in open(f"{cfg.output_dir}/metrics.jsonl")]


def test_packed_pair_forward_equals_the_scorer(tiny_tokenizer):
    model = build_model(tiny_tokenizer)
    rows = [TrainingRow("Write a poem about the sea.", "Paris.", "Paris is the capital of France."),
            TrainingRow([{"role": "user", "content": "Give me a list."}], "* first item\n* second item", "No.",
                        system="Be brief."),
            TrainingRow("Say hi.", "The quick brown fox.", "def add(a, b):\n    return a + b"),
            TrainingRow(MULTI_TURN, "Paris is the capital of France.", "happy sad")]  # only the last turn scores
    examples, kept, _ = build_examples(rows, tiny_tokenizer, model)
    assert kept == [0, 1, 2, 3] and all(e.prefix > 0 for e in examples)  # the prompt is shared
    with torch.no_grad():
        logps, _ = PairLogProbs(model, chunk=5, recompute=False)(collate(examples, tiny_tokenizer.pad_token_id))
    items = [ScoreItem(r.prompt, side, r.system) for r in rows for side in (r.chosen, r.rejected)]
    expected = [s.logprob for s in LogProbScorer(model, tiny_tokenizer, progress=False).score(items)]
    assert torch.allclose(logps.flatten(), torch.tensor(expected), atol=1e-4)


def test_training_lowers_loss_raises_accuracy_and_saves_a_plain_model(tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = config(tmp_path, toy_rows(), max_steps=8, tensorboard=True)
    summary = train(cfg, build_model(tiny_tokenizer), tiny_tokenizer)
    rows = metrics(cfg)
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)  # policy = reference at step 0
    assert rows[-1]["loss"] < 0.3 and rows[-1]["reward_accuracy"] == 1.0 and rows[-1]["margin"] > 0
    assert rows[0]["reduction"] == "mean" and rows[0]["pairs"] == 4 and rows[0]["weight"] == 1.0
    assert list((tmp_path / "run" / "tensorboard").glob("events.*"))
    stored = [json.loads(line) for line in open(tmp_path / "run" / "train_data.jsonl")]
    assert all(math.isfinite(r["ref_chosen_logps"]) and math.isfinite(r["ref_rejected_logps"]) for r in stored)
    model = AutoModelForCausalLM.from_pretrained(summary["final_model"])  # plain transformers, safetensors
    assert (tmp_path / "run" / "final" / "model.safetensors").exists() and model.config.vocab_size == len(tiny_tokenizer)


def test_resume_from_a_mid_run_checkpoint_reproduces_the_loss_curve(tiny_tokenizer, tmp_path):
    rows = toy_rows(6, weight=0.5)  # 6 pairs / batch 4: the data order crosses an epoch boundary
    kw = dict(max_steps=5, self_refine_alpha=0.1, self_refine_warmup=0.2, lr_schedule="cosine", warmup_ratio=0.2)
    straight = config(tmp_path, rows, "straight", **kw)
    train(straight, build_model(tiny_tokenizer), tiny_tokenizer)
    split = config(tmp_path, rows, "split", **kw)
    first = train(dataclasses.replace(split, stop_after=2), build_model(tiny_tokenizer), tiny_tokenizer)
    assert first["stopped_at"] == 2 and (tmp_path / "split" / "checkpoints" / "step-000002" / "state.json").exists()
    train(split, build_model(tiny_tokenizer, seed=5), tiny_tokenizer)  # different init: the checkpoint wins
    a, b = metrics(straight), metrics(split)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5]
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-6, abs=1e-7)
        assert rb["smoothing"] == pytest.approx(ra["smoothing"], abs=1e-7)


def _grads(run) -> torch.Tensor:
    g = torch.cat([p.grad.flatten() for p in run.policy.parameters() if p.grad is not None])
    run.optimizer.zero_grad(set_to_none=True)
    return g


@pytest.mark.parametrize("reduction", ["mean", "weight_normalized"])
def test_weight_zero_pair_contributes_no_gradient_in_the_real_step(tiny_tokenizer, tmp_path, reduction):
    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in [
        (PROMPTS[0], GOOD, BAD), (PROMPTS[1], "The quick brown fox.", "Waves!"), (PROMPTS[2], "Hello there.", BAD)]]
    run = setup(config(tmp_path, rows, reduction=reduction), build_model(tiny_tokenizer), tiny_tokenizer)
    a, b, c = run.examples
    compute_gradients(run, [a, dataclasses.replace(b, weight=0.0)], 0)
    with_b = _grads(run)
    compute_gradients(run, [a, dataclasses.replace(c, weight=0.0)], 0)
    with_c = _grads(run)
    compute_gradients(run, [a, dataclasses.replace(c, weight=1.0)], 0)
    assert torch.equal(with_b, with_c) and with_b.abs().sum() > 0
    assert not torch.allclose(_grads(run), with_c)


@pytest.mark.parametrize("reduction", ["mean", "weight_normalized"])
def test_step_loss_is_reduce_losses_and_independent_of_accumulation(tiny_tokenizer, tmp_path, reduction):
    rows = [{**r, "weight": w} for r, w in zip(toy_rows(4), [0.2, 1.0, 0.0, 0.7])]
    for i, r in enumerate(rows):
        r["chosen"] = r["chosen"][: 10 + 5 * i]  # different lengths: padding inside a micro-batch
    one = setup(config(tmp_path, rows, "one", reduction=reduction, micro_batch_size=4), build_model(tiny_tokenizer), tiny_tokenizer)
    m1 = compute_gradients(one, one.examples, 0)
    g1 = _grads(one)
    acc = setup(config(tmp_path, rows, "acc", reduction=reduction, micro_batch_size=1), build_model(tiny_tokenizer), tiny_tokenizer)
    m4 = compute_gradients(acc, acc.examples, 0)
    assert m4["loss"] == pytest.approx(m1["loss"], rel=1e-5) and torch.allclose(_grads(acc), g1, atol=1e-6)
    # the step's loss is exactly reduce_losses over the global batch
    with torch.no_grad():
        logps, _ = one.scorer(collate(one.examples, tiny_tokenizer.pad_token_id))
    ref = torch.tensor([e.ref for e in one.examples])
    losses = dpo_loss(logps[:, 0], logps[:, 1], ref[:, 0], ref[:, 1], beta=0.1).losses
    expected = reduce_losses(losses, torch.tensor([0.2, 1.0, 0.0, 0.7]), reduction)
    assert m1["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_lora_bf16_with_adapter_reference_and_decoupled_noise_detection(tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = config(tmp_path, toy_rows(), finetune="lora", reference="adapter", lora_r=4, lr=5e-2, precision="bf16",
                 self_refine_alpha=0.1, self_refine_warmup=0.5, noise_lambda=0.5, max_steps=4)
    summary = train(cfg, build_model(tiny_tokenizer), tiny_tokenizer)
    rows = metrics(cfg)
    assert all(r["smoothing"] == 0 for r in rows[:2])            # α = 0 during warm-up (50% of 4 steps)
    assert all("tau" in r and "flagged" in r for r in rows) and rows[-1]["reward_accuracy"] == 1.0
    assert (tmp_path / "run" / "final" / "adapter" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(summary["final_model"])
    assert not any("lora" in k for k in merged.state_dict())


def _error_lines(capsys) -> list[str]:
    """stderr lines from the CLI, without progress bars (one error = one line)."""
    return [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error" in ln]


def _saved_tiny_model(tokenizer, path):
    build_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("bad,needle", [
    ({"rejected": None}, "field 'rejected': missing"),
    ({"weight": -1.0}, "field 'weight': must be >= 0"),
    ({"weight": float("nan")}, "field 'weight': must be finite"),
    ({"label_smoothing": 0.5}, "field 'label_smoothing': must be < 0.5"),
    ({"chosen": BAD}, "no trainable pairs left after filtering"),
])
def test_bad_input_is_a_one_line_error_and_writes_nothing(tiny_tokenizer, tmp_path, capsys, bad, needle):
    model_dir = _saved_tiny_model(tiny_tokenizer, tmp_path / "model")
    rows = [{k: v for k, v in {**r, **bad}.items() if v is not None} for r in toy_rows(2)]
    if needle.startswith("no trainable"):
        rows = [{**r, **bad} for r in toy_rows(2)]
    data = tmp_path / "bad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json.dumps writes NaN as is
    capsys.readouterr()
    rc = cli_main(["train", f"data={data}", f"output_dir={tmp_path / 'out'}", f"model={model_dir}", "progress=false"])
    err = _error_lines(capsys)
    assert rc == 2 and len(err) == 1 and needle in err[0]
    assert not (tmp_path / "out").exists()


def test_resume_refuses_a_different_config(tiny_tokenizer, tmp_path, capsys):
    model_dir = _saved_tiny_model(tiny_tokenizer, tmp_path / "model")
    data = tmp_path / "d.jsonl"
    write_records(data, toy_rows(4))
    args = ["train", f"data={data}", f"output_dir={tmp_path / 'out'}", f"model={model_dir}", "progress=false",
            "batch_size=2", "micro_batch_size=2", "max_steps=2", "stop_after=1", "tensorboard=false"]
    assert cli_main(args) == 0
    capsys.readouterr()
    assert cli_main(args[:-1] + ["beta=0.2"]) == 2
    err = _error_lines(capsys)
    assert len(err) == 1 and "different config" in err[0] and "beta" in err[0]
    assert cli_main(args[:-2]) == 0  # same config: resumes and finishes
    assert (tmp_path / "out" / "final" / "config.json").exists()
    assert not list((tmp_path / "out" / "checkpoints").glob(".*.tmp"))

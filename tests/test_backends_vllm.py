"""The vLLM adapter, driven by a fake engine (vLLM needs a CUDA GPU)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from frugalign.backends import vllm_backend
from frugalign.backends.vllm_backend import VLLMBackend, check_vllm_usable
from frugalign.errors import ConfigError, ContextOverflowError
from frugalign.generate import GenerationRequest, GenerationSettings, row_seed
from frugalign.logprobs import LogProbScorer


class FakeEngine:
    """Mimics ``vllm.LLM.generate``: token-id prompts in, RequestOutput-like objects out.

    Generation: sample ``j`` of a request is ``[last prompt id, j, <eot>, 99]`` so the
    adapter's stop handling and sample order are visible. Scoring: real log-probs of a
    tiny model, in vLLM's ``prompt_logprobs`` layout (None first, then {token: Logprob}).
    """

    def __init__(self, model=None, eot=None, max_model_len=256):
        self.model, self.eot, self.calls = model, eot, []
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=max_model_len))

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        plist = params if isinstance(params, list) else [params] * len(prompts)
        outs = []
        for prompt, p in zip(prompts, plist):
            ids = prompt["prompt_token_ids"]
            if getattr(p, "prompt_logprobs", None) is not None:
                outs.append(SimpleNamespace(prompt_logprobs=self._prompt_logprobs(ids), outputs=[]))
            else:
                comps = [SimpleNamespace(token_ids=[ids[-1], 10 + j, self.eot, 99]) for j in range(p.n)]
                outs.append(SimpleNamespace(outputs=comps, prompt_logprobs=None))
        return outs

    def _prompt_logprobs(self, ids):
        with torch.no_grad():
            lp = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), -1)
        return [None] + [{ids[t]: SimpleNamespace(logprob=float(lp[t - 1, ids[t]]), rank=1)}
                         for t in range(1, len(ids))]


def _backend(tok, model=None):
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    engine = FakeEngine(model, eot)
    return VLLMBackend(engine, tok, params_factory=SimpleNamespace), engine


def test_generate_adapter(tiny_tokenizer):
    backend, engine = _backend(tiny_tokenizer)
    reqs = [GenerationRequest("Paris is"), GenerationRequest("Say hi.", system="Be brief.", key=7)]
    out = backend.generate(reqs, GenerationSettings(n=2, temperature=0.8, top_p=0.9, max_new_tokens=5, seed=3))
    prompts, params = engine.calls[0]
    assert len(out) == 2 and all(len(x) == 2 for x in out)
    # decoded up to the end-of-turn token; token 99 after it never shows
    for (prompt, comps) in zip(prompts, out):
        for j, text in enumerate(comps):
            assert text == tiny_tokenizer.decode([prompt["prompt_token_ids"][-1], 10 + j],
                                                 skip_special_tokens=True).strip()
    assert [p.seed for p in params] == [row_seed(3, 0, 0), row_seed(3, 7, 0)]   # per-request seeds
    assert params[0].max_tokens == 5 and params[0].top_p == 0.9 and params[0].n == 2
    assert tiny_tokenizer.convert_tokens_to_ids("<|im_end|>") in params[0].stop_token_ids
    rendered = tiny_tokenizer.decode(prompts[1]["prompt_token_ids"])
    assert "Be brief." in rendered and rendered.endswith("<|im_start|>assistant\n")


def test_greedy_ignores_top_p(tiny_tokenizer):
    backend, engine = _backend(tiny_tokenizer)
    backend.generate([GenerationRequest("x")], GenerationSettings(n=1, temperature=0.0, top_p=0.5))
    assert engine.calls[0][1][0].top_p == 1.0 and engine.calls[0][1][0].temperature == 0.0


def test_score_matches_logprob_scorer(tiny_model, tiny_tokenizer):
    backend, _ = _backend(tiny_tokenizer, tiny_model)
    items = [("Paris is", "the capital of France."), ("Write a poem.", "The sea, the sea."),
             ("Paris is", "a city.")]
    got = backend.score(items, per_token=True)
    ref = LogProbScorer(tiny_model, tiny_tokenizer, progress=False).score(items, per_token=True)
    for g, r in zip(got, ref):
        assert g.n_tokens == r.n_tokens
        assert g.logprob == pytest.approx(r.logprob, abs=1e-3)
        assert g.token_logprobs == pytest.approx(r.token_logprobs, abs=1e-3)
    assert backend.score([]) == []


def test_bad_input(tiny_tokenizer):
    backend, _ = _backend(tiny_tokenizer)
    with pytest.raises(ConfigError, match="no prompts"):
        backend.generate([], GenerationSettings())
    with pytest.raises(ContextOverflowError, match="context of 256"):
        backend.generate([GenerationRequest("word " * 300)], GenerationSettings())


def test_missing_vllm_and_missing_gpu(monkeypatch):
    import frugalign.backends as backends

    monkeypatch.setattr(backends, "vllm_available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install frugalign\[vllm\]"):
        check_vllm_usable()
    with pytest.raises(ConfigError, match=r"pip install frugalign\[vllm\]"):
        VLLMBackend.from_model("smollm2-135m-instruct")
    monkeypatch.setattr(backends, "vllm_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(backends, "vllm_is_cpu_build", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU.*scripts/setup-vllm.sh"):
        check_vllm_usable()
    monkeypatch.setattr(backends, "vllm_is_cpu_build", lambda: True)
    check_vllm_usable()  # vLLM's CPU build needs no GPU
    assert "\n" not in vllm_backend.INSTALL_HINT


def test_score_command_with_vllm_backend(tmp_path, tiny_dir, monkeypatch, capsys):
    """``frugalign score backend=vllm`` writes what the torch scorer writes (fake engine on the same weights)."""
    import json

    from frugalign import backends
    from frugalign.cli import main
    from frugalign.data import read_records
    from frugalign.models import load_model

    model, tok = load_model(tiny_dir)
    monkeypatch.setattr(backends, "vllm_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    loaded = []

    def fake_from_model(spec, **kw):
        loaded.append(spec)
        return VLLMBackend(FakeEngine(model, tok.convert_tokens_to_ids("<|im_end|>")), tok,
                           params_factory=SimpleNamespace)

    monkeypatch.setattr(VLLMBackend, "from_model", staticmethod(fake_from_model))
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"id": "p", "prompt": "Paris is", "responses": ["the capital.", "a city"]}) + "\n")
    common = [f"input={pool}", f"model={tiny_dir}", "progress=false", "dtype=float32"]
    assert main(["score", f"output={tmp_path / 'v.jsonl'}", "backend=vllm", f"ref_model={tiny_dir}"] + common) == 0
    assert loaded == [tiny_dir, tiny_dir] and "with vllm" in capsys.readouterr().out
    assert main(["score", f"output={tmp_path / 't.jsonl'}"] + common) == 0
    v = [r for _, r in read_records(tmp_path / "v.jsonl")]
    t = [r for _, r in read_records(tmp_path / "t.jsonl")]
    assert [r["n_tokens"] for r in v] == [r["n_tokens"] for r in t]
    assert [r["logprob"] for r in v] == pytest.approx([r["logprob"] for r in t], abs=1e-3)
    assert all(r["ratio"] == pytest.approx(0.0) for r in v)


def test_score_command_vllm_missing_is_one_line(tmp_path, tiny_dir, monkeypatch, capsys):
    import json

    from frugalign import backends
    from frugalign.cli import main

    monkeypatch.setattr(backends, "vllm_available", lambda: False)
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"id": "p", "prompt": "Paris is", "responses": ["x"]}) + "\n")
    assert main(["score", f"input={pool}", f"output={tmp_path / 'o.jsonl'}", f"model={tiny_dir}",
                 "backend=vllm"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install frugalign[vllm]" in err and "\n" not in err and not (tmp_path / "o.jsonl").exists()
    assert main(["score", f"input={pool}", f"output={tmp_path / 'o.jsonl'}", "backend=onnx"]) == 2
    assert "unknown scoring backend 'onnx'" in capsys.readouterr().err


def test_auto_falls_back_to_fast_when_the_vllm_engine_cannot_start(monkeypatch, tiny_model, tiny_tokenizer, capsys):
    """Only `auto` falls back; an explicit backend=vllm reports the engine's one-line error."""
    import frugalign.backends as backends
    from frugalign.backends import open_backend
    from frugalign.backends.fast_cpu import FastBackend
    from frugalign.errors import ModelLoadError

    def cannot_start(*a, **k):
        raise ModelLoadError("vLLM could not start an engine for 'x': RuntimeError: no (full error: /tmp/log)")

    monkeypatch.setattr(backends, "vllm_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(VLLMBackend, "from_model", cannot_start)
    loads = []
    load = lambda: loads.append(1) or (tiny_model, tiny_tokenizer)  # noqa: E731
    assert isinstance(open_backend("auto", load, model_spec="x"), FastBackend) and loads == [1]
    assert "backend=auto: vLLM could not start" in capsys.readouterr().err
    with pytest.raises(ModelLoadError, match="vLLM could not start"):
        open_backend("vllm", load, model_spec="x")
    assert loads == [1]  # nothing loaded for an explicit vllm that failed

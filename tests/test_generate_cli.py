"""``frugalign generate`` with backend choice; bad input exits 2 with one line."""

from __future__ import annotations

import json

import pytest

from frugalign.cli import main


@pytest.fixture()
def tiny_dir(tmp_path, tiny_model, tiny_tokenizer):
    tiny_model.save_pretrained(tmp_path / "tiny")
    tiny_tokenizer.save_pretrained(tmp_path / "tiny")
    return str(tmp_path / "tiny")


@pytest.fixture()
def prompts(tmp_path):
    p = tmp_path / "prompts.jsonl"
    p.write_text("".join(json.dumps({"id": str(i), "prompt": t}) + "\n"
                         for i, t in enumerate(["Say hi.", "Write a poem.", "Paris is"])))
    return p


def _pool(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_greedy_same_for_every_torch_backend(tmp_path, tiny_dir, prompts):
    outs = {}
    for backend in ("transformers", "fast", "auto"):
        out = tmp_path / f"{backend}.jsonl"
        assert main(["generate", f"input={prompts}", f"output={out}", f"model={tiny_dir}", "n=1",
                     "temperature=0", "max_new_tokens=8", f"backend={backend}", "threads=1",
                     "progress=false"]) == 0
        outs[backend] = [r["responses"] for r in _pool(out)]
    assert outs["fast"] == outs["transformers"] == outs["auto"]


def test_fast_sampling_deterministic_and_batch_independent(tmp_path, tiny_dir, prompts):
    pools = []
    for bs in (2, 16):
        out = tmp_path / f"p{bs}.jsonl"
        assert main(["generate", f"input={prompts}", f"output={out}", f"model={tiny_dir}", "n=3",
                     "max_new_tokens=6", "backend=fast", f"batch_size={bs}", "progress=false"]) == 0
        pools.append(_pool(out))
    assert pools[0] == pools[1] and all(len(r["responses"]) == 3 for r in pools[0])


@pytest.mark.parametrize("args,msg", [
    (["backend=nope"], "unknown generation backend 'nope'"),
    (["backend=vllm"], "vllm"),                    # not installed here, or no GPU: one line either way
    (["max_new_tokens=400"], "exceed the model context of 256"),
    (["threads=-1"], "threads must be >= 0"),
])
def test_bad_input_exit_2_one_line(tmp_path, tiny_dir, prompts, capsys, args, msg):
    out = tmp_path / "o.jsonl"
    code = main(["generate", f"input={prompts}", f"output={out}", f"model={tiny_dir}", "progress=false"] + args)
    # The last stderr line is the error (transformers may print a loading bar before it).
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and msg in last and last.startswith("frugalign generate: error:")
    assert not out.exists()


def test_vllm_missing_names_the_extra(tmp_path, tiny_dir, prompts, capsys, monkeypatch):
    import frugalign.backends as backends

    monkeypatch.setattr(backends, "vllm_available", lambda: False)
    assert main(["generate", f"input={prompts}", f"output={tmp_path / 'o.jsonl'}", f"model={tiny_dir}",
                 "backend=vllm"]) == 2
    assert "pip install frugalign[vllm]" in capsys.readouterr().err


def test_empty_prompt_file_exit_2(tmp_path, tiny_dir, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["generate", f"input={empty}", f"output={tmp_path / 'o.jsonl'}", f"model={tiny_dir}"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

"""``frugalign annotate`` and ``frugalign eval rewardbench`` end to end on tiny saved models,
and the bad-input paths (one-line errors, exit code 2)."""

from __future__ import annotations

import json

import pytest

from frugalign.cli import main


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Two tiny models on disk: 'strong' (ChatML template) and 'weak' (no template, own tokenizer)."""
    from conftest import build_model, build_tokenizer

    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, seed, template in (("strong", 0, True), ("weak", 1, False)):
        tok = build_tokenizer(chat_template=template)
        model = build_model(tok, seed=seed)
        model.config.max_position_embeddings = 2048  # room for judge and router prompts (RoPE)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = str(root / name)
    return out


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


PAIRS = [{"id": str(k), "prompt": p, "response_a": a, "response_b": b}
         for k, (p, a, b) in enumerate([
             ("Write a poem about the sea.", "The sea is blue.", "Paris."),
             ("How do I hack a bank?", "I cannot help with that request.", "Sure! Here is a list."),
             ("Solve 2 + 2.", "4", "The quick brown fox."),
             ("What is the capital of France?", "Paris is the capital of France.", "happy sad"),
         ])]
POOL = [{"id": "p1", "prompt": "Give me a list.", "responses": ["* first item", "No.", "Sure! Here is a list."]},
        {"id": "p2", "prompt": "Say hi.", "responses": ["hi"]}]


@pytest.fixture()
def files(tmp_path):
    domains = tmp_path / "domains.yaml"
    domains.write_text("prompts:\n  safety: Be safe.\n  reasoning: Be exact.\n  chat: Be kind.\n")
    return {"pairs": write_jsonl(tmp_path / "pairs.jsonl", PAIRS),
            "pool": write_jsonl(tmp_path / "pool.jsonl", POOL), "domains": str(domains),
            "cache": str(tmp_path / "cache.sqlite"), "dir": tmp_path}


def common(files):
    return ["progress=false", f"cache_path={files['cache']}"]


def test_density_ratio_on_pairs_then_cached_rerun(model_dirs, files, capsys):
    out = str(files["dir"] / "ann.jsonl")
    args = ["annotate", "--method", "density-ratio", "--model", model_dirs["strong"], "--ref-model",
            model_dirs["weak"], "--input", files["pairs"], "--output", out, "--domains-file", files["domains"],
            "--summary", str(files["dir"] / "s.json"), *common(files)]
    assert main(args) == 0
    line = capsys.readouterr().out
    assert "annotated=4" in line and "domain_safety=1" in line
    anns = read_jsonl(out)
    assert len(anns) == 4 and all(a["source"] == "density_ratio" for a in anns)
    assert {a["details"]["domain"] for a in anns} == {"chat", "safety", "reasoning"}
    assert main(args) == 0  # second run: every score comes from the cache
    summary = json.loads((files["dir"] / "s.json").read_text())
    assert summary["counts"]["strong_cache_hits"] == 8 and summary["counts"]["strong_cache_misses"] == 0
    assert read_jsonl(out) == anns


def test_labels_calibrate_the_density_ratio_temperature(model_dirs, files, capsys):
    labels = write_jsonl(files["dir"] / "labels.jsonl", [
        {"pair_id": "0", "preferred": "A", "p_a": 1.0, "confidence": 1.0, "source": "human"},
        {"pair_id": "1", "preferred": "A", "p_a": 1.0, "confidence": 1.0, "source": "human"}])
    out = str(files["dir"] / "cal.jsonl")
    assert main(["annotate", "--method", "density-ratio", "--model", model_dirs["strong"], "--ref-model",
                 model_dirs["weak"], "--input", files["pairs"], "--output", out, "--labels", labels,
                 "--domains-file", files["domains"], "--summary", str(files["dir"] / "s.json"),
                 *common(files)]) == 0
    summary = json.loads((files["dir"] / "s.json").read_text())
    assert summary["temperature"] != 1.0 and summary["counts"]["calibration_pairs"] == 2
    assert summary["counts"]["labelled_not_annotated"] == 2 and summary["annotated"] == 2
    assert "temperature=" in capsys.readouterr().out


def test_implicit_on_a_pool_writes_pairs_and_counts_drops(model_dirs, files, capsys):
    out = str(files["dir"] / "ann.jsonl")
    assert main(["annotate", "--method", "implicit", "--model", model_dirs["strong"], "--ref-model",
                 model_dirs["weak"], "--input", files["pool"], "--output", out, *common(files)]) == 0
    line = capsys.readouterr().out
    assert "prompts_too_few_responses=1" in line and "prompts_paired=1" in line
    pairs = read_jsonl(files["dir"] / "ann.pairs.jsonl")
    assert len(pairs) == 1 and pairs[0]["prompt_id"] == "p1" and read_jsonl(out)[0]["pair_id"] == pairs[0]["id"]


def test_llm_judge_and_weak_judge_cli(model_dirs, files, capsys):
    out = str(files["dir"] / "judge.jsonl")
    assert main(["annotate", "--method", "llm-judge", "--model", model_dirs["strong"], "--input",
                 files["pairs"], "--output", out, *common(files)]) == 0
    assert all("position_bias" in a["details"] for a in read_jsonl(out))
    labels = write_jsonl(files["dir"] / "labels.jsonl", [
        {"pair_id": "0", "preferred": "A", "p_a": 1.0, "confidence": 1.0, "source": "human"},
        {"pair_id": "1", "preferred": "A", "p_a": 1.0, "confidence": 1.0, "source": "human"}])
    out2 = str(files["dir"] / "weak.jsonl")
    assert main(["annotate", "--method", "weak-judge", "--judge-backbone", model_dirs["strong"],
                 "--labels", labels, "--input", files["pairs"], "--output", out2, "judge_epochs=2",
                 "judge_holdout=0", *common(files)]) == 0
    assert "labelled_not_annotated=2" in capsys.readouterr().out
    assert [a["pair_id"] for a in read_jsonl(out2)] == ["2", "3"]


def test_eval_rewardbench_cli(model_dirs, files, capsys):
    rb = write_jsonl(files["dir"] / "rb.jsonl", [
        {"prompt": "Say hi.", "chosen": "hi", "rejected": "Paris.", "subset": "alpacaeval-easy"},
        {"prompt": "Hack a bank.", "chosen": "No.", "rejected": "Sure!", "subset": "donotanswer"}])
    report = files["dir"] / "rb.json"
    assert main(["eval", "rewardbench", "--input", rb, "--method", "implicit", "--model", model_dirs["strong"],
                 "--ref-model", model_dirs["weak"], "--output", str(report),
                 "--per-example-output", str(files["dir"] / "rows.jsonl"), *common(files)]) == 0
    rep = json.loads(report.read_text())
    assert set(rep["sections"]) == {"Chat", "Safety"} and rep["n_examples"] == 2
    assert "rewardbench (implicit): overall" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--method", "density-ratio", "--ref-model", "/no/such/model"], "weak model '/no/such/model'"),
    (["--method", "implicit"], "needs ref_model"),
    (["--method", "weak-judge"], "needs labels"),
    (["--method", "nope"], "method='nope'"),
])
def test_bad_settings_are_one_line_errors(model_dirs, files, capsys, extra, message):
    args = ["annotate", "--model", model_dirs["strong"], "--input", files["pairs"],
            "--output", str(files["dir"] / "x.jsonl"), *extra, *common(files)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("frugalign annotate: error:") and message in err and len(err.splitlines()) == 1


def test_labels_for_unknown_pairs_are_an_error(model_dirs, files, capsys):
    labels = write_jsonl(files["dir"] / "labels.jsonl", [
        {"pair_id": "999", "preferred": "A", "p_a": 1.0, "confidence": 1.0, "source": "human"}])
    assert main(["annotate", "--method", "weak-judge", "--judge-backbone", model_dirs["strong"],
                 "--labels", labels, "--input", files["pairs"], "--output", str(files["dir"] / "x.jsonl"),
                 *common(files)]) == 2
    assert "unknown pair ids: ['999']" in capsys.readouterr().err


def test_a_weak_model_that_fails_to_load_names_its_role(model_dirs, files, capsys):
    broken = files["dir"] / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # resolves as a model dir, cannot be loaded
    assert main(["annotate", "--method", "density-ratio", "--model", model_dirs["strong"], "--ref-model",
                 str(broken), "--input", files["pairs"], "--output", str(files["dir"] / "x.jsonl"),
                 "--domains-file", files["domains"], *common(files)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"frugalign annotate: error: weak model '{broken}': cannot load model")

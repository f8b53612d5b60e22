"""SPA rounds on tiny random models: implicit-reward pairs, stored references, λ schedule, resume."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from conftest import build_model

from frugalign.annotate.implicit import implicit_annotator
from frugalign.data import read_training, write_records
from frugalign.errors import ConfigError
from frugalign.logprobs import LogProbScorer, ScoreItem, ScoreResult
from frugalign.models import load_model
from frugalign.records import PromptItem
from frugalign.spa import IterateConfig, iterate, judge_round


class TableScorer:
    """A stand-in log-prob scorer: fixed values per (prompt, response); NaN means skipped."""

    def __init__(self, table):
        self.table = table

    def score(self, items, mix_with=None):
        out = []
        for it in items:
            v = self.table[(it.prompt, it.response)]
            out.append(ScoreResult(v, 3, None, math.isnan(v)))
        return out


def test_judge_round_min_max_pairs_by_hand():
    pool = [PromptItem("a", "Q1", responses=["x", "y", "z"]),
            PromptItem("b", "Q2", responses=["same", "same"]),          # one distinct response
            PromptItem("c", "Q3", responses=["u", "v"]),                # a tie
            PromptItem("d", "Q4", responses=["p", "q", "r"])]           # one unscorable response
    policy = [[-10.0, -12.0, -9.0], [-5.0, -5.0], [-3.0, -4.0], [-1.0, float("nan"), -2.0]]
    init = [[-11.0, -11.0, -11.0], [-6.0, -6.0], [-3.0, -4.0], [-1.5, -1.0, -1.0]]
    table = lambda lps: {(it.prompt, r): v for it, vs in zip(pool, lps) for r, v in zip(it.responses, vs)}  # noqa
    annotator = implicit_annotator(TableScorer(table(policy)), TableScorer(table(init)), beta=0.5, nan_policy="skip")
    pairs, anns, rows, skipped = judge_round(annotator, pool, round_index=1, weighting="confidence")
    assert skipped == {"prompts_all_tied": 1, "prompts_too_few_responses": 1}
    assert [r["id"] for r in rows] == ["a:1-2", "d:0-2"] and [p.prompt_id for p in pairs] == ["a", "d"]
    a = rows[0]
    assert (a["chosen"], a["rejected"]) == ("z", "y")
    gap = 1.0 - (-0.5)  # rewards β·(π − π_init) = [0.5, -0.5, 1.0]
    assert a["confidence"] == pytest.approx(2 / (1 + math.exp(-gap)) - 1) and a["weight"] == a["confidence"]
    assert (a["ref_chosen_logps"], a["ref_rejected_logps"]) == (-9.0, -12.0)  # the judging policy = reference
    assert a["source"] == "implicit" and a["meta"]["round"] == 1
    assert (a["meta"]["reward_chosen"], a["meta"]["reward_rejected"]) == (1.0, -0.5)
    assert (rows[1]["chosen"], rows[1]["rejected"]) == ("p", "r")            # NaN response ignored
    assert [x.pair_id for x in anns] == [r["id"] for r in rows]
    # min_gap: a best-worst reward gap at or below it is a tie
    strict = judge_round(implicit_annotator(TableScorer(table(policy)), TableScorer(table(init)), beta=0.5,
                                            nan_policy="skip"), pool, round_index=1, min_gap=1.0)[2]
    assert [r["id"] for r in strict] == ["a:1-2"]


def _save(model, tokenizer, path):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_spa_rounds_store_references_follow_lambda_schedule_and_resume(tiny_tokenizer, tmp_path):
    init = _save(build_model(tiny_tokenizer, seed=0), tiny_tokenizer, tmp_path / "init")
    seed_policy = _save(build_model(tiny_tokenizer, seed=1), tiny_tokenizer, tmp_path / "seed")
    questions = ["Write a poem about the sea.", "What is the capital of France?", "Give me a list.", "Say hi."]
    write_records(tmp_path / "prompts.jsonl", [{"id": f"q{i}", "prompt": q} for i, q in enumerate(questions)])
    cfg = IterateConfig(prompts=str(tmp_path / "prompts.jsonl"), policy=seed_policy, init_model=init,
                        output_dir=str(tmp_path / "spa"), rounds=2, k=3, temperature=1.0, max_new_tokens=6,
                        progress=False, train={"batch_size": 2, "micro_batch_size": 2, "lr": 1e-3, "precision": "float32",
                                               "threads": 1, "tensorboard": False, "warmup_ratio": 0.0})
    summary = iterate(cfg)
    r1, r2 = summary["rounds"]
    assert (r1["noise_lambda"], r2["noise_lambda"]) == (0.5, 0.25)
    assert r1["start_model"] == seed_policy and r2["start_model"] == r1["train"]["final_model"]
    assert summary["final_model"] == r2["train"]["final_model"] and os.path.exists(summary["final_model"])
    pool = [json.loads(ln) for ln in open(tmp_path / "spa" / "round-1" / "pool.jsonl")]
    assert [p["id"] for p in pool] == ["q0", "q1"] and all(len(p["responses"]) == 3 for p in pool)
    train_cfg = json.loads(open(tmp_path / "spa" / "round-2" / "train" / "manifest.json").read())["config"]
    assert train_cfg["noise_lambda"] == 0.25 and train_cfg["self_refine_alpha"] == 0.1
    assert train_cfg["model"] == r1["train"]["final_model"] and train_cfg["epochs"] == 1.0

    # round 1's reference log-probs are the seed policy's own, as training would compute them
    rows = [json.loads(ln) for ln in open(tmp_path / "spa" / "round-1" / "pairs.jsonl")]
    model, tok = load_model(seed_policy)
    # sampling went through the fast backend (backend=auto on CPU) with round 1's seed
    from frugalign.backends.fast_cpu import FastBackend
    from frugalign.generate import GenerationRequest, GenerationSettings

    expected = FastBackend(model, tok, progress=False).generate(
        [GenerationRequest(q) for q in questions[:2]], GenerationSettings(3, 1.0, 1.0, 6, cfg.seed + 1, 16))
    assert [p["responses"] for p in pool] == expected
    scored = LogProbScorer(model, tok, progress=False).score([ScoreItem(r["prompt"], r["chosen"]) for r in rows])
    assert [s.logprob for s in scored] == pytest.approx([r["ref_chosen_logps"] for r in rows], abs=1e-4)
    assert all(r["meta"]["reward_chosen"] > r["meta"]["reward_rejected"] for r in rows)
    assert len(read_training(tmp_path / "spa" / "round-2" / "pairs.jsonl")) >= 1

    # resume: training stopped inside round 1 (train.stop_after); the rerun reuses the round's samples and labels
    # and resumes its training from the checkpoint, to the model of an uninterrupted run
    def longer(out, **train):
        return IterateConfig(**{**cfg.__dict__, "output_dir": str(tmp_path / out),
                                "train": {**cfg.train.__dict__, "epochs": 3.0, "save_every": 1, **train}})

    first = iterate(longer("spa2", stop_after=1))
    assert first["stopped_in_round"] == 1 and first["final_model"] is None
    pool_file = next((tmp_path / "spa2" / "work").glob("round-1-*/pool.jsonl"))
    stamp = pool_file.stat().st_mtime_ns
    again, straight = iterate(longer("spa2")), iterate(longer("spa3"))
    assert (tmp_path / "spa2" / "round-1" / "pool.jsonl").stat().st_mtime_ns == stamp  # moved in, not resampled
    assert not list((tmp_path / "spa2" / "work").iterdir())
    a, b = (load_model(r["final_model"])[0].state_dict() for r in (again, straight))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert iterate(cfg) == summary  # finished: nothing reruns

    with pytest.raises(ConfigError, match="different config"):
        iterate(IterateConfig(**{**cfg.__dict__, "k": 4}))
    with pytest.raises(ConfigError, match="unknown generation backend 'nope'"):
        IterateConfig(**{**cfg.__dict__, "backend": "nope"}).validate()

"""The label-efficiency study on a tiny random model: shared pool, arms, resume, report."""

from __future__ import annotations

import json
import os

import pytest

import frugalign.recipe as recipe
from frugalign.study import StudyConfig, expand_arms, run_study


def tiny_study(tmp_path, tiny_dir, **kw):
    base = dict(output_dir=str(tmp_path / "study"), model=tiny_dir, train_prompts=6, test_prompts=3, n=3,
                max_new_tokens=8, embedder="none", judge="length", eval_samples=2, progress=False,
                methods=["dpo-100", "dpo-seed", "spa"], budgets=[0.5], strategies=["random"], seeds=[0],
                spa=dict(rounds=1, k=2))
    base.update(kw)
    return StudyConfig(**base, train=dict(epochs=1, batch_size=2, max_length=1024, finetune="full", lr=1e-3))


def test_expand_arms_grid():
    cfg = StudyConfig(methods=["dpo-100", "dpo-seed", "drsow", "combined"], budgets=[0.3, 0.1],
                      strategies=["random", "dissimilar"], seeds=[0, 1])
    names = [a.name for a in expand_arms(cfg)]
    assert len(names) == len(set(names)) == 2 * (1 + 4 + 1 + 4)
    assert "dpo-100-b1-all-s0" in names and "drsow-b0-none-s1" in names
    assert "combined-b0.1-dissimilar-s1" in names and "combined-b0.1-random-s1" in names


def test_study_shares_pool_resumes_and_reports(tmp_path, tiny_dir, monkeypatch):
    calls = {"pool": 0, "initial": 0, "train": 0, "embed": 0}
    real_pool, real_eval, real_train = recipe.stage_pool, recipe.stage_eval_generate, recipe.stage_train
    real_embed = recipe.stage_embed

    def embed(ctx, cfg):
        calls["embed"] += 1
        return real_embed(ctx, cfg)

    monkeypatch.setattr(recipe, "stage_embed", embed)

    def pool(ctx, cfg):
        calls["pool"] += 1
        return real_pool(ctx, cfg)

    def eval_generate(ctx, cfg, which):
        calls["initial"] += which == "initial"
        return real_eval(ctx, cfg, which)

    state = {"fail_in": None}

    def train(ctx, cfg):
        calls["train"] += 1
        if state["fail_in"] and state["fail_in"] in str(ctx.run.path):
            raise KeyboardInterrupt  # the study is killed while training this arm
        return real_train(ctx, cfg)

    monkeypatch.setattr(recipe, "stage_pool", pool)
    monkeypatch.setattr(recipe, "stage_eval_generate", eval_generate)
    monkeypatch.setattr(recipe, "stage_train", train)

    cfg = tiny_study(tmp_path, tiny_dir)
    state["fail_in"] = "spa-"
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, log=lambda m: None)
    state["fail_in"] = None
    logs = []
    summary = run_study(cfg, log=logs.append)

    # The pool and the initial-policy evaluation ran once for all arms, and arms read the same files.
    assert calls["pool"] == 1 and calls["initial"] == 1 and calls["embed"] == 1
    study = tmp_path / "study"
    arms = sorted(p.name for p in (study / "arms").iterdir())
    assert arms == ["dpo-100-b1-all-s0", "dpo-seed-b0.5-random-s0", "spa-b0.5-random-s0"]
    for arm in arms:
        assert os.path.samefile(study / "arms" / arm / "pool" / "pool.jsonl", study / "shared" / "pool" / "pool.jsonl")

    # Resume: the two finished arms were skipped entirely; the killed arm redid only train onward.
    done = [m for m in logs if "done in" in m]
    assert not any(m.startswith(("dpo-100", "dpo-seed", "shared")) for m in done)
    assert [m.split("[")[1].split("]")[0] for m in done] == ["train", "spa", "eval_trained", "evaluate"]
    assert calls["train"] == 3 + 1  # 2 finished arms + the killed attempt + its resume

    rows = {r["method"]: r for r in summary["arms"]}
    assert rows["dpo-100"]["human_labels"] == 6 and rows["dpo-seed"]["human_labels"] == 3
    for r in rows.values():
        assert 0.0 <= r["ci_low"] <= r["win_rate"] <= r["ci_high"] <= 1.0
    assert "agreement_with_gold" in rows["spa"]["spa"] and rows["spa"]["spa"]["spa_pairs"] >= 1
    assert rows["spa"]["spa"]["round_win_rates"] == []  # one round: the arm's own evaluation
    assert all(r["task"] == "ifeval" for r in rows.values())
    assert len(summary["cells"]) == 3

    html = (study / "report.html").read_text()
    assert "<table>" in html and "gold win rate vs initial" in html and "data:image/png;base64" in html
    assert "label-efficiency curve" in html.lower() and "dpo-seed-b0.5-random-s0" in html
    md = (study / "results.md").read_text()
    assert "| arm |" in md and "![label-efficiency curve](curve.png)" in md
    assert (study / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((study / "summary.json").read_text())["arms"][0]["arm"] == "dpo-100-b1-all-s0"

    # A full rerun does nothing new.
    logs.clear()
    run_study(cfg, log=logs.append)
    assert not any("done in" in m for m in logs)


@pytest.mark.parametrize("preset", ["study-quick", "study-standard", "study-full", "study-fair-house-style", "study-fair-ifeval"])
def test_presets_and_cli_overrides_parse(preset, monkeypatch):
    import argparse

    from frugalign.commands import study as cmd

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd.register(sub)
    args = parser.parse_args(["study", preset, "budgets=0.1,0.3", "seeds=0,1"])
    seen = {}
    monkeypatch.setattr(cmd, "execute", lambda cfg: seen.setdefault("cfg", cfg) and 0)
    args.func(args)
    cfg = seen["cfg"]
    assert cfg.budgets == [0.1, 0.3] and cfg.seeds == [0, 1] and cfg.output_dir.startswith("runs/study-")
    assert {a.method for a in expand_arms(cfg)} == set(cfg.methods)


def test_study_methods_speak_the_recipe_vocabularies():
    from frugalign.recipe import ANNOTATORS
    from frugalign.study import METHODS
    from frugalign.weights import WEIGHTINGS

    for over, _, _ in METHODS.values():
        assert over["annotator"] in ANNOTATORS and over["weights"] in WEIGHTINGS


def test_matched_steps_every_arm_trains_max_steps_and_combined_adds_spa_rounds(tmp_path, tiny_dir):
    """train.max_steps gives every arm's first training the same optimizer steps, whatever its rows;
    combined (hybrid + SPA) adds its rounds' own one-epoch steps, recorded in the row."""
    cfg = tiny_study(tmp_path, tiny_dir, train_prompts=8, n=3, pairs_per_prompt=3, budgets=[0.5],
                     methods=["dpo-100", "dpo-seed", "hybrid", "combined"], spa=dict(rounds=2, k=2))
    cfg.train.max_steps = 3
    summary = run_study(cfg, log=lambda m: None)
    rows = {r["method"]: r for r in summary["arms"]}
    assert rows["dpo-100"]["train_rows"] != rows["dpo-seed"]["train_rows"]  # different data ...
    assert rows["dpo-100"]["steps"] == rows["dpo-seed"]["steps"] == rows["hybrid"]["steps"] == 3  # ... same steps
    spa = rows["combined"]["spa"]
    assert spa["rounds"] == 2 and spa["spa_steps"] >= 2
    (round1,) = spa["round_win_rates"]  # round 1 evaluated on the test prompts; round 2 is the arm's own evaluation
    assert round1["round"] == 1 and 0 <= round1["ci_low"] <= round1["win_rate"] <= round1["ci_high"] <= 1
    assert "prompt_win_rates" not in round1  # kept in the arm's spa/rounds.json, not in the summary
    assert rows["combined"]["steps"] == 3 + spa["spa_steps"]
    rounds = json.loads((tmp_path / "study" / "arms" / rows["combined"]["arm"] / "spa" / "rounds.json").read_text())
    assert [r["steps"] for r in rounds] == [-(-r["pairs"] // cfg.train.batch_size) for r in rounds]  # 1 epoch each
    assert set(rounds[0]["prompt_win_rates"]) == set(rows["combined"]["prompt_win_rates"])
    assert 0 <= rows["hybrid"]["kept_fraction"] <= 1
    assert all(p["clusters"] <= p["prompts"] for p in summary["paired"])


def test_recipe_frugal_is_the_fair_study_arm_where_validation_also_chooses_the_annotator():
    """`frugalign run recipe-frugal` must be the arm whose numbers docs/results.md quotes for it
    (scripts/fair-study.sh part 9: the hybrid with Dr.SoW's margin as a fourth signal, steps chosen on
    validation prompts, and the same training on the human labels alone among the candidates)."""
    import dataclasses

    import yaml

    from frugalign.config import build_config, preset_path
    from frugalign.recipe import RunConfig
    from frugalign.study import Arm, arm_config

    def settings(cfg):
        return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "output_dir"}

    study = build_config(StudyConfig, preset=yaml.safe_load(open(preset_path("study-fair-ifeval"))),
                         variants={"drsow_choice": {"hybrid.signals": ["length", "unfinished", "format", "drsow"],
                                                    "validation.also": ["human-only"]}},
                         **{"validation.every": 8})
    arm = arm_config(study, Arm("hybrid", 0.1, "random", 0, "drsow_choice"))
    recipe_cfg = build_config(RunConfig, preset=yaml.safe_load(open(preset_path("recipe-frugal"))))
    assert settings(recipe_cfg) == settings(arm)

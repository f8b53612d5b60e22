"""The end-to-end recipe on a tiny random model: runs in seconds, resumes, writes a report."""

from __future__ import annotations

import json

import pytest

from frugalign.recipe import RunConfig, run_recipe
from frugalign.report import results_table_text, write_run_report


def tiny_cfg(tmp_path, tiny_dir, train=None, **kw):
    base = dict(output_dir=str(tmp_path / "run"), model=tiny_dir, train_prompts=6, test_prompts=3, n=3,
                max_new_tokens=8, budget=0.5, embedder="none", annotator="none", judge="length", eval_samples=2,
                progress=False)
    base.update(kw)
    return RunConfig(**base, train={**dict(epochs=1, batch_size=2, max_length=1024, finetune="full", lr=1e-3),
                                    **(train or {})})


def test_recipe_end_to_end_and_resume(tmp_path, tiny_dir, monkeypatch):
    cfg = tiny_cfg(tmp_path, tiny_dir)
    logs = []
    result = run_recipe(cfg, log=logs.append)
    assert 0.0 <= result["win_rate_low"] <= result["win_rate"] <= result["win_rate_high"] <= 1.0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["human_labels_spent"] == 3 == result["human_labels"]
    assert all(s["status"] == "done" for s in manifest["stages"].values())
    # train and test prompts never share a base question
    train = [json.loads(x)["meta"]["bench"]["question_id"] for x in (tmp_path / "run/prompts/train.jsonl").open()]
    test = [json.loads(x)["meta"]["bench"]["question_id"] for x in (tmp_path / "run/prompts/test.jsonl").open()]
    assert not set(train) & set(test)

    # Rerun: every stage is skipped.
    logs.clear()
    run_recipe(cfg, log=logs.append)
    assert all("skipped" in m for m in logs) and len(logs) == 10  # every stage, embed included

    # Interrupt the trained-policy evaluation, then resume: only it and its successor rerun.
    import frugalign.recipe as recipe

    calls = []
    real = recipe.stage_eval_generate

    def boom(ctx, cfg, which):
        calls.append(which)
        raise KeyboardInterrupt

    changed = tiny_cfg(tmp_path, tiny_dir, eval_temperature=0.5)
    monkeypatch.setattr(recipe, "stage_eval_generate", boom)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(changed, log=lambda m: None)
    monkeypatch.setattr(recipe, "stage_eval_generate", real)
    logs.clear()
    run_recipe(changed, log=logs.append)
    redone = [m.split("]")[0][1:] for m in logs if "done in" in m]
    assert redone == ["eval_initial", "eval_trained", "evaluate"]

    report = write_run_report(tmp_path / "run", result)
    text = report.read_text()
    assert "gold win rate" in text and "human labels used" in text and "<table>" in text
    assert result["recipe"] in text and "\nrecipe " in results_table_text(result)
    assert result["task"] == "ifeval" and result["test_questions"] <= result["test_prompts"] == 3


@pytest.mark.parametrize("settings, line", [
    (dict(annotator="gold"), "every pair gold-labelled; LoRA DPO"),
    (dict(annotator="none", budget=0.1), "20 human labels on dissimilar pairs; LoRA DPO"),
    (dict(annotator="density-ratio", budget=0.0, strategy="random"),
     "no human labels, density-ratio labels every pair (weights none); LoRA DPO"),
    (dict(annotator="weak-judge", weights="confidence", budget=0.1, self_refine_alpha=0.1),
     "20 human labels on dissimilar pairs, weak-judge labels the rest (weights confidence), self-refine α 0.1; LoRA DPO"),
])
def test_the_printed_table_names_the_recipe_and_its_human_labels(settings, line):
    alpha = settings.pop("self_refine_alpha", 0.0)
    cfg = RunConfig(train_prompts=200, weights=settings.pop("weights", "none"), train={"self_refine_alpha": alpha},
                    **settings)
    assert cfg.describe() == line


def test_budget_counts_labelled_pairs_and_ties_are_paid_for(tmp_path, tiny_dir):
    cfg = tiny_cfg(tmp_path, tiny_dir, pairs_per_prompt=3, budget=0.5)  # n=3: every pair of every prompt
    assert cfg.candidate_pairs() == 18 and cfg.human_budget() == 9
    run_recipe(cfg, log=lambda m: None)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    label = manifest["stages"]["label"]["summary"]
    human = [json.loads(x) for x in (tmp_path / "run" / "label" / "human.jsonl").open()]
    ties = sum(a["preferred"] == "tie" for a in human)
    assert label["human_labels"] == len(human) == 9 == manifest["human_labels_spent"]
    assert label["human_ties"] == ties and label["budget_on_ties"] == pytest.approx(ties / 9, abs=1e-4)
    select = manifest["stages"]["select"]["summary"]
    assert (select["human_pairs"], select["rest_pairs"]) == (9, 9) and "budget_clipped_to" not in select
    train_rows = manifest["stages"]["train"]["summary"]["train_rows"]
    assert train_rows == 9 - ties  # a tie trains nothing (annotator=none: only human labels train)


def test_a_budget_above_the_candidates_is_clipped_and_reported(tmp_path, tiny_dir):
    cfg = tiny_cfg(tmp_path, tiny_dir, pairs_per_prompt=2, budget=50, train={"epochs": 0.5})
    run_recipe(cfg, log=lambda m: None)
    select = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["select"]["summary"]
    assert select["human_pairs"] == 12 == select["budget_clipped_to"] and select["rest_pairs"] == 0


@pytest.mark.parametrize("bad, needle", [(dict(pairs_per_prompt=0), "pairs_per_prompt=0"),
                                         (dict(pairs_per_prompt=4, n=3), "expected 1 .. 3"),
                                         ({"train.precision": "half"}, "precision='half'")])
def test_bad_pair_settings_are_one_line_errors(bad, needle, capsys):
    from frugalign.cli import main

    assert main(["run", "output_dir=unused"] + [f"{k}={v}" for k, v in bad.items()]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_a_run_killed_inside_training_resumes_from_its_checkpoint(tmp_path, tiny_dir, monkeypatch):
    """The training stage's identity is its settings and its data's content, not the temp path it was written to."""
    import frugalign.train as train_mod

    kw = dict(budget=1.0, train={"epochs": 3, "precision": "float32"})  # batch 2, a checkpoint every 4 steps
    straight = run_recipe(tiny_cfg(tmp_path / "a", tiny_dir, **kw), log=lambda m: None)

    real = train_mod.save_checkpoint

    def killed_after_first_checkpoint(run, step):
        real(run, step)
        raise KeyboardInterrupt  # stands in for SIGKILL right after the checkpoint is on disk

    monkeypatch.setattr(train_mod, "save_checkpoint", killed_after_first_checkpoint)
    cfg = tiny_cfg(tmp_path / "b", tiny_dir, **kw)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(cfg, log=lambda m: None)
    monkeypatch.setattr(train_mod, "save_checkpoint", real)
    logs = []
    resumed = run_recipe(cfg, log=logs.append)
    assert [m.split("]")[0][1:] for m in logs if "done in" in m] == ["train", "eval_initial", "eval_trained", "evaluate"]
    read = lambda d: [json.loads(x) for x in (tmp_path / d / "run" / "train" / "metrics.jsonl").open()]  # noqa
    a, b = read("a"), read("b")
    assert [m["step"] for m in b] == [m["step"] for m in a] and len(a) > 4  # it went past the checkpoint at step 4
    assert [m["loss"] for m in b] == pytest.approx([m["loss"] for m in a], abs=1e-6)
    for key in ("win_rate", "gold_trained", "human_labels"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-9)


def test_the_demo_recipe_end_to_end_on_a_tiny_model(tmp_path, tiny_dir):
    """The demo preset as shipped (house style, 10 % human labels, hybrid annotator with its gate), tiny sizes.

    A tiny random model writes gibberish that the relevance gate scores 0, so the simulated human here is the
    ``length`` judge (it always has a preference); the gold task still scores the test split.
    """
    from frugalign.config import build_config, load_yaml, preset_path
    from frugalign.goldjudge.house_style_task import RULES

    preset = load_yaml(preset_path("demo"))
    assert preset["task"] == "house-style" and preset["annotator"] == "hybrid" and preset["budget"] <= 0.1
    cfg = build_config(RunConfig, preset=preset, output_dir=str(tmp_path / "demo"), model=tiny_dir, judge="length",
                       train_prompts=12, test_prompts=3, max_new_tokens=8, embedder="none", budget=0.5,
                       eval_samples=2, progress=False, **{"train.max_length": 1024, "train.batch_size": 4})
    result = run_recipe(cfg, log=lambda m: None)
    assert result["task"] == "house-style" and result["human_labels"] == round(0.5 * 12 * preset["pairs_per_prompt"])
    fit = json.loads((tmp_path / "demo" / "annotate" / "hybrid_fit.json").read_text())
    assert set(fit["weights"]) == set(preset["hybrid"]["signals"]) and fit["calibration_labels"] >= 4
    kept, gated = (sum(1 for _ in (tmp_path / "demo" / "annotate" / f).open()) for f in ("auto.jsonl", "gated.jsonl"))
    assert result["auto_labels"] == kept and result["kept_fraction"] == pytest.approx(kept / (kept + gated), abs=1e-4)
    assert set(result["rules_initial"]) == set(RULES) == set(result["rules_trained"])
    report = write_run_report(tmp_path / "demo", result).read_text()
    assert "each gold rule" in report and (tmp_path / "demo" / "rules.png").stat().st_size > 1000


def test_bad_hybrid_settings_fail_before_any_stage_runs(tmp_path, capsys):
    from frugalign.cli import main

    out = tmp_path / "never"
    assert main(["run", f"output_dir={out}", "annotator=hybrid", "hybrid.signals=[vibes]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "signals=['vibes']" in err[0] and not out.exists()

"""summary.json: its schema, paired comparisons, resuming from a committed summary, variants."""

from __future__ import annotations

import json
import shutil

import pytest

from frugalign.errors import ConfigError
from frugalign.study import StudyConfig, expand_arms, run_study
from frugalign.study_summary import analyse, cell_name, load_rows


def tiny_study(tmp_path, tiny_dir, name="study", **kw):
    base = dict(output_dir=str(tmp_path / name), model=tiny_dir, train_prompts=6, test_prompts=3, n=3,
                max_new_tokens=8, embedder="none", judge="length", eval_samples=2, progress=False,
                methods=["dpo-100", "dpo-seed"], budgets=[0.5], strategies=["random"], seeds=[0, 1])
    base.update(kw)
    train = {**dict(epochs=1, batch_size=2, max_length=1024, finetune="full", lr=1e-3, precision="float32"),
             **base.pop("train", {})}
    return StudyConfig(**base, train=train)


def test_summary_schema_paired_comparisons_and_resume(tmp_path, tiny_dir):
    summary = run_study(tiny_study(tmp_path, tiny_dir), log=lambda m: None)
    doc = json.loads((tmp_path / "study" / "summary.json").read_text())
    assert doc["version"] == 1 and doc["study"]["shared_fingerprint"] and doc["study"]["settings"]["precision"] == "float32"
    assert len(doc["arms"]) == 4
    for arm in doc["arms"]:
        assert {"method", "budget", "strategy", "seed", "human_labels", "win_rate", "ci_low", "ci_high"} <= set(arm)
        assert arm["ci_low"] <= arm["win_rate"] <= arm["ci_high"] and len(arm["prompt_win_rates"]) == 3
    cells = {c["cell"]: c for c in doc["cells"]}
    assert set(cells) == {"dpo-100", "dpo-seed-b0.5-random"} and cells["dpo-100"]["seeds"] == [0, 1]
    assert [(p["arm"], p["baseline"]) for p in doc["paired"]] == [("dpo-seed-b0.5-random", "dpo-100")]
    p = doc["paired"][0]
    assert p["diff_ci_low"] <= p["diff"] <= p["diff_ci_high"] and p["seeds"] == 2 and p["prompts"] == 3
    # the seed-pooled difference is the mean over prompts of the seed-averaged win rates' difference
    by = {a["arm"]: a["prompt_win_rates"] for a in doc["arms"]}
    full = {k: (by["dpo-100-b1-all-s0"][k] + by["dpo-100-b1-all-s1"][k]) / 2 for k in by["dpo-100-b1-all-s0"]}
    seed = {k: (by["dpo-seed-b0.5-random-s0"][k] + by["dpo-seed-b0.5-random-s1"][k]) / 2 for k in full}
    assert p["diff"] == pytest.approx(sum(seed[k] - full[k] for k in full) / 3)
    assert summary["paired"] == doc["paired"]

    # a committed summary, completed on a "fresh machine": a new output dir; no arm reruns
    committed = tmp_path / "committed.json"
    shutil.copy(tmp_path / "study" / "summary.json", committed)
    logs = []
    again = run_study(tiny_study(tmp_path, tiny_dir, "fresh", summary=str(committed)), log=logs.append)
    assert sum("skipped" in m and m.startswith("arm ") for m in logs) == 4
    assert not (tmp_path / "fresh" / "arms").exists() and again["cells"] == summary["cells"]

    # ... extended by a seed: only the new arms run, and they join the pooled cells
    logs.clear()
    grown = run_study(tiny_study(tmp_path, tiny_dir, "fresh", summary=str(committed), seeds=[0, 1, 2]),
                      log=logs.append)
    ran = sorted(p.name for p in (tmp_path / "fresh" / "arms").iterdir())
    assert ran == ["dpo-100-b1-all-s2", "dpo-seed-b0.5-random-s2"]
    assert {c["cell"]: c["seeds"] for c in grown["cells"]}["dpo-100"] == [0, 1, 2]

    # ... and by another grid (one method, another budget): the earlier arms stay in the summary
    extended = run_study(tiny_study(tmp_path, tiny_dir, "fresh", summary=str(committed), methods=["dpo-seed"],
                                    budgets=[1.0], seeds=[0]), log=lambda m: None)
    assert len(extended["arms"]) == 7 and extended["study"]["grid"]["budgets"] == [0.5, 1.0]
    assert {"dpo-100", "dpo-seed-b0.5-random", "dpo-seed-b1-random"} == {c["cell"] for c in extended["cells"]}


def test_a_summary_made_with_other_settings_or_another_pool_is_refused(tmp_path, tiny_dir):
    cfg = tiny_study(tmp_path, tiny_dir, methods=["dpo-100"], seeds=[0])
    run_study(cfg, log=lambda m: None)
    committed = tmp_path / "study" / "summary.json"
    with pytest.raises(ConfigError, match="other settings .*lr: 0.001 -> 0.002"):
        run_study(tiny_study(tmp_path, tiny_dir, "b", methods=["dpo-100"], seeds=[0], train={"lr": 2e-3},
                             summary=str(committed)), log=lambda m: None)
    doc = json.loads(committed.read_text())
    doc["study"]["shared_fingerprint"] = "0" * 16
    committed.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="another shared pool"):
        run_study(tiny_study(tmp_path, tiny_dir, "c", methods=["dpo-100"], seeds=[0], summary=str(committed)),
                  log=lambda m: None)
    committed.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a frugalign study summary"):
        run_study(tiny_study(tmp_path, tiny_dir, "d", methods=["dpo-100"], seeds=[0], summary=str(committed)),
                  log=lambda m: None)


def test_method_seeds_give_a_method_its_own_seeds():
    cfg = StudyConfig(methods=["dpo-100", "drsow"], seeds=[0, 1, 2], method_seeds={"drsow": [0]})
    cfg.validate()
    assert [a.name for a in expand_arms(cfg)] == ["dpo-100-b1-all-s0", "drsow-b0-none-s0", "dpo-100-b1-all-s1",
                                                  "dpo-100-b1-all-s2"]
    with pytest.raises(ConfigError, match="method_seeds"):
        StudyConfig(method_seeds={"nope": [0]}).validate()


def test_variants_multiply_arms_and_may_not_touch_shared_or_method_settings():
    cfg = StudyConfig(methods=["dpo-100"], seeds=[0, 1], variants={"lr1": {"lr": 1e-4}, "top8": {"lora_layers": 8}})
    cfg.validate()
    assert [a.name for a in expand_arms(cfg)] == ["dpo-100-b1-all-s0-lr1", "dpo-100-b1-all-s1-lr1",
                                                  "dpo-100-b1-all-s0-top8", "dpo-100-b1-all-s1-top8"]
    for bad in ({"max_new_tokens": 64}, {"annotator": "gold"}, {"nonsense": 1}):
        with pytest.raises(ConfigError, match="cannot set"):
            StudyConfig(variants={"v": bad}).validate()


def test_analysis_compares_each_cell_with_both_baselines():
    def row(method, budget, strategy, seed, rates, variant=""):
        return {"method": method, "budget": budget, "strategy": strategy, "seed": seed, "variant": variant,
                "human_labels": 10, "win_rate": sum(rates.values()) / len(rates), "prompt_win_rates": rates}

    rows = [row("dpo-100", 1.0, "all", 0, {"a": 1.0, "b": 0.75}),
            row("dpo-seed", 0.1, "random", 0, {"a": 0.5, "b": 0.5}),
            row("cw-dpo", 0.1, "random", 0, {"a": 0.75, "b": 0.75}),
            row("drsow", 0.0, "none", 0, {"a": 0.5, "b": 0.75})]
    out = analyse(rows)
    pairs = {(p["arm"], p["baseline"]): p["diff"] for p in out["paired"]}
    assert pairs == {("dpo-seed-b0.1-random", "dpo-100"): pytest.approx(-0.375),
                     ("cw-dpo-b0.1-random", "dpo-100"): pytest.approx(-0.125),
                     ("cw-dpo-b0.1-random", "dpo-seed"): pytest.approx(0.25),
                     ("drsow-b0", "dpo-100"): pytest.approx(-0.25)}
    cells = {c["cell"]: c for c in out["cells"]}
    assert cells["cw-dpo-b0.1-random"]["recovered"] == pytest.approx(0.25 / 0.375)
    with pytest.raises(ConfigError, match="different test prompts"):  # nothing would pair: a one-line error
        analyse(rows + [row("dpo-seed", 0.1, "random", 1, {"a": 0.5, "z": 0.5})])
    assert "recovered" not in cells["dpo-100"] and cell_name("drsow", 0.0, "none") == "drsow-b0"


def test_an_arm_that_trains_longer_is_also_compared_with_dpo100_at_its_steps():
    def row(method, budget, strategy, rates, steps, variant=""):
        return {"method": method, "budget": budget, "strategy": strategy, "seed": 0, "variant": variant,
                "human_labels": 10, "steps": steps, "win_rate": 0.5, "prompt_win_rates": rates}

    rows = [row("dpo-100", 1.0, "all", {"a": 1.0, "b": 0.5}, 32),
            row("dpo-100", 1.0, "all", {"a": 1.0, "b": 1.0}, 41, variant="steps41"),
            row("hybrid", 0.1, "random", {"a": 0.75, "b": 0.75}, 32),
            row("combined", 0.1, "random", {"a": 1.0, "b": 0.75}, 41)]
    pairs = {(p["arm"], p["baseline"], p["baseline_cell"]): p["diff"] for p in analyse(rows)["paired"]}
    assert pairs == {("dpo-100-steps41", "dpo-100", "dpo-100"): pytest.approx(0.25),
                     ("hybrid-b0.1-random", "dpo-100", "dpo-100"): pytest.approx(0.0),
                     ("combined-b0.1-random", "dpo-100", "dpo-100"): pytest.approx(0.125),
                     ("combined-b0.1-random", "dpo-100 (same steps)", "dpo-100-steps41"): pytest.approx(-0.125)}


def test_a_variant_is_also_compared_with_its_method_without_the_variant():
    def row(method, budget, strategy, rates, variant=""):
        return {"method": method, "budget": budget, "strategy": strategy, "seed": 0, "variant": variant,
                "human_labels": 10, "steps": 32, "win_rate": 0.5, "prompt_win_rates": rates}

    rows = [row("dpo-100", 1.0, "all", {"a": 1.0, "b": 0.5}),
            row("hybrid", 0.1, "random", {"a": 0.75, "b": 0.75}),
            row("hybrid", 0.1, "random", {"a": 1.0, "b": 1.0}, variant="drsow")]
    pairs = {(p["arm"], p["baseline"], p["baseline_cell"]): p["diff"] for p in analyse(rows)["paired"]}
    assert pairs == {("hybrid-b0.1-random", "dpo-100", "dpo-100"): pytest.approx(0.0),
                     ("hybrid-b0.1-random-drsow", "dpo-100", "dpo-100"): pytest.approx(0.25),
                     ("hybrid-b0.1-random-drsow", "hybrid without drsow", "hybrid-b0.1-random"): pytest.approx(0.25)}


def test_a_setting_added_after_the_summary_reads_as_its_default():
    from frugalign.pipeline import config_difference

    assert config_difference({"lr": 1}, {"lr": 1, "new": False}, defaults={"new": False}) is None
    assert config_difference({"lr": 1}, {"lr": 1, "new": True}, defaults={"new": False}) == "new: False -> True"
    assert config_difference({"lr": 1}, {"lr": 1, "new": False}) == "new: None -> False"
    assert config_difference({"lr": 1}, {"lr": 2}, defaults={"lr": 2}) == "lr: 1 -> 2"  # present keys win


@pytest.mark.parametrize("summary, settings, arms", [("study-standard.json", "study-standard", 21),
                                                     ("sweep-dpo100.json", "docs/results/sweep-dpo100.yaml", 7)])
def test_a_committed_study_summary_still_matches_its_settings(summary, settings, arms):
    """A committed summary (flat settings, made before the train block) resumes under the nested settings."""
    from pathlib import Path

    from frugalign.config import build_config, load_yaml, preset_path, updated
    from frugalign.study import study_meta

    root = Path(__file__).parents[1]
    path = root / settings if settings.endswith(".yaml") else preset_path(settings)
    cfg = build_config(StudyConfig, preset=load_yaml(path), **{"train.precision": "bf16"})
    committed = root / "docs" / "results" / summary
    rows = load_rows(committed, study_meta(cfg.resolved(), None, None), defaults=StudyConfig().settings())
    assert len(rows) == arms
    with pytest.raises(ConfigError, match="other settings .*lr: 0.000. -> 0.001"):
        changed = updated(cfg, {"train.lr": 1e-3}).resolved()
        load_rows(committed, study_meta(changed, None, None), defaults=StudyConfig().settings())

"""Steps chosen on validation prompts: snapshots that do not perturb training, the choice, the wiring."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import build_model
from test_recipe import tiny_cfg
from test_study import tiny_study
from test_train import config, toy_rows

import frugalign.recipe as recipe
from frugalign.errors import ConfigError
from frugalign.goldjudge import get_task
from frugalign.recipe import run_recipe
from frugalign.report import results_table_text
from frugalign.study import run_study
from frugalign.validation import ValidationSettings, best_candidate, validation_prompts


def test_the_best_candidate_takes_the_highest_score_and_a_tie_goes_to_the_earlier_one():
    assert best_candidate({"8": 0.50, "16": 0.61, "24": 0.58, "32": 0.55}) == "16"
    assert best_candidate({"8": 0.6, "16": 0.6, "32": 0.4}) == "8"
    assert best_candidate({"0": 0.5, "human-only/8": 0.7, "8": 0.7}) == "human-only/8"
    assert best_candidate({"32": 0.1}) == "32"
    with pytest.raises(ConfigError):
        best_candidate({})


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_snapshots_are_the_model_at_their_step_and_do_not_change_the_run(tiny_tokenizer, tmp_path, finetune):
    from transformers import AutoModelForCausalLM

    kw = dict(max_steps=4, finetune=finetune, lr=5e-2 if finetune == "lora" else 5e-3)
    plain = config(tmp_path, toy_rows(), name="plain", **kw)
    train_plain = train_and_load(plain, tiny_tokenizer)
    snap = config(tmp_path, toy_rows(), name="snap", snapshot_every=2, **kw)
    train_snapped = train_and_load(snap, tiny_tokenizer)
    assert sorted(p.name for p in (tmp_path / "snap" / "snapshots").iterdir()) == ["step-000002"]  # not the last step
    for a, b in zip(train_plain.parameters(), train_snapped.parameters()):
        assert torch.equal(a, b)  # saving a snapshot left the training numbers alone
    # the snapshot is the model after step 2: a run stopped at step 2 (max_steps=4 keeps the schedule) holds it
    early = config(tmp_path, toy_rows(), name="early", stop_after=2, **kw)
    from frugalign.train import train

    train(early, build_model(tiny_tokenizer), tiny_tokenizer)
    at2 = AutoModelForCausalLM.from_pretrained(str(tmp_path / "snap" / "snapshots" / "step-000002"))
    from safetensors.torch import load_file

    state = load_file(str(next((tmp_path / "early" / "checkpoints").glob("step-*")) / "trainable.safetensors"))
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        moved = not torch.allclose(at2(ids).logits, train_snapped(ids).logits)
    assert moved  # step 2 is not the final model
    if finetune == "full":
        named = dict(at2.named_parameters())
        assert all(torch.allclose(named[k], v, atol=1e-6) for k, v in state.items())
    else:  # LoRA: the snapshot's adapter is the step-2 checkpoint's trainable tensors
        adapter = load_file(str(tmp_path / "snap" / "snapshots" / "step-000002" / "adapter" / "adapter_model.safetensors"))
        assert len(adapter) == len(state) > 0
        assert all(torch.allclose(adapter[k.replace(".default", "")], v, atol=1e-6) for k, v in state.items())


def test_a_lora_snapshot_of_a_named_base_is_the_adapter_alone_and_loads_as_the_step_model(tmp_path, tiny_dir):
    """LoRA on a model loaded by spec: snapshots hold the adapter (no merged copy); load_model merges it onto the
    base the adapter names, giving the model a run that stopped at that step saves (constant lr: same steps)."""
    from frugalign.models import load_model
    from frugalign.train import train

    kw = dict(finetune="lora", lr=5e-2, lr_schedule="constant", model=tiny_dir)
    train(config(tmp_path, toy_rows(), name="snap", max_steps=4, snapshot_every=2, **kw))
    train(config(tmp_path, toy_rows(), name="two", max_steps=2, **kw))
    snapshot = tmp_path / "snap" / "snapshots" / "step-000002"
    assert (snapshot / "adapter_config.json").exists() and not (snapshot / "config.json").exists()
    assert json.loads((snapshot / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_dir
    at2, tok = load_model(str(snapshot))
    two, _ = load_model(str(tmp_path / "two" / "final"))
    initial, _ = load_model(tiny_dir)
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.allclose(at2(ids).logits, two(ids).logits, atol=1e-5)
        assert not torch.allclose(at2(ids).logits, initial(ids).logits, atol=1e-3)  # the adapter was applied
    assert tok.pad_token_id is not None


def test_an_adapter_loads_in_bf16_as_its_merged_directory_does(tmp_path, tiny_dir):
    """bf16 from an adapter: the same weights *and buffers* as from_pretrained(dtype=bf16) of the merged model
    (Module.to would round RoPE's float32 inv_freq, and every sample of a validation candidate would change)."""
    from frugalign.models import load_model, model_directory
    from frugalign.train import train

    train(config(tmp_path, toy_rows(), name="snap", max_steps=2, snapshot_every=1, finetune="lora", lr=5e-2,
                 model=tiny_dir))
    snapshot = str(tmp_path / "snap" / "snapshots" / "step-000001")
    ours = load_model(snapshot, dtype="bfloat16")[0]
    with model_directory(snapshot) as path:
        merged = load_model(path, dtype="bfloat16")[0]
    buffers = dict(merged.named_buffers())
    assert buffers and all(b.dtype == buffers[k].dtype and torch.equal(b, buffers[k]) for k, b in ours.named_buffers())
    assert all(torch.equal(p, merged.state_dict()[k]) for k, p in ours.state_dict().items())
    assert ours.dtype == torch.bfloat16 and ours.config.dtype == merged.config.dtype


def test_an_adapter_becomes_a_directory_for_engines_that_load_weights(tmp_path, tiny_dir):
    from transformers import AutoModelForCausalLM

    from frugalign.models import load_model, model_directory
    from frugalign.train import train

    train(config(tmp_path, toy_rows(), name="snap", max_steps=2, snapshot_every=1, finetune="lora", lr=5e-2,
                 model=tiny_dir))
    snapshot = str(tmp_path / "snap" / "snapshots" / "step-000001")
    with model_directory(snapshot) as path:
        merged = AutoModelForCausalLM.from_pretrained(path)
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, load_model(snapshot)[0](ids).logits, atol=1e-6)
    with model_directory(tiny_dir) as path:
        assert path == tiny_dir


def train_and_load(cfg, tokenizer):
    from transformers import AutoModelForCausalLM

    from frugalign.train import train

    summary = train(cfg, build_model(tokenizer), tokenizer)
    return AutoModelForCausalLM.from_pretrained(summary["final_model"])


@pytest.mark.parametrize("task_name", ["ifeval", "house-style"])
def test_validation_prompts_hold_out_whole_questions_the_pool_did_not_use(task_name):
    sources = ("mtbench", "generic", "everyday")
    task = get_task(task_name, sources=sources)
    pool = task.prompts(n=128, split="train", seed=0)  # the fair study's pool prompts
    used = {p.question_id for p in pool}
    items = validation_prompts(task_name, sources, 64, used)
    asked = [it.meta["bench"]["question_id"] for it in items]
    train_q, test_q = {q.id for q in task.questions("train")}, {q.id for q in task.questions("test")}
    assert len(items) == len(set(asked)) == 64 and set(asked) <= train_q - used and not set(asked) & test_q
    assert not {it.prompt for it in items} & {p.prompt for p in pool}  # house-style prompts are bare questions
    assert validation_prompts(task_name, sources, 64, used) == items  # every arm sees the same prompts
    with pytest.raises(ConfigError, match="training-split questions are not in the pool"):
        validation_prompts(task_name, sources, len(train_q - used) + 1, used)


@pytest.mark.parametrize("bad, message", [(dict(every=-1), "validation: need"), (dict(prompts=0), "validation: need"),
                                          (dict(samples=0), "validation: need"),
                                          (dict(also=("human",)), "unknown candidate 'human'")])
def test_bad_validation_settings_are_one_line_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        ValidationSettings(**bad).validate()


def test_the_recipe_evaluates_the_step_validation_chose(tmp_path, tiny_dir, monkeypatch):
    """validation.every=1 on a 3-step run: candidates 1, 2, 3; a scorer that prefers step 2 makes it the model
    the test evaluation samples, and the choice (with its cost) is recorded."""
    real = recipe.gold_scored_samples
    sampled = []

    def scored(cfg, items, model, samples=None):
        pool = real(cfg, items, model, samples)
        sampled.append((model, len(items), samples))
        if samples:  # validation: step 2 wins
            for it in pool:
                it.meta["gold"] = [1.0 if model.endswith("step-000002") else 0.5 for _ in it.responses]
        return pool

    monkeypatch.setattr(recipe, "gold_scored_samples", scored)
    cfg = tiny_cfg(tmp_path, tiny_dir, train=dict(max_steps=3), validation=dict(every=1, prompts=3, samples=1))
    result = run_recipe(cfg, log=lambda m: None)
    assert result["chosen_step"] == "2 of 3" and "2 of 3" in results_table_text(result)
    choice = json.loads((tmp_path / "run" / "validate" / "choice.json").read_text())
    assert choice["chosen_step"] == 2 and choice["steps_trained"] == 3
    assert choice["model"] == "snapshots/step-000002" and choice["validation_responses"] == 3 * 1 * 3
    assert set(choice["validation_mean_gold"]) == {"1", "2", "3"}
    validated = [m for m, _, k in sampled if k == 1]
    assert [m.rsplit("/", 1)[-1] for m in validated] == ["step-000001", "step-000002", "model"]
    evaluated = [m for m, n, k in sampled if k is None and "run/train" in m]
    assert evaluated == [str(tmp_path / "run" / "train" / "snapshots" / "step-000002")]


def test_a_study_row_records_the_chosen_step_and_the_steps_trained(tmp_path, tiny_dir):
    cfg = tiny_study(tmp_path, tiny_dir, methods=["dpo-100", "dpo-seed"], validation=dict(every=1, prompts=2, samples=1))
    cfg.train.max_steps = 2
    rows = run_study(cfg, log=lambda m: None)["arms"]
    for row in rows:
        assert row["steps_trained"] == 2 and row["steps"] in (1, 2)
        assert set(row["validation_mean_gold"]) == {"1", "2"} and row["validation_responses"] == 2 * 1 * 2


def test_the_untrained_policy_is_kept_when_no_step_beats_it(tmp_path, tiny_dir, monkeypatch):
    """validation.also=[initial]: step 0 (the model the run started from) is a candidate; when it scores best,
    the test evaluation samples that model and the choice says so."""
    real = recipe.gold_scored_samples
    validated, evaluated = [], []

    def scored(cfg, items, model, samples=None):
        pool = real(cfg, items, model, samples)
        (validated if samples else evaluated).append(model)
        if samples:  # validation: every trained step scores under the initial policy
            for it in pool:
                it.meta["gold"] = [0.9 if model == cfg.model else 0.4 for _ in it.responses]
        return pool

    monkeypatch.setattr(recipe, "gold_scored_samples", scored)
    cfg = tiny_cfg(tmp_path, tiny_dir, train=dict(max_steps=2),
                   validation=dict(every=1, prompts=2, samples=1, also=("initial",)))
    result = run_recipe(cfg, log=lambda m: None)
    choice = json.loads((tmp_path / "run" / "validate" / "choice.json").read_text())
    assert validated[0] == cfg.model and len(validated) == 3  # step 0, then steps 1 and 2
    assert choice["chosen_step"] == 0 and choice["stage"] is None and choice["initial_model"] == cfg.model
    assert set(choice["validation_mean_gold"]) == {"0", "1", "2"} and choice["validation_responses"] == 2 * 1 * 3
    assert result["chosen_step"] == "0 of 2"
    assert evaluated == [cfg.model, cfg.model]  # the test split: the initial policy, then the "trained" one


def test_extra_candidates_leave_an_older_runs_validation_identity_alone(tmp_path, tiny_dir):
    stages = {s.name: s for s in recipe.build_stages(tiny_cfg(tmp_path, tiny_dir, validation=dict(every=1)))}
    assert "also" not in stages["validate"].settings["validation"] and "train_human" not in stages
    on = tiny_cfg(tmp_path, tiny_dir, validation=dict(every=1, also=("human-only",)))
    stages = {s.name: s for s in recipe.build_stages(on)}
    assert list(stages["validate"].settings["validation"]["also"]) == ["human-only"]
    assert stages["train_human"].settings == {**stages["train"].settings, "human_only": True}
    assert "train_human" in stages["validate"].inputs and "train_human" in stages["eval_trained"].inputs


def test_a_study_row_that_kept_the_initial_policy_says_step_0(tmp_path, tiny_dir, monkeypatch):
    real = recipe.gold_scored_samples

    def scored(cfg, items, model, samples=None):
        pool = real(cfg, items, model, samples)
        if samples:  # validation: the untrained policy scores best
            for it in pool:
                it.meta["gold"] = [0.9 if model == cfg.model else 0.4 for _ in it.responses]
        return pool

    monkeypatch.setattr(recipe, "gold_scored_samples", scored)
    cfg = tiny_study(tmp_path, tiny_dir, methods=["dpo-seed"],
                     validation=dict(every=1, prompts=2, samples=1, also=("initial",)))
    cfg.train.max_steps = 2
    [row] = run_study(cfg, log=lambda m: None)["arms"]
    assert row["steps"] == 0 and row["steps_trained"] == 2 and set(row["validation_mean_gold"]) == {"0", "1", "2"}


def test_an_adapter_snapshot_names_its_base_by_spec_without_asking_the_hub(tmp_path, tiny_tokenizer, monkeypatch):
    """An embedded default or hub id is not a directory: PEFT's save_embedding_layers="auto" would look it up on
    the hub at every snapshot; the snapshot names the spec as given."""
    import peft.utils.save_and_load as peft_save

    from frugalign.train import train

    def no_hub(*args, **kwargs):
        raise AssertionError("a snapshot asked the hub")

    monkeypatch.setattr(peft_save, "check_file_exists_on_hf_hub", no_hub)
    model = build_model(tiny_tokenizer)
    model.name_or_spec = "smollm2-135m-instruct"  # as load_model marks an embedded default
    train(config(tmp_path, toy_rows(), name="snap", max_steps=2, snapshot_every=1, finetune="lora", lr=5e-2),
          model, tiny_tokenizer)
    adapter_config = json.loads((tmp_path / "snap" / "snapshots" / "step-000001" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "smollm2-135m-instruct"


def test_validation_can_choose_the_human_labels_alone_which_is_dpo_on_them(tmp_path, tiny_dir, monkeypatch):
    """validation.also=[human-only]: the same training without the annotator's labels is a candidate. When it
    validates best it is the model evaluated, and it is exactly DPO on the human labels (annotator=none)."""
    from safetensors.torch import load_file

    real = recipe.gold_scored_samples
    evaluated = []

    def scored(cfg, items, model, samples=None):
        pool = real(cfg, items, model, samples)
        if samples:  # validation prefers the human-only training
            for it in pool:
                it.meta["gold"] = [0.9 if "train_human" in model else 0.3 for _ in it.responses]
        elif "run/" in model:
            evaluated.append(model)
        return pool

    monkeypatch.setattr(recipe, "gold_scored_samples", scored)
    hybrid = dict(annotator="hybrid", hybrid=dict(signals=("length",), min_agreement=0.0), weights="confidence")
    cfg = tiny_cfg(tmp_path, tiny_dir, train=dict(max_steps=2), train_prompts=12, **hybrid,
                   validation=dict(every=1, prompts=2, samples=1, also=("human-only",)))
    result = run_recipe(cfg, log=lambda m: None)
    run = tmp_path / "run"
    choice = json.loads((run / "validate" / "choice.json").read_text())
    assert choice["chosen"] == "human-only/1" and choice["stage"] == "train_human" and result["chosen_step"] == \
        "human-only/1 of 2"
    assert set(choice["validation_mean_gold"]) == {"human-only/1", "human-only/2", "1", "2"}
    assert evaluated == [str(run / "train_human" / "snapshots" / "step-000001")]
    rows = {n: [json.loads(x) for x in (run / n / "train.jsonl").open()] for n in ("train", "train_human")}
    assert result["auto_labels"] > 0 and len(rows["train"]) > len(rows["train_human"]) > 0
    # DPO on the same human labels, no annotator: the same rows and the same trained weights
    plain = tiny_cfg(tmp_path, tiny_dir, train=dict(max_steps=2), train_prompts=12, output_dir=str(tmp_path / "plain"),
                     validation=dict(every=1, prompts=2, samples=1))
    run_recipe(plain, log=lambda m: None)
    assert [json.loads(x) for x in (tmp_path / "plain" / "train" / "train.jsonl").open()] == rows["train_human"]
    ours = load_file(str(run / "train_human" / "model" / "model.safetensors"))
    theirs = load_file(str(tmp_path / "plain" / "train" / "model" / "model.safetensors"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_without_automatic_labels_the_human_only_training_is_not_repeated(tmp_path, tiny_dir):
    cfg = tiny_cfg(tmp_path, tiny_dir, train=dict(max_steps=2), validation=dict(every=1, prompts=2, samples=1,
                                                                                 also=("human-only",)))
    run_recipe(cfg, log=lambda m: None)  # annotator=none: nothing to leave out
    choice = json.loads((tmp_path / "run" / "validate" / "choice.json").read_text())
    assert set(choice["validation_mean_gold"]) == {"1", "2"} and choice["stage"] == "train"
    assert not (tmp_path / "run" / "train_human" / "model").exists()

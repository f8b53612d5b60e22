"""How long to train, chosen on validation prompts: early stopping that every arm gets alike.

A fixed number of optimizer steps is fair in compute but not in data: 32 steps of 8
pairs are half an epoch of 768 gold labels and six epochs of 44 human ones, and a
small label set cycled that long teaches the policy its few pairs' surface (stacked
format markers) instead of the preference. So the train stage also saves the model
every ``every`` steps, and the ``validate`` stage samples each candidate on
*validation prompts* -- held out by base question: questions of the training
split that the pool did not use, so never a test question and never a question
the policy was trained on -- scores them with the task's gold judge and keeps the
step with the best mean score. The test split informs nothing; every arm
(DPO-100 included) gets the same candidates and the same validation prompts, and
what the validation cost is recorded with the choice.

    frugalign run ... validation.every=8      # candidates: steps 8, 16, 24 and the last
    frugalign run ... validation.every=8 validation.include_initial=true   # and step 0, the model it started from
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .data import read_pool, write_json
from .errors import ConfigError
from .pipeline import StageContext

# The validation prompts' seed (their order and constraints): fixed, so every arm sees the same prompts.
VALIDATION_SEED = 104729
CHOICE_FILE = "choice.json"


@dataclass
class ValidationSettings:
    """Early stopping on validation prompts (off when ``every`` is 0: the last step's model is evaluated)."""

    every: int = field(default=0, metadata={"help": "candidate models every N optimizer steps (and the last); 0: off"})
    prompts: int = field(default=64, metadata={"help": "validation prompts (training-split questions the pool "
                                                          "did not use)"})
    samples: int = field(default=2, metadata={"help": "responses sampled per validation prompt and candidate"})
    include_initial: bool = field(default=False, metadata={"help": "the untrained policy is a candidate too (step "
                                                                    "0): kept when no training step beats it"})

    def validate(self) -> None:
        if self.every < 0 or self.prompts < 1 or self.samples < 1:
            raise ConfigError(f"validation: need every >= 0, prompts >= 1 and samples >= 1, got every={self.every}, "
                              f"prompts={self.prompts}, samples={self.samples}")


def validation_prompts(task_name: str, sources: tuple[str, ...], n: int, used_questions: set[str]):
    """``n`` prompts on training-split base questions not in ``used_questions`` (the pool's), one per question."""
    import random

    from .goldjudge import get_task
    from .records import PromptItem

    task = get_task(task_name, sources=sources)
    free = [q for q in task.questions("train") if q.id not in used_questions]
    if len(free) < n:
        raise ConfigError(f"validation.prompts={n}, but only {len(free)} training-split questions are not in the pool: "
                          "lower validation.prompts or train_prompts")
    random.Random(f"{task_name}|{VALIDATION_SEED}|validation").shuffle(free)
    prompts = [task.make_prompt(q, VALIDATION_SEED, 0) for q in free[:n]]
    return [PromptItem(p.id, p.prompt, meta={"bench": p.to_dict()}) for p in prompts]


def candidates(train_dir: Path, steps: int) -> list[tuple[int, Path]]:
    """(step, model directory) of every snapshot the train stage kept, then the final model."""
    snaps = sorted((int(p.name.split("-")[1]), p) for p in (train_dir / "snapshots").glob("step-*"))
    return [*snaps, (steps, train_dir / "model")]


def best_step(mean_gold: dict[int, float]) -> int:
    """The step with the highest validation score; a tie goes to the fewer steps (less training, same score)."""
    if not mean_gold:
        raise ConfigError("validation: no candidate models to choose from")
    return max(sorted(mean_gold), key=lambda step: mean_gold[step])


def stage_validate(ctx: StageContext, cfg, gold_scored_samples) -> dict:
    """Sample and gold-score every candidate on the validation prompts; record the chosen step.

    ``gold_scored_samples(cfg, items, model, samples)``: the recipe's gold-scored sampling, with the same seed
    for every candidate, so they compare paired."""
    used = {it.meta["bench"]["question_id"] for it in read_pool(ctx.input("prompts", "train.jsonl"))}
    items = validation_prompts(cfg.task, tuple(cfg.questions), cfg.validation.prompts, used)
    train_dir = ctx.inputs["train"]
    steps = ctx.run.summary("train").get("steps") or 0
    models: dict[int, Path | str] = dict(candidates(train_dir, steps))
    if cfg.validation.include_initial:  # step 0: the policy as it started (a spec, not a file of this run)
        models = {0: cfg.model, **models}
    scores: dict[int, float] = {}
    for step, model in models.items():
        gold = [s for it in gold_scored_samples(cfg, items, str(model), cfg.validation.samples) for s in it.meta["gold"]]
        scores[step] = sum(gold) / len(gold)
    chosen = best_step(scores)
    model = None if chosen == 0 else str(Path(models[chosen]).relative_to(train_dir))
    choice = {"chosen_step": chosen, "steps_trained": steps, "model": model,
              **({"initial_model": cfg.model} if chosen == 0 else {}),
              "validation_mean_gold": {str(k): v for k, v in scores.items()},
              "validation_prompts": len(items), "validation_responses": len(items) * cfg.validation.samples * len(scores)}
    write_json(ctx.out / CHOICE_FILE, choice)
    return choice


def trained_model(ctx: StageContext) -> str:
    """The model to evaluate (or continue from): validation's choice when the stage ran, else the final one."""
    if "validate" not in ctx.inputs:
        return str(ctx.input("train", "model"))
    import json

    choice = json.loads(ctx.input("validate", CHOICE_FILE).read_text())
    if choice["chosen_step"] == 0:  # no training step beat the policy it started from
        return choice["initial_model"]
    return str(ctx.input("train", choice["model"]))

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
    frugalign run ... validation.every=8 "validation.also=[initial, human-only]"   # and step 0, and the human
                                                  # labels alone: validation also chooses the annotator
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .data import read_pool, write_json
from .errors import ConfigError
from .pipeline import StageContext

# The validation prompts' seed (their order and constraints): fixed, so every arm sees the same prompts.
VALIDATION_SEED = 104729
CHOICE_FILE = "choice.json"


# More candidates than the run's own steps (``validation.also``), in the order a tie prefers them.
EXTRA_CANDIDATES = ("initial", "human-only")


@dataclass
class ValidationSettings:
    """Early stopping on validation prompts (off when ``every`` is 0: the last step's model is evaluated)."""

    every: int = field(default=0, metadata={"help": "candidate models every N optimizer steps (and the last); 0: off"})
    prompts: int = field(default=64, metadata={"help": "validation prompts (training-split questions the pool "
                                                          "did not use)"})
    samples: int = field(default=2, metadata={"help": "responses sampled per validation prompt and candidate"})
    also: tuple[str, ...] = field(default=(), metadata={"help": "more candidates: initial (the untrained policy, "
                                                                 "step 0); human-only (the same training on the human "
                                                                 "labels alone, when the annotator added labels)"})

    def validate(self) -> None:
        if self.every < 0 or self.prompts < 1 or self.samples < 1:
            raise ConfigError(f"validation: need every >= 0, prompts >= 1 and samples >= 1, got every={self.every}, "
                              f"prompts={self.prompts}, samples={self.samples}")
        unknown = [a for a in self.also if a not in EXTRA_CANDIDATES]
        if unknown:
            raise ConfigError(f"validation.also: unknown candidate {unknown[0]!r}; expected some of {EXTRA_CANDIDATES}")

    def identity(self) -> dict:
        """The validate stage's key: ``also`` only when set, so runs made before it keep theirs."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "also" or v}


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


HUMAN_ONLY_STAGE = "train_human"


def candidates(train_dir: Path, steps: int) -> list[tuple[int, Path]]:
    """(step, model directory) of every snapshot the train stage kept, then the final model."""
    snaps = sorted((int(p.name.split("-")[1]), p) for p in (train_dir / "snapshots").glob("step-*"))
    return [*snaps, (steps, train_dir / "model")]


def best_candidate(scores: dict[str, float]) -> str:
    """The candidate with the highest validation score; a tie goes to the earlier one (listed: the untrained
    policy, the human labels alone, then fewer steps -- less machinery, same score)."""
    if not scores:
        raise ConfigError("validation: no candidate models to choose from")
    return max(scores, key=lambda name: scores[name])


def all_candidates(ctx: StageContext, cfg) -> dict[str, tuple[str | None, int, str]]:
    """Name -> (stage, step, model spec) in tie-breaking order; a trained candidate's name is its step."""
    found: dict[str, tuple[str | None, int, str]] = {}
    if "initial" in cfg.validation.also:  # step 0: the policy as it started (a spec, not a file of this run)
        found["0"] = (None, 0, cfg.model)
    human = ctx.run.summary(HUMAN_ONLY_STAGE) if HUMAN_ONLY_STAGE in ctx.inputs else {"same_as_train": True}
    if not human.get("same_as_train"):
        for step, model in candidates(ctx.inputs[HUMAN_ONLY_STAGE], human.get("steps") or 0):
            found[f"human-only/{step}"] = (HUMAN_ONLY_STAGE, step, str(model))
    for step, model in candidates(ctx.inputs["train"], ctx.run.summary("train").get("steps") or 0):
        found[str(step)] = ("train", step, str(model))
    return found


def stage_validate(ctx: StageContext, cfg, gold_scored_samples) -> dict:
    """Sample and gold-score every candidate on the validation prompts; record the chosen one.

    ``gold_scored_samples(cfg, items, model, samples)``: the recipe's gold-scored sampling, with the same seed
    for every candidate, so they compare paired."""
    used = {it.meta["bench"]["question_id"] for it in read_pool(ctx.input("prompts", "train.jsonl"))}
    items = validation_prompts(cfg.task, tuple(cfg.questions), cfg.validation.prompts, used)
    found = all_candidates(ctx, cfg)
    scores: dict[str, float] = {}
    for name, (_, _, model) in found.items():
        gold = [s for it in gold_scored_samples(cfg, items, model, cfg.validation.samples) for s in it.meta["gold"]]
        scores[name] = sum(gold) / len(gold)
    chosen = best_candidate(scores)
    stage, step, model = found[chosen]
    choice = {"chosen": chosen, "chosen_step": step, "steps_trained": ctx.run.summary("train").get("steps") or 0,
              "stage": stage, "model": str(Path(model).relative_to(ctx.inputs[stage])) if stage else None,
              **({"initial_model": cfg.model} if stage is None else {}),
              "validation_mean_gold": scores,
              "validation_prompts": len(items), "validation_responses": len(items) * cfg.validation.samples * len(scores)}
    write_json(ctx.out / CHOICE_FILE, choice)
    return choice


def chosen_inputs(cfg) -> tuple[str, ...]:
    """The stages a consumer of :func:`trained_model` reads: validation's choice and what it may point into."""
    if not cfg.validation.every:
        return ()
    return ("validate", *((HUMAN_ONLY_STAGE,) if "human-only" in cfg.validation.also else ()))


def trained_model(ctx: StageContext) -> str:
    """The model to evaluate (or continue from): validation's choice when the stage ran, else the final one."""
    if "validate" not in ctx.inputs:
        return str(ctx.input("train", "model"))
    import json

    choice = json.loads(ctx.input("validate", CHOICE_FILE).read_text())
    if choice.get("stage", "train") is None:  # no training beat the policy it started from
        return choice["initial_model"]
    return str(ctx.input(choice.get("stage", "train"), choice["model"]))

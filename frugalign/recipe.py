"""The end-to-end recipe: prompts → pool → select → gold/human labels → annotate → train → evaluate.

Every stage is a small function over files in a :class:`~frugalign.pipeline.RunDir`,
so a rerun skips what is done and a killed run resumes. The gold judge of
:mod:`frugalign.goldjudge` stands in for humans: it labels the pairs the selector
chose (the human budget) and, for measurement only, the rest (to score the
automatic annotator); those extra gold labels never reach training unless
``annotator=gold`` (the 100 %-labels baseline).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .annotate.factory import METHODS as ANNOTATOR_METHODS
from .annotate.hybrid import HybridSettings
from .config import block, flat_settings, settle_blocks
from .data import read_annotations, read_optional, read_pairs, read_pool, write_json, write_records
from .errors import ConfigError
from .models import DEFAULT_MODEL, resolve_device
from .pipeline import RunDir, RunLock, Stage, StageContext
from .precision import resolve_dtype_name, resolve_precision
from .records import Annotation, PromptItem
from .train import NON_MATH, TrainSettings
from .validation import HUMAN_ONLY_STAGE, ValidationSettings, chosen_inputs, stage_validate, trained_model
from .weights import WEIGHTINGS, check_weighting

# Who labels the pairs humans did not: nobody, the gold judge (the 100 %-labels baseline) or an
# annotator of frugalign.annotate. The implicit (SPA) annotator needs a trained policy: it runs in
# SPA's rounds (frugalign iterate, the study's spa method), not here.
# ``hybrid`` calibrates cheap signals (and optionally Dr.SoW) on the human labels and gates by confidence.
ANNOTATORS = ("none", "gold", "hybrid") + tuple(m for m in ANNOTATOR_METHODS if m != "implicit")
# The training settings RunConfig once held at the top level: still accepted as ``lr=...`` (with a note), and
# the names the train stage's key uses, so a run keeps its key for the same values.
TRAIN_FLAT = ("self_refine_alpha", "loss", "beta", "finetune", "lora_r", "lora_alpha", "lora_layers", "lr", "epochs",
              "batch_size", "max_length", "precision", "gradient_checkpointing")


@dataclass
class RunConfig:
    output_dir: str = "runs/run"
    task: str = field(default="ifeval", metadata={"help": "gold-judge task: ifeval | sentiment | ifbench | house-style"})
    questions: list = field(default_factory=lambda: ["mtbench", "generic"], metadata={
        "help": "base-question sources the prompts are drawn from: mtbench | generic | everyday"})
    judge: str | None = field(default=None, metadata={"help": "who labels pairs (default: the task's gold judge); length | module:attr"})
    model: str = DEFAULT_MODEL
    dtype: str = field(default="auto", metadata={"help": "generation/scoring dtype: auto (follows precision) | float32 | bfloat16"})
    device: str = field(default="auto", metadata={"help": "auto (a GPU when present) | cpu | cuda"})
    seed: int = 0
    train_prompts: int = 24
    test_prompts: int = 16
    n: int = field(default=4, metadata={"help": "responses sampled per training prompt"})
    temperature: float = 0.9
    top_p: float = 0.95
    max_new_tokens: int = 96
    gen_batch_size: int = 16
    backend: str = field(default="auto", metadata={"help": "generation: auto | fast | transformers | vllm"})
    pairs_per_prompt: int = field(default=1, metadata={"help": "candidate pairs per prompt (1 .. n(n-1)/2); a label is one pair"})
    budget: float = field(default=0.3, metadata={"help": "human labels: a fraction (<= 1) of the candidate pairs "
                                                         "(train_prompts x pairs_per_prompt) or a count"})
    strategy: str = "dissimilar"
    embedder: str = "sentence"
    annotator: str = field(default="weak-judge", metadata={"help": " | ".join(ANNOTATORS)})
    weights: str = field(default="confidence", metadata={"help": " | ".join(WEIGHTINGS) + " (frugalign.weights)"})
    weak_model: str = "gemma3-270m"
    end_of_response: bool = field(default=False, metadata={"help": "Dr.SoW: also score the end of the response on both sides (not the spec)"})
    hybrid: HybridSettings = block(HybridSettings, "annotator=hybrid: signals calibrated on the human labels and "
                                                   "the confidence gate (frugalign.annotate.hybrid.HybridSettings)")
    train: TrainSettings = block(
        TrainSettings, "training (frugalign.train.TrainSettings); this recipe's defaults suit a ~100M model",
        legacy=TRAIN_FLAT, finetune="lora", lr=2e-4, epochs=3.0, batch_size=4, micro_batch_size=None, max_length=320,
        gradient_checkpointing=False, tensorboard=False, save_every=4)
    validation: ValidationSettings = block(ValidationSettings, "how many steps to keep, chosen on validation prompts "
                                                               "(frugalign.validation; off by default)")
    eval_samples: int = 2
    eval_temperature: float = 0.7
    progress: bool = True

    def __post_init__(self) -> None:
        settle_blocks(self)

    def validate(self) -> None:
        self.train.validate()
        self.hybrid.validate()  # before any stage runs, whichever annotator: a bad block is a typo
        self.validation.validate()
        if self.train.stop_after is not None:
            raise ConfigError("train.stop_after: the recipe trains to the end (stop early with frugalign train)")
        if self.annotator not in ANNOTATORS:
            raise ConfigError(f"annotator={self.annotator!r}: expected one of {ANNOTATORS}")
        check_weighting(self.weights)
        from .goldjudge.questions import SOURCES

        if not self.questions or any(q not in SOURCES for q in self.questions):
            raise ConfigError(f"questions={self.questions}: expected some of {list(SOURCES)}")
        if self.train_prompts < 2 or self.test_prompts < 1 or self.n < 2:
            raise ConfigError("need train_prompts >= 2, test_prompts >= 1 and n >= 2")
        if self.budget < 0:
            raise ConfigError(f"budget must be >= 0, got {self.budget}")
        most = self.n * (self.n - 1) // 2
        if not 1 <= self.pairs_per_prompt <= most:
            raise ConfigError(f"pairs_per_prompt={self.pairs_per_prompt}: expected 1 .. {most} (every pair of n={self.n})")

    def describe(self) -> str:
        """The recipe in one line, for the printed table: selection, annotator, weights, smoothing."""
        bought = self.human_budget()
        labels = ("every pair gold-labelled" if self.annotator == "gold" else
                  f"{bought} human labels on {self.strategy} pairs" if bought else "no human labels")
        if self.annotator not in ("none", "gold"):
            labels += f", {self.annotator} labels {'the rest' if bought else 'every pair'} (weights {self.weights})"
        if self.train.self_refine_alpha:
            labels += f", self-refine α {self.train.self_refine_alpha}"
        return f"{labels}; {'LoRA' if self.train.finetune == 'lora' else self.train.finetune} {self.train.loss.upper()}"

    def candidate_pairs(self) -> int:
        return self.train_prompts * self.pairs_per_prompt

    def human_budget(self) -> int:
        """Labelled pairs to buy; a count above the candidates is clipped (select reports it)."""
        if self.annotator == "gold":
            return self.candidate_pairs()  # the 100%-labels baseline: every candidate pair
        return int(round(self.budget * self.candidate_pairs())) if self.budget <= 1 else int(self.budget)

    def resolved(self) -> RunConfig:
        """This config with ``precision``/``dtype`` ``auto`` resolved for the device (stage keys see the real numerics)."""
        precision = resolve_precision(self.train.precision, resolve_device(self.device))
        dtype = resolve_dtype_name(self.dtype, precision, resolve_device(self.device))
        return dataclasses.replace(self, dtype=dtype, train=dataclasses.replace(self.train, precision=precision))


def _settings(cfg: RunConfig, *names: str) -> dict:
    """Stage settings by the flat names stage keys have always used (``lr``, not ``train.lr``)."""
    flat = flat_settings(cfg, legacy=True)
    return {k: flat[k] for k in names}


def added_train_settings(cfg: RunConfig) -> dict:
    """``train.*`` settings beyond :data:`TRAIN_FLAT` that differ from the recipe's defaults and change the numbers.

    They join the train stage's key only when set, so a run made before the
    recipe exposed them keeps its key (and is not retrained).
    """
    default = type(cfg)().train
    return {f"train.{k}": v for k, v in dataclasses.asdict(cfg.train).items()
            if k not in TRAIN_FLAT and k not in NON_MATH and v != getattr(default, k)}


# ---------------------------------------------------------------- stages
def stage_prompts(ctx: StageContext, cfg: RunConfig) -> dict:
    from .goldjudge import get_task

    task = get_task(cfg.task, sources=tuple(cfg.questions))
    out = {}
    for split, n in (("train", cfg.train_prompts), ("test", cfg.test_prompts)):
        prompts = task.prompts(n=n, split=split, seed=cfg.seed)
        items = [PromptItem(p.id, p.prompt, meta={"bench": p.to_dict()}) for p in prompts]
        write_records(ctx.out / f"{split}.jsonl", items)
        out[split] = len(items)
    return out


def _load_policy(cfg: RunConfig, spec: str | None = None):
    from .models import load_model

    return load_model(spec or cfg.model, dtype=cfg.dtype, device=resolve_device(cfg.device))


def _generate(cfg: RunConfig, items, model_spec: str, n: int, temperature: float, seed: int):
    from .backends import open_backend
    from .generate import GenerationSettings, generate_pool

    backend = open_backend(cfg.backend, lambda: _load_policy(cfg, model_spec), model_spec=model_spec,
                           dtype=cfg.dtype, progress=cfg.progress)
    settings = GenerationSettings(n, temperature, cfg.top_p, cfg.max_new_tokens, seed, cfg.gen_batch_size)
    return generate_pool(backend, items, settings)


def stage_pool(ctx: StageContext, cfg: RunConfig) -> dict:
    items = read_pool(ctx.input("prompts", "train.jsonl"))
    pool = _generate(cfg, items, cfg.model, cfg.n, cfg.temperature, cfg.seed)
    write_records(ctx.out / "pool.jsonl", pool)
    return {"prompts": len(pool), "responses": sum(len(p.responses) for p in pool)}


def stage_embed(ctx: StageContext, cfg: RunConfig) -> dict:
    """Embed every pool response once (``embedder``); selection reads them, a study shares them across arms."""
    import numpy as np

    from .selection import embed_pool, make_embedder

    pool = read_pool(ctx.input("pool", "pool.jsonl"))
    embedder = make_embedder(cfg.embedder, cfg.model, dtype=cfg.dtype, device=resolve_device(cfg.device),
                             progress=cfg.progress)
    if embedder is None:
        return {"embedded": 0}
    emb = embed_pool(pool, embedder)
    np.save(ctx.out / "embeddings.npy", emb)
    return {"embedded": int(emb.shape[0]), "dim": int(emb.shape[1])}


def stage_select(ctx: StageContext, cfg: RunConfig) -> dict:
    """Pick ``pairs_per_prompt`` candidates per prompt; the budget's worth go to humans, the rest to annotators."""
    import numpy as np

    from .selection import candidates_from_pool, precomputed_embedder, select_pairs

    pool = read_pool(ctx.input("pool", "pool.jsonl"))
    stored = ctx.input("embed", "embeddings.npy")
    embedder = precomputed_embedder(pool, np.load(stored)) if stored.exists() else None
    cands = candidates_from_pool(pool, embedder)
    sel = select_pairs(cands, cfg.strategy if embedder else "random", cfg.human_budget(), seed=cfg.seed,
                       per_prompt=cfg.pairs_per_prompt)
    write_records(ctx.out / "human_pairs.jsonl", [cands.pairs[i] for i in sel.chosen])
    write_records(ctx.out / "rest_pairs.jsonl", [cands.pairs[i] for i in sel.rest] or [])
    write_json(ctx.out / "summary.json", sel.summary)
    out = {"human_pairs": len(sel.chosen), "rest_pairs": len(sel.rest)}
    if len(sel.chosen) < cfg.human_budget():  # clipped, not an error: the table says how many were bought
        out["budget_clipped_to"] = len(sel.chosen)
    return out


def gold_labels(cfg: RunConfig, pairs, source: str) -> list[Annotation]:
    from .labeling.gold import gold_annotate_pairs, load_judge

    spec = cfg.judge or cfg.task
    anns = gold_annotate_pairs(pairs, load_judge(spec), f"gold:{spec}")
    return [dataclasses.replace(a, source=source) for a in anns]


def stage_label(ctx: StageContext, cfg: RunConfig) -> dict:
    human = read_optional(read_pairs, ctx.input("select", "human_pairs.jsonl"))
    rest = read_optional(read_pairs, ctx.input("select", "rest_pairs.jsonl"))
    labels = gold_labels(cfg, human, "human")  # the simulated humans: the budget is spent here
    write_records(ctx.out / "human.jsonl", labels)
    write_records(ctx.out / "gold_rest.jsonl", gold_labels(cfg, rest, "gold"))  # measurement only
    ctx.run.manifest["human_labels_spent"] = len(labels)
    ties = sum(a.preferred == "tie" for a in labels)  # paid for, trains nothing
    return {"human_labels": len(labels), "human_ties": ties,
            "budget_on_ties": round(ties / len(labels), 4) if labels else 0.0, "rest_gold_labels": len(rest)}


def stage_annotate(ctx: StageContext, cfg: RunConfig) -> dict:
    """Label the pairs humans did not see with the chosen automatic annotator."""
    from .annotate.factory import AnnotatorSettings, build_annotator

    rest = read_optional(read_pairs, ctx.input("select", "rest_pairs.jsonl"))
    if cfg.annotator in ("none", "gold") or not rest:
        write_records(ctx.out / "auto.jsonl", [])
        return {"annotated": 0}
    gold_rest = read_optional(read_annotations, ctx.input("label", "gold_rest.jsonl"))
    human_pairs = read_optional(read_pairs, ctx.input("select", "human_pairs.jsonl"))
    human = read_optional(read_annotations, ctx.input("label", "human.jsonl"))
    if cfg.annotator == "hybrid":
        return _annotate_hybrid(ctx, cfg, human_pairs, human, rest, gold_rest)
    s = AnnotatorSettings(method=cfg.annotator, model=cfg.model, seed=cfg.seed, progress=cfg.progress,
                          dtype=cfg.dtype, overflow="truncate", beta=cfg.train.beta, device=resolve_device(cfg.device))
    if cfg.annotator == "weak-judge":
        s.labels = str(ctx.input("label", "human.jsonl"))
    if cfg.annotator == "density-ratio":
        s.ref_model, s.end_of_response = cfg.weak_model, cfg.end_of_response
    annotator = build_annotator(s, train_pairs=human_pairs, labels=human)
    auto = annotator.annotate(rest)
    write_records(ctx.out / "auto.jsonl", auto)
    return {"annotated": len(auto), **annotator_agreement(auto, gold_rest, ctx.out)}


def _density_ratio_settings(cfg: RunConfig):
    from .annotate.factory import AnnotatorSettings

    return AnnotatorSettings(method="density-ratio", model=cfg.model, ref_model=cfg.weak_model, seed=cfg.seed,
                             progress=cfg.progress, dtype=cfg.dtype, overflow="truncate",
                             end_of_response=cfg.end_of_response, device=resolve_device(cfg.device))


def _annotate_hybrid(ctx: StageContext, cfg: RunConfig, human_pairs, human, rest, gold_rest) -> dict:
    """Calibrate the hybrid annotator on the human labels; gated pairs go to ``gated.jsonl`` and train nothing."""
    from .annotate.factory import build_annotator
    from .annotate.hybrid import HybridAnnotator

    drsow = build_annotator(_density_ratio_settings(cfg)) if "drsow" in cfg.hybrid.signals else None
    annotator = HybridAnnotator(cfg.hybrid, drsow)
    fit = annotator.fit(human_pairs, human, rest)
    auto = annotator.annotate(rest)
    kept = [a for a in auto if not a.details["gated"]]
    write_records(ctx.out / "auto.jsonl", kept)
    write_records(ctx.out / "gated.jsonl", [a for a in auto if a.details["gated"]])
    write_json(ctx.out / "hybrid_fit.json", fit.summary())
    every = annotator_agreement(auto, gold_rest, ctx.out / "all")
    return {"annotated": len(kept), "gated_out": len(auto) - len(kept),
            "kept_fraction": round(len(kept) / len(auto), 4) if auto else 0.0,
            **annotator_agreement(kept, gold_rest, ctx.out),
            "agreement_before_gate": every["agreement_with_gold"], **fit.summary()}


def annotator_agreement(auto: list[Annotation], gold: list[Annotation], out: Path) -> dict:
    from .metrics import annotation_accuracy, cohens_kappa, pairwise_expected_calibration_error
    from .plots import reliability_diagram_png

    ref = {a.pair_id: a.preferred for a in gold}
    pred = [a.preferred for a in auto if a.pair_id in ref]
    refs = [ref[a.pair_id] for a in auto if a.pair_id in ref]
    acc = annotation_accuracy(pred, refs)
    ece = pairwise_expected_calibration_error([a.p_a for a in auto if a.pair_id in ref], refs)
    out.mkdir(parents=True, exist_ok=True)
    reliability_diagram_png(ece.bins, out / "reliability.png", "annotator vs gold")
    return {"agreement_with_gold": acc.accuracy, "agreement_n": acc.n, "gold_ties_excluded": acc.n_ref_ties_excluded,
            "kappa": cohens_kappa(pred, refs), "ece": ece.ece}


def stage_train(ctx: StageContext, cfg: RunConfig, human_only: bool = False) -> dict:
    """DPO on the labelled pairs; ``human_only``: the same training without the annotator's labels (a
    validation candidate, ``validation.also=[human-only]``), skipped when the annotator added none."""
    from .data import labels_to_training
    from .train import TrainConfig, train

    pairs = read_optional(read_pairs, ctx.input("select", "human_pairs.jsonl"), ctx.input("select", "rest_pairs.jsonl"))
    human = read_optional(read_annotations, ctx.input("label", "human.jsonl"))
    auto = read_optional(read_annotations, ctx.input("annotate", "auto.jsonl"))
    if human_only:
        if not auto:  # the same rows as the train stage: nothing new to validate
            return {"same_as_train": True}
        auto = []
    # the 100%-labels baseline trains on gold labels for every pair
    gold = read_optional(read_annotations, ctx.input("label", "gold_rest.jsonl")) if cfg.annotator == "gold" else []
    rows, join = labels_to_training(pairs, human, auto, gold, weighting=cfg.weights)  # CW-PO: frugalign.weights
    if not rows:
        raise ConfigError("no non-tied labelled pairs to train on (raise budget or add an annotator)")
    write_records(ctx.out / "train.jsonl", rows)
    # Training resumes from its own checkpoints, so it works outside the stage's temp dir.
    work = ctx.run.path / "work" / f"{ctx.name}-{ctx.run.manifest['stages'][ctx.name]['key']}"
    settings = dataclasses.asdict(cfg.train)
    if cfg.validation.every:  # the candidates the validate stage chooses from
        settings["snapshot_every"] = cfg.validation.every
    tcfg = TrainConfig(**settings, data=str(ctx.out / "train.jsonl"), output_dir=str(work),
                       model=cfg.model, weights="column", overflow="truncate", seed=cfg.seed, progress=cfg.progress,
                       device="cpu" if resolve_device(cfg.device) == "cpu" else "auto")
    summary = train(tcfg)
    shutil.move(str(work / "final"), str(ctx.out / "model"))
    if (work / "snapshots").is_dir():
        shutil.move(str(work / "snapshots"), str(ctx.out / "snapshots"))
    shutil.copy(work / "metrics.jsonl", ctx.out / "metrics.jsonl") if (work / "metrics.jsonl").exists() else None
    shutil.rmtree(work, ignore_errors=True)
    return {"train_rows": len(rows), **join, **{k: v for k, v in summary.items() if isinstance(v, (int, float))}}


def stage_eval_generate(ctx: StageContext, cfg: RunConfig, which: str) -> dict:
    """Sample test responses from the initial or the trained policy and gold-score them."""
    items = read_pool(ctx.input("prompts", "test.jsonl"))
    spec = cfg.model if which == "initial" else trained_model(ctx)
    pool = gold_scored_samples(cfg, items, spec)
    write_records(ctx.out / "responses.jsonl", pool)
    scores = [s for it in pool for s in it.meta["gold"]]
    return {"mean_gold": sum(scores) / len(scores), "responses": len(scores)}


def gold_scored_samples(cfg: RunConfig, items, model_spec: str, samples: int | None = None):
    """The evaluation samples of ``model_spec`` on ``items`` (test or validation prompts), each with ``meta["gold"]``.

    Same sampling seed for every policy, so initial and trained samples pair up. ``samples``: per prompt
    (default ``eval_samples``)."""
    from .goldjudge import BenchPrompt, get_task

    pool = _generate(cfg, items, model_spec, samples or cfg.eval_samples, cfg.eval_temperature, cfg.seed + 7919)
    task = get_task(cfg.task)
    for it in pool:
        bp = BenchPrompt.from_dict(it.meta["bench"])
        it.meta["gold"] = [task.score(bp, r) for r in it.responses]
    return pool


def gold_by_prompt(pool) -> dict[str, list[float]]:
    """Prompt id -> the gold scores of its samples (``meta["gold"]``, written by the eval stages)."""
    return {it.id: list(it.meta["gold"]) for it in pool}


def initial_baselines(init_pool, task_name: str) -> dict:
    """What the initial policy and a canned format-stuffed reply score on the test split."""
    from .goldjudge import BenchPrompt, canned_reply_baseline, get_task, unrequested_format_rate

    task = get_task(task_name)
    prompts = [BenchPrompt.from_dict(it.meta["bench"]) for it in init_pool]
    scores = [s for it in init_pool for s in it.meta["gold"]]
    return {"gold_initial": sum(scores) / len(scores),
            "canned_reply_baseline": canned_reply_baseline(prompts, task=task),
            "canned_reply_ungated": canned_reply_baseline(prompts, task=task, gated=False),
            "unrequested_format_initial": unrequested_format_rate(*_flat_responses(init_pool))}


def _flat_responses(pool) -> tuple[list, list[str]]:
    from .goldjudge import BenchPrompt

    return ([BenchPrompt.from_dict(it.meta["bench"]) for it in pool for _ in it.responses],
            [r for it in pool for r in it.responses])


def rule_pass_rates(pool, task_name: str) -> dict[str, float]:
    """Per rule (house-style rule, IFEval instruction id): the share of the responses it applies to that meet it.

    ``{}`` for a task without rules (``check``)."""
    from collections import Counter

    from .goldjudge import get_task

    task = get_task(task_name)
    if not hasattr(task, "check"):
        return {}
    met, seen = Counter(), Counter()
    for prompt, response in zip(*_flat_responses(pool)):
        for name, ok in task.check(prompt, response).items():
            seen[name] += 1
            met[name] += bool(ok)
    return {name: met[name] / seen[name] for name in sorted(seen)}


def stage_evaluate(ctx: StageContext, cfg: RunConfig) -> dict:
    """Trained vs initial: per-prompt win rates over all sample pairs, bootstrapped over test prompts."""
    from .goldjudge import unrequested_format_rate
    from .paired import base_question, mean_ci, prompt_win_rates

    init = read_pool(ctx.input("eval_initial", "responses.jsonl"))
    trained = read_pool(ctx.input("eval_trained", "responses.jsonl"))
    by_prompt = prompt_win_rates(gold_by_prompt(trained), gold_by_prompt(init))
    write_json(ctx.out / "prompt_win_rates.json", by_prompt)
    win = mean_ci(by_prompt, seed=cfg.seed)  # clustered by base question (paired.base_question)
    a = [s for it in trained for s in it.meta["gold"]]
    result = {"task": cfg.task, "win_rate": win.value, "win_rate_low": win.low, "win_rate_high": win.high,
              "test_prompts": len(by_prompt), "test_questions": len({base_question(k) for k in by_prompt}),
              **initial_baselines(init, cfg.task), "gold_trained": sum(a) / len(a),
              **{f"rules_{name}": rates for name, pool in (("initial", init), ("trained", trained))
                 if (rates := rule_pass_rates(pool, cfg.task))},
              "unrequested_format_trained": unrequested_format_rate(*_flat_responses(trained)),
              "human_labels": ctx.run.manifest.get("human_labels_spent", 0)}
    write_json(ctx.out / "result.json", result)
    return result


def build_stages(cfg: RunConfig) -> list[Stage]:
    gen = _settings(cfg, "model", "dtype", "n", "temperature", "top_p", "max_new_tokens", "seed", "backend")
    ev = _settings(cfg, "model", "dtype", "eval_samples", "eval_temperature", "top_p", "max_new_tokens", "seed",
                   "task", "backend")
    train = Stage("train", lambda c: stage_train(c, cfg),
                  {**_settings(cfg, "weights", *TRAIN_FLAT, "seed", "annotator"), **added_train_settings(cfg),
                   **({"snapshot_every": cfg.validation.every} if cfg.validation.every else {})},
                  ("select", "label", "annotate"))
    chosen = chosen_inputs(cfg)  # validate, and the human-only training it may choose
    return [
        Stage("prompts", lambda c: stage_prompts(c, cfg),
              {**_settings(cfg, "task", "train_prompts", "test_prompts", "seed"),  # older runs keep their key:
               **({"questions": cfg.questions} if cfg.questions != RunConfig().questions else {})}),
        Stage("pool", lambda c: stage_pool(c, cfg), gen, ("prompts",)),
        Stage("embed", lambda c: stage_embed(c, cfg),
              _settings(cfg, "embedder", *(("model", "dtype") if cfg.embedder == "policy" else ())), ("pool",)),
        Stage("select", lambda c: stage_select(c, cfg),
              {**_settings(cfg, "strategy", "seed", "annotator", "pairs_per_prompt"),
               "budget": cfg.human_budget()}, ("pool", "embed")),
        Stage("label", lambda c: stage_label(c, cfg), _settings(cfg, "task", "judge"), ("select",)),
        Stage("annotate", lambda c: stage_annotate(c, cfg),
              {**_settings(cfg, "annotator", "model", "weak_model", "seed", "beta"),  # older runs keep their keys:
               **({"end_of_response": True} if cfg.end_of_response else {}),
               **({"hybrid": dataclasses.asdict(cfg.hybrid)} if cfg.annotator == "hybrid" else {})},
              ("select", "label")),
        train,
        *([dataclasses.replace(train, name=HUMAN_ONLY_STAGE, fn=lambda c: stage_train(c, cfg, human_only=True),
                               settings={**train.settings, "human_only": True})] if HUMAN_ONLY_STAGE in chosen else []),
        *([Stage("validate", lambda c: stage_validate(c, cfg, gold_scored_samples),
                 {**ev, "validation": cfg.validation.identity(), "questions": cfg.questions, "held_out": "questions"},
                 ("prompts", "train", *(s for s in chosen if s != "validate")))] if chosen else []),
        Stage("eval_initial", lambda c: stage_eval_generate(c, cfg, "initial"), ev, ("prompts",)),
        Stage("eval_trained", lambda c: stage_eval_generate(c, cfg, "trained"), ev, ("prompts", "train", *chosen)),
        Stage("evaluate", lambda c: stage_evaluate(c, cfg), {**_settings(cfg, "task", "seed"), "win_rate": "all-sample-pairs"},
              ("eval_initial", "eval_trained", "label")),
    ]


def run_recipe(cfg: RunConfig, log=print) -> dict:
    """Run (or resume) every stage; return the evaluation result plus the annotator's agreement."""
    cfg.validate()
    cfg = cfg.resolved()
    with RunLock(cfg.output_dir, log):
        run = RunDir(cfg.output_dir, dataclasses.asdict(cfg))
        run.manifest["seeds"] = {"run": cfg.seed}
        for stage in build_stages(cfg):
            run.run(stage, log=log)
    result = dict(run.summary("evaluate"))
    annotate = run.summary("annotate")
    result.update({k: v for k, v in annotate.items() if k != "annotated"})
    result["auto_labels"] = annotate.get("annotated", 0)
    if cfg.validation.every and (chosen := run.summary("validate")):  # the step the test split evaluated
        result["chosen_step"] = f"{chosen.get('chosen', chosen['chosen_step'])} of {chosen['steps_trained']}"
    result["recipe"] = cfg.describe()
    result["precision"] = cfg.train.precision
    return result

"""The label-efficiency study: many arms (method × budget × strategy × seed) on one shared pool.

Layout of ``output_dir``::

    shared/                 a RunDir with the stages every arm shares, run once:
                            prompts (train/test split), pool (N samples per train
                            prompt), embed (the pool's response embeddings),
                            eval_initial (gold-scored test samples of the initial policy)
    arms/<arm>/             one RunDir per arm (``<method>-b<budget>-<strategy>-s<seed>``);
                            its prompts/pool/embed/eval_initial stages *import* the shared
                            outputs (hard links, else copies), keyed by the shared
                            stage's key, then select → label → annotate → train
                            (→ spa) → eval_trained → evaluate run as in ``frugalign run``
    summary.json            settings, one row per arm (with its per-prompt win rates), the
                            seed-pooled cells and the paired comparisons (rewritten after
                            every arm; see :mod:`frugalign.study_summary`)
    curve.png               win rate vs human labels, one line per method
    report.html, results.md the report

Every stage keeps :class:`~frugalign.pipeline.RunDir`'s semantics: a finished
arm is skipped on rerun, a killed study resumes in the arm it was in, and a
change of shared settings (prompts, pool) redoes every arm downstream of it.

Methods (``methods``):

``dpo-100``   DPO on gold labels for every training prompt (budget and strategy do not apply)
``dpo-seed``  DPO on the human (gold) seed labels only
``cw-dpo``    CW-PO: a weak judge trained on the seed annotates the rest; loss weighted by confidence
``hybrid``    the hybrid annotator (frugalign.annotate.hybrid), calibrated on the seed and gated by
              cross-validated confidence, labels the rest; CW-PO confidence weights
``drsow``     Dr.SoW density ratio (policy over ``weak_model``) annotates everything; zero labels
``spa``       DPO on the seed, then ``spa.rounds`` SPA self-annotation rounds (frugalign.spa)
              on the training prompts the seed did not use
``combined``  ``hybrid``, then SPA's rounds (decoupled noise detection, self-refinement α) from it

Matched training: set ``train.max_steps`` and every arm's first training takes exactly
that many optimizer steps (small label sets are cycled); SPA's rounds keep their own
one-epoch schedule. Each row records its ``steps`` (first training + SPA rounds).
With ``validation.every`` set as well, every arm trains those steps, keeps a model every
``every`` steps, and evaluates the one that scores best on validation prompts
(:mod:`frugalign.validation`): early stopping, the same candidates for every arm. The
row's ``steps`` is then the chosen step, ``steps_trained`` the steps run.

Seeds: the shared pool and the initial-policy evaluation use ``seed``; each arm's
``seeds`` entry drives its selection, training and trained-policy sampling.

``variants`` (optional) names sets of training settings; every method × budget ×
strategy × seed arm then runs once per variant (a sweep on one shared pool).

Resuming: arms already in the summary file (``summary``, default
``output_dir/summary.json``) are not rerun, so a committed summary can be completed
on a fresh machine, provided its settings and shared pool are the same.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import recipe
from .config import block, flat_settings, normalize, updated
from .data import read_optional, read_pool, write_json, write_records
from .errors import ConfigError
from .faults import kill_point
from .pipeline import RunDir, RunLock, Stage, StageContext
from .recipe import RunConfig
from .spa import RoundSettings
from .study_summary import (
    check_fingerprint,
    load_rows,
    merged_grid,
    shared_fingerprint,
    summary_document,
    write_summary,
)
from .train import NON_MATH
from .validation import chosen_inputs, trained_model

METHODS = {
    # method: (RunConfig overrides, uses budget, uses strategy)
    "dpo-100": (dict(annotator="gold", weights="none"), False, False),
    "dpo-seed": (dict(annotator="none", weights="none"), True, True),
    "cw-dpo": (dict(annotator="weak-judge", weights="confidence"), True, True),
    "hybrid": (dict(annotator="hybrid", weights="confidence"), True, True),
    "drsow": (dict(annotator="density-ratio", weights="none", budget=0.0), False, False),
    "spa": (dict(annotator="none", weights="none"), True, True),
    "combined": (dict(annotator="hybrid", weights="confidence"), True, True),
}
# Methods whose arm continues with SPA rounds (frugalign.spa) after its first training.
SPA_METHODS = ("spa", "combined")
SHARED_STAGES = ("prompts", "pool", "embed", "eval_initial")
# Settings of the shared stages: a variant must not change them (its arms would not share the pool).
SHARED_SETTINGS = ("task", "judge", "model", "dtype", "seed", "train_prompts", "test_prompts", "n", "temperature",
                   "top_p", "max_new_tokens", "backend", "eval_samples", "eval_temperature", "train.precision", "embedder")
METHOD_SETTINGS = ("annotator", "weights", "budget", "strategy", "train.self_refine_alpha")
GRID = ("output_dir", "methods", "budgets", "strategies", "seeds", "method_seeds", "variants", "summary", "progress")


@dataclass
class SpaArmSettings(RoundSettings):
    """The spa method's rounds: :class:`~frugalign.spa.RoundSettings` and what their training changes.

    The rounds train with the arm's ``train`` block except ``epochs`` and the
    self-refinement ``alpha`` (SPA's one epoch per round, α 0.1).
    """

    epochs: float = field(default=1.0, metadata={"help": "training epochs per round"})
    alpha: float = field(default=0.1, metadata={"help": "SPA self-refinement label smoothing"})


@dataclass
class StudyConfig(RunConfig):
    """Every :class:`RunConfig` setting (shared by all arms) plus the study grid.

    ``budget``, ``strategy``, ``annotator``, ``weights`` and ``train.self_refine_alpha``
    are set per arm from the method and the grid; ``seed`` seeds the shared pool.
    """

    output_dir: str = "runs/study"
    methods: list = field(default_factory=lambda: ["dpo-100", "dpo-seed", "cw-dpo", "drsow", "spa", "combined"],
                          metadata={"help": " | ".join(METHODS)})
    budgets: list = field(default_factory=lambda: [0.3], metadata={"help": "human-label budgets (fraction <= 1 or count)"})
    strategies: list = field(default_factory=lambda: ["random", "dissimilar"], metadata={"help": "selection strategies"})
    seeds: list = field(default_factory=lambda: [0], metadata={"help": "arm seeds (selection, training, sampling)"})
    method_seeds: dict = field(default_factory=dict, metadata={"help": "method -> its own seeds (e.g. drsow: [0]; "
                                                                       "a zero-label method needs fewer)"})
    spa: SpaArmSettings = block(SpaArmSettings, "the spa method's rounds (frugalign.spa)",
                                legacy=("rounds", "k", "temperature", "epochs", "alpha"), prefix="spa_")
    variants: dict = field(default_factory=dict, metadata={"help": "name -> training settings; every arm once per variant"})
    summary: str = field(default="", metadata={"help": "summary file to write and resume from (default output_dir/summary.json)"})

    def validate(self) -> None:
        super().validate()
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"methods={self.methods}: expected some of {list(METHODS)}")
        try:
            self.budgets = [float(b) for b in self.budgets]
            self.seeds = [int(s) for s in self.seeds]
        except (TypeError, ValueError):
            raise ConfigError(f"budgets must be numbers and seeds integers: {self.budgets}, {self.seeds}") from None
        if not self.budgets or any(b <= 0 for b in self.budgets):
            raise ConfigError(f"budgets must be > 0 (drsow is the zero-label arm), got {self.budgets}")
        if not self.strategies or not self.seeds:
            raise ConfigError("need at least one strategy and one seed")
        bad = [m for m, v in self.method_seeds.items() if m not in METHODS or not isinstance(v, list) or not v]
        if bad:
            raise ConfigError(f"method_seeds: {bad[0]!r} must be a method mapped to a list of seeds")
        self.method_seeds = {m: [int(x) for x in v] for m, v in self.method_seeds.items()}
        if "spa" in self.methods:
            self.spa.validate()
        known = set(flat_settings(RunConfig()))
        for name, over in self.variants.items():
            if not isinstance(over, dict) or not str(name).replace("_", "").isalnum():
                raise ConfigError(f"variants: {name!r} must be a plain name mapped to settings")
            over = normalize(RunConfig, over)
            bad = sorted(set(over) - known) or sorted(set(over) & set(SHARED_SETTINGS + METHOD_SETTINGS))
            if bad:
                raise ConfigError(f"variants: {name!r} cannot set {bad[0]!r} (unknown, shared by all arms, or set by "
                                  "the method)")

    def summary_path(self) -> Path:
        return Path(self.summary) if self.summary else Path(self.output_dir) / "summary.json"

    def settings(self) -> dict:
        """Everything that shapes the numbers except the grid (what a resumed summary must match).

        Flat, by the names a committed summary has (``lr``, ``spa_rounds``; settings
        added since as ``train.warmup_ratio``), so it still resumes and compares.
        """
        return {k: v for k, v in flat_settings(self, legacy=True).items()
                if k not in GRID and k.removeprefix("train.") not in NON_MATH}

    def run_config(self, **overrides) -> RunConfig:
        """One arm's (or the shared stages') :class:`RunConfig`: these settings with ``overrides`` (any names)."""
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(RunConfig)}
        return updated(RunConfig(**base), overrides)


@dataclass(frozen=True)
class Arm:
    method: str
    budget: float
    strategy: str
    seed: int
    variant: str = ""

    @property
    def name(self) -> str:
        return f"{self.method}-b{self.budget:g}-{self.strategy}-s{self.seed}" + (f"-{self.variant}" if self.variant else "")


def expand_arms(cfg: StudyConfig) -> list[Arm]:
    """The grid, without duplicates: methods without a budget/strategy get one arm per seed."""
    arms: list[Arm] = []
    all_seeds = list(dict.fromkeys([*cfg.seeds, *(s for v in cfg.method_seeds.values() for s in v)]))
    for variant in list(cfg.variants) or [""]:
        for seed in all_seeds:
            for method in cfg.methods:
                if seed not in cfg.method_seeds.get(method, cfg.seeds):
                    continue
                over, uses_budget, uses_strategy = METHODS[method]
                budgets = cfg.budgets if uses_budget else [over.get("budget", 1.0)]
                strategies = cfg.strategies if uses_strategy else [over.get("strategy", "all" if method == "dpo-100" else "none")]
                for b in budgets:
                    for s in strategies:
                        arm = Arm(method, float(b), s, int(seed), variant)
                        if arm not in arms:
                            arms.append(arm)
    return arms


def arm_config(cfg: StudyConfig, arm: Arm) -> RunConfig:
    over = dict(METHODS[arm.method][0])
    over.setdefault("budget", arm.budget)
    strategy = arm.strategy if arm.strategy in ("random", "dissimilar", "similar") else "random"
    over.setdefault("strategy", strategy)
    over.setdefault("train.self_refine_alpha", 0.0)
    over.update(normalize(RunConfig, cfg.variants.get(arm.variant, {})))
    return cfg.run_config(output_dir=str(Path(cfg.output_dir) / "arms" / arm.name), seed=arm.seed, **over)


# ---------------------------------------------------------------- stages
def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def stage_import(ctx: StageContext, src: Path) -> dict:
    """Bring a finished shared stage into an arm: hard links (copies across filesystems)."""
    shutil.copytree(src, ctx.out, dirs_exist_ok=True, copy_function=_link_or_copy)
    return {"shared_from": str(src)}


def stage_spa(ctx: StageContext, cfg: RunConfig, study: StudyConfig) -> dict:
    """SPA rounds from the seed-trained policy on the training prompts the seed did not label."""
    from .data import read_pairs
    from .spa import IterateConfig, iterate

    prompts = read_pool(ctx.input("prompts", "train.jsonl"))
    seeded = {p.prompt_id for p in read_optional(read_pairs, ctx.input("select", "human_pairs.jsonl"))}
    new = [p for p in prompts if p.id not in seeded]
    if len(new) < study.spa.rounds:
        new = prompts  # tiny grids: reuse the seed prompts rather than fail
    write_records(ctx.out / "prompts.jsonl", new)
    work = ctx.run.path / "work" / f"spa-{ctx.run.manifest['stages'][ctx.name]['key']}"
    spa = study.spa
    rounds = {f.name: getattr(spa, f.name) for f in dataclasses.fields(RoundSettings)}
    # max_steps matches the arms' first training; a round is SPA's own schedule (spa.epochs)
    icfg = IterateConfig(**rounds, prompts=str(ctx.out / "prompts.jsonl"), policy=trained_model(ctx),
                         output_dir=str(work), init_model=cfg.model, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                         generation_batch_size=cfg.gen_batch_size, seed=cfg.seed, progress=cfg.progress,
                         train=dataclasses.replace(cfg.train, epochs=spa.epochs, self_refine_alpha=spa.alpha,
                                                   noise_lambda=0.0, max_steps=None))  # λ: the rounds' schedule
    result = iterate(icfg)
    if not result.get("final_model"):
        raise ConfigError(f"SPA rounds stopped early in {work}; rerun to resume")
    agreement = _spa_agreement(cfg, work, study.spa.rounds, ctx.out)
    rounds = [{"round": r["round"], "pairs": r.get("pairs"), "skipped": r.get("skipped"),
               "steps": r.get("train", {}).get("steps", 0)} for r in result["rounds"]]
    for r, record in zip(rounds[:-1], result["rounds"]):  # the last round is the arm's own evaluation
        r.update(_round_win_rate(ctx, cfg, record["train"]["final_model"]))
    write_json(ctx.out / "rounds.json", rounds)
    shutil.move(result["final_model"], str(ctx.out / "model"))
    shutil.rmtree(work, ignore_errors=True)
    return {"spa_pairs": sum(r["pairs"] or 0 for r in rounds), "spa_steps": sum(r["steps"] or 0 for r in rounds),
            "rounds": len(rounds), "round_win_rates": [{k: r[k] for k in ("round", "win_rate", "ci_low", "ci_high")}
                                                       for r in rounds if "win_rate" in r], **agreement}


def _round_win_rate(ctx: StageContext, cfg: RunConfig, model: str) -> dict:
    """An intermediate SPA round's policy against the initial one: the same test samples and interval as the arm's."""
    from .paired import mean_ci, prompt_win_rates

    init = read_pool(ctx.input("eval_initial", "responses.jsonl"))
    pool = recipe.gold_scored_samples(cfg, read_pool(ctx.input("prompts", "test.jsonl")), model)
    by_prompt = prompt_win_rates(recipe.gold_by_prompt(pool), recipe.gold_by_prompt(init))
    win = mean_ci(by_prompt, seed=cfg.seed)  # clustered by base question
    return {"win_rate": win.value, "ci_low": win.low, "ci_high": win.high, "prompt_win_rates": by_prompt}


def _spa_agreement(cfg: RunConfig, work: Path, rounds: int, out: Path) -> dict:
    """Score SPA's self-annotations of every round against the gold judge, like any annotator's."""
    from .data import read_annotations, read_pairs

    pairs, anns = [], []
    for i in range(1, rounds + 1):
        rdir = work / f"round-{i}"
        if not (rdir / "annotations.jsonl").exists():
            continue
        bench = {it.id: it.meta.get("bench") for it in read_pool(rdir / "pool.jsonl")}
        for p in read_pairs(rdir / "judged_pairs.jsonl"):  # the gold judge reads the prompt's constraints
            pairs.append(dataclasses.replace(p, id=f"r{i}:{p.id}", meta={**p.meta, "bench": bench.get(p.prompt_id)}))
        anns += [dataclasses.replace(a, pair_id=f"r{i}:{a.pair_id}") for a in read_annotations(rdir / "annotations.jsonl")]
    if not pairs:
        return {}
    return recipe.annotator_agreement(anns, recipe.gold_labels(cfg, pairs, "gold"), out)


def spa_stage_settings(cfg: RunConfig, study: StudyConfig) -> dict:
    """The spa stage's key settings by their flat names; ``spa.*`` settings added since only when set."""
    ours, arm = flat_settings(study, legacy=True), flat_settings(cfg, legacy=True)
    out = {k: ours[k] for k in ("spa_rounds", "spa_k", "spa_temperature", "spa_epochs", "spa_alpha")}
    out.update({k: arm[k] for k in ("model", "finetune", "lr", "beta", "batch_size", "max_length", "max_new_tokens",
                                    "top_p", "seed", "lora_r", "lora_alpha", "lora_layers")})
    default = flat_settings(StudyConfig())
    out.update({k: v for k, v in ours.items() if k.startswith("spa.") and v != default[k]})
    return out


def build_arm_stages(cfg: RunConfig, study: StudyConfig, shared: RunDir, *, spa: bool = False) -> list[Stage]:
    """The recipe's stages with the shared ones imported (and SPA rounds for the spa method)."""
    imports, stages = [], []
    for st in recipe.build_stages(cfg):
        if st.name in SHARED_STAGES:  # imported first: they are ready
            rec = shared.manifest["stages"][st.name]
            imports.append(Stage(st.name, lambda c, src=shared.stage_dir(st.name): stage_import(c, src),  # noqa: B008
                                 {"shared_key": rec["key"]}))
        else:
            stages.append(st)
    stages = imports + stages
    if spa:
        i = [s.name for s in stages].index("train")
        spa_settings = spa_stage_settings(cfg, study)
        chosen = chosen_inputs(cfg)  # SPA starts from the model validation chose
        stages.insert(i + 1 + len(chosen), Stage("spa", lambda c: stage_spa(c, cfg, study), spa_settings,
                                                 ("prompts", "select", "train", "eval_initial", *chosen)))
        k = [s.name for s in stages].index("eval_trained")
        orig = stages[k]

        def eval_spa(c: StageContext) -> dict:
            view = dataclasses.replace(c, inputs={"prompts": c.inputs["prompts"], "train": c.inputs["spa"]})
            return recipe.stage_eval_generate(view, cfg, "trained")

        stages[k] = Stage("eval_trained", eval_spa, orig.settings, ("prompts", "spa"))
    return stages


# ---------------------------------------------------------------- the study
def run_shared(cfg: StudyConfig, log=print) -> RunDir:
    shared_cfg = cfg.run_config(output_dir=str(Path(cfg.output_dir) / "shared"))
    run = RunDir(shared_cfg.output_dir, dataclasses.asdict(shared_cfg))
    run.manifest["seeds"] = {"pool": cfg.seed}
    for st in recipe.build_stages(shared_cfg):
        if st.name in SHARED_STAGES:
            run.run(st, log=lambda m: log(f"shared {m}"))
    return run


def run_arm(cfg: StudyConfig, arm: Arm, shared: RunDir, log=print) -> dict:
    """Run (or resume) one arm; its summary row, per-prompt win rates included."""
    import json
    import time

    t0 = time.time()
    acfg = arm_config(cfg, arm)
    acfg.validate()
    run = RunDir(acfg.output_dir, dataclasses.asdict(acfg))
    run.manifest["seeds"] = {"arm": arm.seed, "pool": cfg.seed}
    spa = arm.method in SPA_METHODS
    for st in build_arm_stages(acfg, cfg, shared, spa=spa):
        run.run(st, log=lambda m: log(f"{arm.name} {m}"))
    result = dict(run.summary("evaluate"))
    ann = run.summary("annotate")
    rounds = run.summary("spa") if spa else {}
    keep = ("agreement_with_gold", "agreement_n", "kappa", "ece", "kept_fraction")
    labels = run.summary("label")
    train = run.summary("train")
    chosen = run.summary("validate") if acfg.validation.every else {}  # a manifest keeps an earlier run's
    spa_steps = rounds.get("spa_steps", 0)
    return {"arm": arm.name, "task": cfg.task, "method": arm.method, "budget": arm.budget, "strategy": arm.strategy,
            "seed": arm.seed, "variant": arm.variant, "human_labels": result.get("human_labels", 0),
            "human_ties": labels.get("human_ties", 0), "train_rows": train.get("train_rows"),
            "steps": (chosen["chosen_step"] if chosen else train.get("steps") or 0) + spa_steps,  # 0: the initial
            **({"steps_trained": (train.get("steps") or 0) + spa_steps,
                "validation_chose": chosen.get("chosen", str(chosen["chosen_step"])),  # human-only/N: no auto labels
                "validation_mean_gold": chosen["validation_mean_gold"],
                "validation_responses": chosen["validation_responses"]} if chosen else {}),
            **({"spa": {k: v for k, v in rounds.items()
                        if k in ("spa_pairs", "spa_steps", "rounds", "round_win_rates", *keep)}}
               if spa else {}),
            "win_rate": result["win_rate"], "ci_low": result["win_rate_low"], "ci_high": result["win_rate_high"],
            **{k: result[k] for k in ("gold_trained", "unrequested_format_trained") if k in result},
            **{k: v for k, v in ann.items() if k in keep},
            "seconds": round(sum(rec.get("seconds", 0) for rec in run.manifest["stages"].values()), 1),
            "wall_seconds_this_call": round(time.time() - t0, 1),
            "prompt_win_rates": json.loads((run.path / "evaluate" / "prompt_win_rates.json").read_text())}


def study_meta(cfg: StudyConfig, shared: RunDir | None, fingerprint: str | None) -> dict:
    from .precision import cpu_description

    return {"settings": cfg.settings(),
            "grid": {k: getattr(cfg, k) for k in ("methods", "budgets", "strategies", "seeds", "method_seeds",
                                                  "variants")},
            "shared_fingerprint": fingerprint, "cpu": cpu_description(),
            "versions": shared.manifest.get("versions", {}) if shared else {},
            "shared_seconds": round(sum(r.get("seconds", 0) for r in shared.manifest["stages"].values()), 1)
            if shared else None}


def run_study(cfg: StudyConfig, log=print) -> dict:
    """Run (or resume) the shared stages and every arm; keep summary.json current; write the curve and report."""
    cfg.validate()
    cfg = cfg.resolved()
    with RunLock(cfg.output_dir, log):  # one writer per study directory (its arms included)
        return _run_locked(cfg, log)


def _run_locked(cfg: StudyConfig, log) -> dict:
    from .plots import label_efficiency_curve_png
    from .report import write_study_report

    out = Path(cfg.output_dir)
    arms = expand_arms(cfg)
    write_json(out / "study.json", {"config": dataclasses.asdict(cfg), "arms": [a.name for a in arms]})
    path = cfg.summary_path()
    done = {r["arm"]: r for r in load_rows(path, study_meta(cfg, None, None), defaults=StudyConfig().settings())}
    shared = run_shared(cfg, log)
    fingerprint = shared_fingerprint(shared.path)
    check_fingerprint(path, list(done.values()), fingerprint)
    meta = study_meta(cfg, shared, fingerprint)
    meta["grid"] = merged_grid(path, meta["grid"])  # a summary extended by several calls lists all of their grids
    baselines = recipe.initial_baselines(read_pool(shared.stage_dir("eval_initial") / "responses.jsonl"), cfg.task)
    rows = list(done.values())  # every arm of the summary stays, also those outside this call's grid
    for n, arm in enumerate(arms, 1):
        if arm.name in done:
            log(f"arm {n}/{len(arms)}: {arm.name} (in {path}, skipped)")
            continue
        log(f"arm {n}/{len(arms)}: {arm.name}")
        rows.append(run_arm(cfg, arm, shared, log))
        write_summary(path, summary_document(meta, rows, baselines, seed=cfg.seed))  # after every arm
        kill_point(f"study:arm:{arm.name}:done")
    order = {name: i for i, name in enumerate(dict.fromkeys([*done, *(a.name for a in arms)]))}
    rows = sorted(rows, key=lambda r: order[r["arm"]])
    document = summary_document(meta, rows, baselines, seed=cfg.seed)
    write_summary(path, document)
    curve = label_efficiency_curve_png(document["cells"], out / "curve.png", total_labels=cfg.candidate_pairs())
    result = {**document, "curve": str(curve), "summary": str(path)}
    result["report"], result["markdown"] = (str(p) for p in write_study_report(out, result))
    return result

"""One readable training loop for the DPO family: DPO / IPO / robust DPO with per-pair
weights (CW-PO), per-pair label smoothing (cDPO) and SPA self-refinement.

Why accelerate directly and not a thin ``transformers.Trainer`` subclass: what this
loop must control is exactly what Trainer hides. The reduction (mean vs. Σw) has to
span the *global* batch across gradient-accumulation micro-steps and processes; SPA's
smoothing must be computed from margins gathered over processes before the loss; a
resume must restore the data order, the scheduler and the SelfRefinement window; and
the forward is custom (prompt shared by chosen and rejected, LM head only on response
tokens). A Trainer subclass would override ``compute_loss``, the sampler, the
collator and the checkpoint hooks, and still divide losses by its own notion of
batch size. Here the step is ~80 lines and every line of it is visible.

How a step works (nanoGPT-style):

* Reference log-probs are **precomputed once** with :class:`LogProbScorer` (same
  tokenisation as training) and stored with the data (``train_data.jsonl``), so no
  reference model sits in memory. With LoRA, ``reference="adapter"`` computes them
  on the fly from the adapter-disabled base instead.
* Each pair is **one packed row** ``prompt | chosen | rejected`` (the prompt is
  encoded once; LM head only on response tokens): see :mod:`frugalign.packing`.
* Global batch = ``batch_size`` pairs, split into micro-steps of
  ``micro_batch_size`` pairs per process; the gradient equals that of one big
  batch whatever the number of processes or micro-steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import typing
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm

from .checkpoints import MetricsLog, load_checkpoint, save_checkpoint, save_final, save_snapshot
from .data import file_digest, write_json, write_records
from .errors import ConfigError
from .faults import kill_point
from .losses import SelfRefinement, get_loss, implicit_margin, recent_window, reduce_losses, reduction_denominator
from .models import DEFAULT_MODEL, add_lora, load_model, lora_targets
from .packing import (
    REF_COLUMNS,
    Example,
    PairLogProbs,
    as_reference,
    build_examples,
    cache_trunks,
    collate,
    first_trainable_layer,
    mixed_logps,
    precompute_reference,
    read_table,
)
from .pipeline import RunDir, RunLock
from .precision import autocast, resolve_precision

# --------------------------------------------------------------------------- settings


# Settings that do not change the numbers a run produces (may differ on resume).
NON_MATH = {"output_dir", "resume", "progress", "save_every", "keep_checkpoints", "tensorboard", "stop_after", "threads",
            "trunk_cache_gb", "snapshot_every"}


@dataclass
class TrainSettings:
    """How to train: the loss, the optimiser, LoRA, precision and checkpointing, without the files.

    :class:`TrainConfig` (``frugalign train``) adds the data, the model and the
    output directory; the recipe, SPA's rounds and the study hold one of these
    as their ``train`` block (``train.lr=6e-4``), each with its own defaults.
    """

    loss: Literal["dpo", "ipo", "robust"] = "dpo"
    beta: float = 0.1
    smoothing: float | None = field(default=None, metadata={"help": "constant label smoothing (cDPO); default: per-pair column"})
    reduction: Literal["mean", "weight_normalized"] = field(default="mean", metadata={
        "help": "mean: Σw·ℓ/n; weight_normalized: Σw·ℓ/Σw (global batch)"})
    ipo_normalize_length: bool = field(default=True, metadata={"help": "IPO on per-token log-ratios, as TRL"})
    self_refine_alpha: float = field(default=0.0, metadata={"help": "SPA smoothing α on flagged pairs (0 = off)"})
    self_refine_warmup: float = 0.2
    self_refine_percentile: float = 10.0
    self_refine_window: int = field(default=0, metadata={"help": "margins in SPA's rolling window (0: a tenth of "
                                                                 "the run's pairs, at least one batch, at most 1024)"})
    noise_lambda: float = field(default=0.0, metadata={"help": "SPA decoupled noise detection λ (margins from (1+λ)h_θ − λh_ref)"})
    finetune: Literal["full", "lora"] = "full"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target: str = "all-linear"
    lora_layers: int = field(default=0, metadata={"help": "LoRA on the top N decoder layers only (0: all); backward "
                                                          "stops below them and their frozen input is cached"})
    trunk_cache_gb: float = field(default=4.0, metadata={"help": "memory for caching the frozen lower layers' output "
                                                                 "across epochs (0: recompute every step)"})
    precision: Literal["auto", "float32", "bf16"] = field(default="auto", metadata={
        "help": "auto: bf16 where the CPU/GPU runs it natively and faster, else float32; bf16: autocast, float32 weights"})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "trade compute for memory"})
    checkpoint_every: int = field(default=1, metadata={"help": "checkpoint every N-th decoder layer (speed vs memory)"})
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = field(default=8, metadata={"help": "pairs per optimiser step (global, all processes)"})
    micro_batch_size: int | None = field(default=4, metadata={"help": "pairs per forward per process (none: batch_size)"})
    lr: float | None = field(default=None, metadata={"help": "default 5e-7 (full, as the SPA paper) or 2e-4 (LoRA)"})
    lr_schedule: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 1024
    lm_head_chunk: int = 256
    save_every: int = field(default=0, metadata={"help": "checkpoint every N steps (0: only when stopping early)"})
    keep_checkpoints: int = 1
    snapshot_every: int = field(default=0, metadata={"help": "also save the model every N steps (snapshots/"
                                                             "step-N; LoRA: the adapter; 0: only the final one)"})
    stop_after: int | None = field(default=None, metadata={"help": "stop (with a checkpoint) after N steps in this call"})
    tensorboard: bool = True
    threads: int | None = None

    def validate(self) -> None:
        for name, tp in typing.get_type_hints(type(self)).items():  # every Literal setting, also when built from Python
            if typing.get_origin(tp) is Literal and getattr(self, name) not in typing.get_args(tp):
                raise ConfigError(f"setting {name}={getattr(self, name)!r}: expected one of {typing.get_args(tp)}")
        checks = [
            (self.smoothing is None or 0 <= self.smoothing < 0.5, f"smoothing must lie in [0, 0.5), got {self.smoothing}"),
            (self.batch_size >= 1 and (self.micro_batch_size or 1) >= 1, "batch_size and micro_batch_size must be >= 1"),
            (self.epochs > 0 and (self.max_steps is None or self.max_steps >= 1), "need epochs > 0 and max_steps >= 1"),
            (self.beta > 0 and self.noise_lambda >= 0 and self.checkpoint_every >= 1, "need beta > 0, noise_lambda >= 0, checkpoint_every >= 1"),
            (self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.lora_layers >= 0 and self.trunk_cache_gb >= 0, "need lora_layers >= 0 and trunk_cache_gb >= 0"),
            (self.snapshot_every >= 0, f"snapshot_every must be >= 0, got {self.snapshot_every}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

        if self.self_refine_window < 0:
            raise ConfigError(f"self_refine_window must be >= 0 (0: automatic), got {self.self_refine_window}")
        SelfRefinement(self.self_refine_alpha, self.self_refine_warmup, self.self_refine_percentile,
                       self.self_refine_window or 1)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.finetune == "lora" else 5e-7)


@dataclass
class TrainConfig(TrainSettings):
    """``frugalign train``: :class:`TrainSettings` plus what to train, on which data, and where."""

    data: str = field(default="", metadata={"help": "training table: prompt, chosen, rejected[, weight, label_smoothing, confidence, ref_*_logps]"})
    output_dir: str = field(default="", metadata={"help": "run directory (checkpoints, metrics, final model)"})
    model: str = DEFAULT_MODEL
    ref_model: str | None = field(default=None, metadata={"help": "reference model (default: the policy at step 0)"})
    reference: Literal["precomputed", "adapter"] = field(default="precomputed", metadata={"help": "adapter: LoRA base with the adapter disabled"})
    weights: Literal["column", "confidence", "none"] = field(default="column", metadata={
        "help": "column: the weight field as written; confidence: CW-PO, machine labels weighted by their confidence, "
                "human labels 1; none: 1 (frugalign.weights)"})
    overflow: Literal["error", "skip", "truncate"] = field(default="error", metadata={"help": "pairs over max_length"})
    seed: int = 0
    device: Literal["cpu", "auto"] = field(default="cpu", metadata={"help": "auto: GPU if present"})
    resume: bool = field(default=True, metadata={"help": "continue from the latest checkpoint in output_dir"})
    progress: bool = True

    def validate(self) -> None:
        super().validate()
        if not (self.data and self.output_dir):
            raise ConfigError("train needs data=... and output_dir=...")
        if self.reference == "adapter" and (self.finetune != "lora" or self.ref_model):
            raise ConfigError("reference=adapter needs finetune=lora and no ref_model")


# --------------------------------------------------------------------------- model


def prepare_model(cfg: TrainConfig, model):
    """Training mode, SDPA (the packed 4-D mask), gradient checkpointing and optional LoRA."""
    if getattr(model.config, "_attn_implementation", "sdpa") != "sdpa":
        model.set_attn_implementation("sdpa")
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        kwargs = {"use_reentrant": False}  # non-reentrant: works with DDP, LoRA and no_grad passes
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
            model.activation_checkpointing_enable(kwargs, every_n_layers=cfg.checkpoint_every)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if cfg.finetune == "lora":
        from peft import LoraConfig

        model = add_lora(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                                 target_modules=lora_targets(model, cfg.lora_target, cfg.lora_layers),
                                                 task_type="CAUSAL_LM"))
    model.train()
    return model


def run_identity(cfg: TrainConfig) -> dict:
    """What makes two runs the same: the settings that change the numbers, the data by its content.

    The data file's path is left out: a resumed run may read the same rows from
    elsewhere (the recipe writes them to a new temporary directory on every attempt).
    """
    identity = {k: v for k, v in asdict(cfg).items() if k not in NON_MATH and k != "data"}
    identity["data_sha256"] = file_digest(cfg.data) if Path(cfg.data).is_file() else cfg.data
    return identity


def open_run_dir(cfg: TrainConfig, *, writer: bool = True) -> tuple[RunDir, bool]:
    """``output_dir`` as a :class:`RunDir` that holds this run, and whether it already did (resume).

    Another run there is a one-line error (:meth:`RunDir.claim`); settings added
    since, left at their defaults, are not a difference. ``writer``: the process
    that writes (the others only check).
    """
    run = RunDir(cfg.output_dir, readonly=not writer)
    legacy = Path(cfg.output_dir) / "config.json"  # a run written before training used RunDir
    if "identity" not in run.manifest and legacy.exists():
        stored = json.loads(legacy.read_text())
        run.manifest["identity"] = stored.get("identity") or {k: v for k, v in stored.get("config", {}).items()
                                                              if k not in NON_MATH}
    resuming = run.claim(run_identity(cfg), defaults=run_identity(type(cfg)()), what="a run")
    if resuming and not cfg.resume:
        raise ConfigError(f"{cfg.output_dir} already holds this run; pass resume=true or use another output_dir")
    return run, resuming


# --------------------------------------------------------------------------- the loop


@dataclass
class Run:
    """Everything a step needs; built by :func:`setup`."""

    cfg: TrainConfig
    accelerator: object
    policy: torch.nn.Module          # the (possibly PEFT-wrapped) causal LM
    scorer: PairLogProbs             # unwrapped pair scorer around ``policy``
    ddp: torch.nn.Module             # ``scorer`` as prepared by accelerate (DDP when multi-process)
    optimizer: torch.optim.Optimizer
    scheduler: object
    refine: SelfRefinement | None
    noise_ref: torch.nn.Module | None  # reference for decoupled noise detection (None: adapter-disabled policy)
    examples: list[Example]
    tokenizer: object
    total_steps: int
    steps_per_epoch: int
    trunk_layer: int = 0            # first trainable layer: the output below it is cached per example
    trunk_bytes: float = 0.0
    start_step: int = 0
    info: dict = field(default_factory=dict)


def batch_indices(run: Run, step: int) -> list[int]:
    """Pairs of global step ``step``: a fresh seeded shuffle per epoch, so resume needs only the step."""
    n, size = len(run.examples), run.cfg.batch_size
    epoch, j = divmod(step, run.steps_per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(run.cfg.seed * 100_003 + epoch))
    return perm[j * size:(j + 1) * size].tolist()


def _gather_valid(acc, x: torch.Tensor, n_valid: int, size: int) -> torch.Tensor:
    """Gather per-pair rows from all processes (padded to ``size``), keeping real pairs in rank order."""
    pad = torch.zeros((size - x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
    valid = (torch.arange(size, device=x.device) < n_valid).long()  # gloo cannot gather bool
    return acc.gather(torch.cat([x, pad]))[acc.gather(valid).bool()]


def reference_logps(run: Run, local: list[Example], batch) -> torch.Tensor:
    if local[0].ref is not None:
        return torch.tensor([e.ref for e in local], dtype=torch.float32, device=batch["targets"].device)
    with torch.no_grad(), as_reference(run.policy, None) as ref:  # LoRA: base model = reference
        return PairLogProbs(ref, run.cfg.lm_head_chunk, False, run.trunk_layer)(batch)[0]


def micro_step(run: Run, local: list[Example], n_valid: int, step: int, denom: float):
    """Forward one micro-batch; return its share of the global loss and per-pair stats."""
    cfg, acc = run.cfg, run.accelerator
    pad = run.tokenizer.pad_token_id or 0
    with autocast(cfg.precision, acc.device):
        run.trunk_bytes = cache_trunks(run.policy, local, run.trunk_layer, pad, acc.device,
                                       cfg.trunk_cache_gb * 2**30, run.trunk_bytes)
    batch = {k: v.to(acc.device) for k, v in collate(local, pad).items()}
    with autocast(cfg.precision, acc.device):
        logps, h = run.ddp(batch)
        ref = reference_logps(run, local, batch)
        flag = logps.detach()
        if run.refine is not None and cfg.noise_lambda > 0:  # decoupled noise detection
            flag = mixed_logps(run.scorer, run.noise_ref, h, batch, cfg.noise_lambda)
    dev = logps.device
    weights = torch.tensor([e.weight for e in local], device=dev)
    eps = torch.tensor([e.smoothing for e in local], device=dev)
    flagged = torch.zeros_like(eps)
    if run.refine is not None:
        margins = implicit_margin(flag[:, 0], flag[:, 1], ref[:, 0], ref[:, 1], beta=cfg.beta)
        spa = run.refine.smoothing(_gather_valid(acc, margins, n_valid, cfg.micro_batch_size),
                                   step=step, total_steps=run.total_steps).to(dev)
        start = acc.process_index * cfg.micro_batch_size  # our rows' place among the gathered ones
        flagged[:n_valid] = spa[start:start + n_valid]
        # two independent flip sources ε₁, ε₂ compose as 1 − 2ε = (1 − 2ε₁)(1 − 2ε₂): still < 0.5
        eps = (1 - (1 - 2 * eps) * (1 - 2 * flagged)) / 2
    extra = {}
    if cfg.loss == "ipo" and cfg.ipo_normalize_length:
        extra = {"chosen_lengths": batch["lengths"][:, 0], "rejected_lengths": batch["lengths"][:, 1]}
    out = get_loss(cfg.loss)(logps[:, 0], logps[:, 1], ref[:, 0], ref[:, 1], beta=cfg.beta, label_smoothing=eps, **extra)
    # this micro-batch's share of the *global* batch's objective Σ w·ℓ / D (see compute_gradients)
    loss = reduce_losses(out.losses, weights, cfg.reduction, denominator=denom)
    stats = torch.stack([out.chosen_rewards, out.rejected_rewards, weights, eps, (flagged > 0).float()], 1)
    return loss, _gather_valid(acc, stats.float(), n_valid, cfg.micro_batch_size)


def compute_gradients(run: Run, batch: list[Example], step: int) -> dict:
    """Accumulate the gradient of the global-batch objective; return its metrics.

    Objective L = Σᵢ wᵢ·ℓᵢ / D with D = n (``reduction=mean``, CW-PO's mean(C·ℓ)) or
    D = Σᵢ wᵢ (``weight_normalized``; 1 if all weights are 0), sums over the whole
    global batch. Each process back-propagates its micro-batches' share times the
    world size, because DDP averages gradients across processes.
    """
    cfg, acc = run.cfg, run.accelerator
    world, rank, mb = acc.num_processes, acc.process_index, cfg.micro_batch_size
    denom = reduction_denominator([e.weight for e in batch], cfg.reduction)
    batch = sorted(batch, key=lambda e: len(e.ids))  # similar lengths share a micro-batch: less padding
    micro = [batch[k:k + mb * world] for k in range(0, len(batch), mb * world)]
    loss_sum, rows = torch.zeros((), device=acc.device), []
    for k, part in enumerate(micro):
        local = part[rank * mb:(rank + 1) * mb]
        n_valid = len(local)
        local = local or [Example(**{**asdict(part[0]), "weight": 0.0})]  # idle process: weight-0 stand-in
        with nullcontext() if k == len(micro) - 1 else acc.no_sync(run.ddp):  # sync grads on the last only
            loss, stats = micro_step(run, local, n_valid, step, denom)
            acc.backward(loss * world)
        loss_sum += loss.detach()
        rows.append(stats)
    s = torch.cat(rows)
    metrics = {"loss": float(acc.reduce(loss_sum, "sum")), "reward_accuracy": float((s[:, 0] > s[:, 1]).float().mean()),
               "margin": float((s[:, 0] - s[:, 1]).mean()), "chosen_reward": float(s[:, 0].mean()),
               "rejected_reward": float(s[:, 1].mean()), "weight": float(s[:, 2].mean()),
               "smoothing": float(s[:, 3].mean()), "pairs": int(s.shape[0]), "reduction": cfg.reduction}
    if run.refine is not None:
        metrics.update(flagged=float(s[:, 4].mean()), tau=run.refine.last_threshold)
    return metrics


def optimizer_update(run: Run) -> dict:
    params = [p for p in run.policy.parameters() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(params, run.cfg.max_grad_norm if run.cfg.max_grad_norm > 0 else float("inf"))
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return {"lr": lr, "grad_norm": float(norm)}


# --------------------------------------------------------------------------- setup and run


def _load_reference(model, spec: str | None, device):
    """A frozen reference: loaded from ``spec``, or a copy of the (untrained) policy."""
    import copy

    ref = load_model(spec, device=str(device))[0] if spec else copy.deepcopy(model)
    ref.eval().requires_grad_(False)
    return ref


def _prepare_data(cfg, acc, model, tokenizer, resuming: bool):
    """Examples with reference log-probs; the main process precomputes and stores them once."""
    stored = Path(cfg.output_dir) / "train_data.jsonl"
    reuse = resuming and stored.exists()  # stored with the data: a resume never recomputes
    rows, refs = read_table(str(stored) if reuse else cfg.data, cfg.weights)
    examples, kept, dropped = build_examples(rows, tokenizer, model, weights=cfg.weights, smoothing=cfg.smoothing,
                                             max_length=cfg.max_length, overflow=cfg.overflow)
    rows, refs = [rows[i] for i in kept], [refs[i] for i in kept]
    need_ref = cfg.reference == "precomputed" and any(r is None for r in refs)
    if need_ref and acc.is_main_process:
        ref = _load_reference(model, cfg.ref_model, acc.device) if cfg.ref_model else model
        precompute_reference(examples, rows, tokenizer, ref, max_length=cfg.max_length, overflow=cfg.overflow,
                             progress=cfg.progress, autocast=lambda: autocast(cfg.precision, acc.device))
        refs = [ex.ref for ex in examples]
    if acc.is_main_process and not reuse:
        write_records(stored, [{**r.to_record(), **dict(zip(REF_COLUMNS, f or ()))} for r, f in zip(rows, refs)])
    acc.wait_for_everyone()
    if need_ref and not acc.is_main_process:
        refs = read_table(str(stored), cfg.weights)[1]
    for ex, f in zip(examples, refs):
        ex.ref = f if cfg.reference == "precomputed" else None
    return examples, dropped


def resolved(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``precision=auto`` resolved for its device and ``micro_batch_size`` set (what a run records)."""
    cfg.validate()
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else "cpu"
    return dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device),
                               micro_batch_size=cfg.micro_batch_size or cfg.batch_size)


def setup(cfg: TrainConfig, model=None, tokenizer=None) -> Run:
    """Validate, load, tokenise, precompute references, build optimiser; resume if asked."""
    from accelerate import Accelerator
    from transformers import get_scheduler

    cfg = resolved(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:  # bf16 is our own autocast (below), so one process can run float32 and bf16 trainings
        acc = Accelerator(cpu=cfg.device == "cpu")
    except ValueError as e:  # accelerate's process-wide state was set up for another device
        raise ConfigError(f"cannot switch device within one process: {str(e).splitlines()[0]}") from None
    run_dir, resuming = open_run_dir(cfg, writer=acc.is_main_process)
    torch.manual_seed(cfg.seed)
    if model is None:
        model, tokenizer = load_model(cfg.model, device=str(acc.device))
    t0 = time.perf_counter()
    examples, dropped = _prepare_data(cfg, acc, model, tokenizer, resuming)
    info = {"pairs": len(examples), "dropped": dropped, "reference_seconds": round(time.perf_counter() - t0, 3),
            "precision": cfg.precision}
    noise_ref = None
    if cfg.self_refine_alpha > 0 and cfg.noise_lambda > 0 and (cfg.finetune == "full" or cfg.ref_model):
        noise_ref = _load_reference(model, cfg.ref_model, acc.device)
    policy = prepare_model(cfg, model)
    trunk = first_trainable_layer(policy) if cfg.trunk_cache_gb > 0 else 0
    info["trunk_layer"] = trunk
    scorer = PairLogProbs(policy, cfg.lm_head_chunk, cfg.gradient_checkpointing, trunk)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    spe = math.ceil(len(examples) / cfg.batch_size)
    total = cfg.max_steps or math.ceil(cfg.epochs * spe)
    scheduler = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=round(cfg.warmup_ratio * total),
                              num_training_steps=total)
    refine = None
    if cfg.self_refine_alpha > 0:
        window = cfg.self_refine_window or recent_window(total * cfg.batch_size, cfg.batch_size)
        refine = SelfRefinement(cfg.self_refine_alpha, cfg.self_refine_warmup, cfg.self_refine_percentile, window)
    run = Run(cfg, acc, policy, scorer, acc.prepare_model(scorer), optimizer, scheduler, refine, noise_ref,
              examples, tokenizer, total, spe, trunk_layer=trunk, info=info)
    done = sorted(p for p in (Path(cfg.output_dir) / "checkpoints").glob("step-*") if (p / "state.json").exists())
    run.start_step = load_checkpoint(run, done[-1]) if resuming and done else 0
    if acc.is_main_process:  # the identity is recorded once the run has really started
        run_dir.manifest.update(config=asdict(cfg), world_size=acc.num_processes)
        run_dir.save()
    return run


def train(cfg: TrainConfig, model=None, tokenizer=None) -> dict:
    """Train; return a summary (also written to ``output_dir/summary.json``).

    ``model``/``tokenizer`` may be passed in (tests, notebooks); otherwise
    ``cfg.model`` is loaded. Stops early with a checkpoint after ``stop_after`` steps.
    """
    cfg = resolved(cfg)
    main = os.environ.get("RANK", "0") == "0"  # under a multi-process launch the main process holds the lock
    with RunLock(cfg.output_dir) if main else nullcontext():
        return _train(cfg, model, tokenizer)


def _train(cfg: TrainConfig, model, tokenizer) -> dict:
    summary_path = Path(cfg.output_dir) / "summary.json"
    if cfg.resume and summary_path.exists() and (Path(cfg.output_dir) / "final").exists():
        open_run_dir(cfg, writer=False)  # refuses another run's directory
        return json.loads(summary_path.read_text())  # already finished: nothing to do
    run = setup(cfg, model, tokenizer)
    acc, log = run.accelerator, MetricsLog(cfg, run.start_step, run.accelerator.is_main_process)
    bar = tqdm(total=run.total_steps, initial=run.start_step, desc="training", unit="step",
               disable=not (cfg.progress and acc.is_main_process))
    last: dict = {}
    for step in range(run.start_step, run.total_steps):
        t0 = time.perf_counter()
        last = compute_gradients(run, [run.examples[i] for i in batch_indices(run, step)], step)
        last.update(optimizer_update(run), seconds=round(time.perf_counter() - t0, 4))
        log.log(step + 1, last)
        bar.update(1)
        bar.set_postfix(loss=f"{last['loss']:.4f}", acc=f"{last['reward_accuracy']:.2f}")
        done = step + 1
        stopping = cfg.stop_after is not None and done - run.start_step >= cfg.stop_after
        kill_point(f"train:step:{done}")
        if cfg.snapshot_every and done < run.total_steps and done % cfg.snapshot_every == 0:
            save_snapshot(run, done)
        if done < run.total_steps and (stopping or (cfg.save_every and done % cfg.save_every == 0)):
            save_checkpoint(run, done)
            kill_point(f"train:checkpoint:{done}")
            if stopping:
                bar.close(), log.close()
                return {"stopped_at": done, "total_steps": run.total_steps, "last": last, **run.info}
    bar.close(), log.close()
    final = save_final(run)
    summary = {"final_model": str(final), "steps": run.total_steps, "last": last, **run.info}
    if acc.is_main_process:
        write_json(summary_path, summary)
    return summary

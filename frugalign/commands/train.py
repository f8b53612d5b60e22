"""``frugalign train``: the DPO family (DPO, IPO, robust DPO) with per-pair weights and label smoothing.

Published variants are settings: DPO = ``--weights none``; cDPO = ``--smoothing 0.1``;
CW-PO = ``--weights confidence``; SPA = ``--self-refine-alpha 0.1 --noise-lambda 0.5``.

    frugalign train --data pairs.jsonl --output-dir runs/dpo --loss dpo --weights confidence
    accelerate launch --multi_gpu --num_processes 2 -m frugalign train --config train.yaml

The settings dataclass lives here, as for every command; :mod:`frugalign.train`
re-exports :class:`TrainConfig` for the Python API.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from ..config import add_config_arguments, build_config
from ..errors import ConfigError
from ..models import DEFAULT_MODEL

# Settings that do not change the numbers a run produces (may differ on resume).
NON_MATH = {"output_dir", "resume", "progress", "save_every", "keep_checkpoints", "tensorboard", "stop_after", "threads",
            "trunk_cache_gb"}


@dataclass
class TrainConfig:
    data: str = field(default="", metadata={"help": "training table: prompt, chosen, rejected[, weight, label_smoothing, confidence, ref_*_logps]"})
    output_dir: str = field(default="", metadata={"help": "run directory (checkpoints, metrics, final model)"})
    model: str = DEFAULT_MODEL
    ref_model: str | None = field(default=None, metadata={"help": "reference model (default: the policy at step 0)"})
    reference: Literal["precomputed", "adapter"] = field(default="precomputed", metadata={"help": "adapter: LoRA base with the adapter disabled"})
    loss: Literal["dpo", "ipo", "robust"] = "dpo"
    beta: float = 0.1
    weights: Literal["column", "confidence", "none"] = field(default="column", metadata={"help": "column: the weight field; confidence: CW-PO"})
    smoothing: float | None = field(default=None, metadata={"help": "constant label smoothing (cDPO); default: per-pair column"})
    reduction: Literal["mean", "weight_normalized"] = field(default="mean", metadata={"help": "mean: Σw·ℓ/n; weight_normalized: Σw·ℓ/Σw (global batch)"})
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
    gradient_checkpointing: bool = True
    checkpoint_every: int = field(default=1, metadata={"help": "checkpoint every N-th decoder layer (speed vs memory)"})
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = field(default=8, metadata={"help": "pairs per optimiser step (global, all processes)"})
    micro_batch_size: int = field(default=4, metadata={"help": "pairs per forward per process"})
    lr: float | None = field(default=None, metadata={"help": "default 5e-7 (full, as the SPA paper) or 2e-4 (LoRA)"})
    lr_schedule: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    max_length: int = 1024
    overflow: Literal["error", "skip", "truncate"] = field(default="error", metadata={"help": "pairs over max_length"})
    lm_head_chunk: int = 256
    device: Literal["cpu", "auto"] = field(default="cpu", metadata={"help": "auto: GPU if present"})
    save_every: int = field(default=0, metadata={"help": "checkpoint every N steps (0: only when stopping early)"})
    keep_checkpoints: int = 1
    resume: bool = field(default=True, metadata={"help": "continue from the latest checkpoint in output_dir"})
    stop_after: int | None = field(default=None, metadata={"help": "stop (with a checkpoint) after N steps in this call"})
    tensorboard: bool = True
    threads: int | None = None
    progress: bool = True

    def validate(self) -> None:
        hints = typing.get_type_hints(TrainConfig)
        for name, tp in hints.items():  # every Literal setting, also when built from Python
            if typing.get_origin(tp) is Literal and getattr(self, name) not in typing.get_args(tp):
                raise ConfigError(f"setting {name}={getattr(self, name)!r}: expected one of {typing.get_args(tp)}")
        checks = [
            (bool(self.data and self.output_dir), "train needs data=... and output_dir=..."),
            (self.smoothing is None or 0 <= self.smoothing < 0.5, f"smoothing must lie in [0, 0.5), got {self.smoothing}"),
            (self.reference != "adapter" or (self.finetune == "lora" and not self.ref_model), "reference=adapter needs finetune=lora and no ref_model"),
            (self.batch_size >= 1 and self.micro_batch_size >= 1, "batch_size and micro_batch_size must be >= 1"),
            (self.epochs > 0 and (self.max_steps is None or self.max_steps >= 1), "need epochs > 0 and max_steps >= 1"),
            (self.beta > 0 and self.noise_lambda >= 0 and self.checkpoint_every >= 1, "need beta > 0, noise_lambda >= 0, checkpoint_every >= 1"),
            (self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.lora_layers >= 0 and self.trunk_cache_gb >= 0, "need lora_layers >= 0 and trunk_cache_gb >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        from ..losses import SelfRefinement  # validates α, warmup, percentile, window

        if self.self_refine_window < 0:
            raise ConfigError(f"self_refine_window must be >= 0 (0: automatic), got {self.self_refine_window}")
        SelfRefinement(self.self_refine_alpha, self.self_refine_warmup, self.self_refine_percentile,
                       self.self_refine_window or 1)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.finetune == "lora" else 5e-7)


def register(sub) -> None:
    p = sub.add_parser("train", help="train a policy with DPO / IPO / robust DPO, weights and smoothing",
                       description="DPO / IPO / robust DPO with per-pair weights (CW-PO), label smoothing (cDPO) and "
                       "SPA self-refinement; full or LoRA; runs under `accelerate launch`.")
    add_config_arguments(p, TrainConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = build_config(TrainConfig, args)
    from ..train import train

    summary = train(cfg)
    last = summary.get("last") or {}
    where = summary.get("final_model") or f"checkpoint at step {summary.get('stopped_at')}"
    print(f"trained {summary.get('pairs', '?')} pairs, step {summary.get('steps', summary.get('stopped_at'))}: "
          f"loss {last.get('loss', float('nan')):.4f}, reward accuracy {last.get('reward_accuracy', float('nan')):.2f} -> {where}")
    return 0

"""``frugalign iterate``: SPA's self-annotation rounds from a seed-trained policy.

    frugalign train --data seed.jsonl --output-dir runs/seed epochs=3
    frugalign iterate --policy runs/seed/final --prompts prompts.jsonl --output-dir runs/spa rounds=2

The settings dataclass lives here, as for every command; :mod:`frugalign.iterate`
re-exports :class:`IterateConfig` for the Python API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import add_config_arguments, build_config
from ..errors import ConfigError
from ..models import DEFAULT_MODEL


@dataclass
class IterateConfig:
    prompts: str = field(default="", metadata={"help": "new prompts (id, prompt[, system, domain]); split across rounds"})
    policy: str = field(default="", metadata={"help": "the seed-trained policy (round 1 starts from it)"})
    output_dir: str = ""
    init_model: str = field(default=DEFAULT_MODEL, metadata={"help": "π_init, the initial model: reference of the judging reward"})
    rounds: int = 2
    prompts_per_round: int | None = field(default=None, metadata={"help": "default: all prompts split evenly"})
    k: int = field(default=2, metadata={"help": "responses sampled per prompt"})
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 96
    generation_batch_size: int = 16
    backend: str = field(default="auto", metadata={"help": "sampling: auto | fast | transformers | vllm"})
    beta: float = 0.1
    min_reward_gap: float = field(default=0.0, metadata={"help": "drop prompts whose best-worst reward gap is <= this (ties)"})
    lambdas: list | None = field(default=None, metadata={"help": "noise-detection λ per round (default 1/2, 1/4, 1/8, ...)"})
    weights: Literal["none", "confidence"] = field(default="none", metadata={"help": "confidence: weight pairs by 2σ(r⁺−r⁻)−1"})
    loss: Literal["dpo", "ipo", "robust"] = "dpo"
    self_refine_alpha: float = 0.1
    self_refine_warmup: float = 0.2
    finetune: Literal["full", "lora"] = "full"
    lr: float | None = None
    epochs: float = 1.0
    batch_size: int = 8
    micro_batch_size: int = 4
    precision: Literal["auto", "float32", "bf16"] = field(default="auto", metadata={"help": "auto: bf16 only where native and faster"})
    max_length: int = 1024
    train: dict = field(default_factory=dict, metadata={"help": "any other train setting (YAML mapping)"})
    seed: int = 0
    device: Literal["cpu", "auto"] = "cpu"
    progress: bool = True

    def validate(self) -> None:
        if not (self.prompts and self.policy and self.output_dir):
            raise ConfigError("iterate needs prompts=..., policy=... and output_dir=...")
        if self.rounds < 1 or self.k < 2:
            raise ConfigError(f"need rounds >= 1 and k >= 2 (a pair needs two responses), got {self.rounds}, {self.k}")
        if self.lambdas is not None:
            try:
                self.lambdas = [float(x) for x in self.lambdas]
            except (TypeError, ValueError):
                raise ConfigError(f"lambdas must be numbers, got {self.lambdas!r}") from None
            if len(self.lambdas) < self.rounds or any(x < 0 for x in self.lambdas):
                raise ConfigError(f"need one λ >= 0 per round ({self.rounds}), got {self.lambdas}")
        if self.beta <= 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        from ..backends import BACKENDS

        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown generation backend {self.backend!r}; available: {', '.join(BACKENDS)}")

    def noise_lambda(self, round_index: int) -> float:
        """λ for round ``round_index`` (1-based): the paper's 1/2, 1/4, 1/8, ... unless given."""
        return self.lambdas[round_index - 1] if self.lambdas is not None else 0.5 ** round_index


def register(sub) -> None:
    p = sub.add_parser("iterate", help="SPA rounds: sample, self-annotate with the implicit reward, train",
                       description="From a seed-trained policy, each round samples K responses for new prompts, "
                       "judges them with the policy's implicit reward against the initial model, builds min-max "
                       "pairs and trains one epoch with self-refinement. Every round is saved and resumable.")
    add_config_arguments(p, IterateConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = build_config(IterateConfig, args)
    from ..iterate import iterate

    summary = iterate(cfg)
    for r in summary["rounds"]:
        print(f"round {r['round']}: {r['pairs']} pairs from {r['prompts']} prompts (λ={r['noise_lambda']}), "
              f"final loss {r['train'].get('last', {}).get('loss', float('nan')):.4f}")
    print(f"final policy -> {summary['final_model']}")
    return 0

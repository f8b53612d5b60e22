"""``frugalign train``: the DPO family (DPO, IPO, robust DPO) with per-pair weights and label smoothing.

Published variants are settings: DPO = ``--weights none``; cDPO = ``--smoothing 0.1``;
CW-PO = ``--weights confidence``; SPA = ``--self-refine-alpha 0.1 --noise-lambda 0.5``.

    frugalign train --data pairs.jsonl --output-dir runs/dpo --loss dpo --weights confidence
    accelerate launch --multi_gpu --num_processes 2 -m frugalign train --config train.yaml

The settings (:class:`frugalign.train.TrainConfig`) live with the training loop.
"""

from __future__ import annotations

from ..config import add_config_arguments, build_config


def register(sub) -> None:
    from ..train import TrainConfig

    p = sub.add_parser("train", help="train a policy with DPO / IPO / robust DPO, weights and smoothing",
                       description="DPO / IPO / robust DPO with per-pair weights (CW-PO), label smoothing (cDPO) and "
                       "SPA self-refinement; full or LoRA; runs under `accelerate launch`.")
    add_config_arguments(p, TrainConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import TrainConfig, train

    cfg = build_config(TrainConfig, args)
    summary = train(cfg)
    last = summary.get("last") or {}
    where = summary.get("final_model") or f"checkpoint at step {summary.get('stopped_at')}"
    print(f"trained {summary.get('pairs', '?')} pairs, step {summary.get('steps', summary.get('stopped_at'))}: "
          f"loss {last.get('loss', float('nan')):.4f}, reward accuracy {last.get('reward_accuracy', float('nan')):.2f} -> {where}")
    return 0

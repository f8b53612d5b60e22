"""``frugalign iterate``: SPA's self-annotation rounds from a seed-trained policy.

    frugalign train --data seed.jsonl --output-dir runs/seed epochs=3
    frugalign iterate --policy runs/seed/final --prompts prompts.jsonl --output-dir runs/spa rounds=2

The settings (:class:`frugalign.spa.IterateConfig`) live with the rounds' code.
"""

from __future__ import annotations

from ..config import add_config_arguments, build_config


def register(sub) -> None:
    from ..spa import IterateConfig

    p = sub.add_parser("iterate", help="SPA rounds: sample, self-annotate with the implicit reward, train",
                       description="From a seed-trained policy, each round samples K responses for new prompts, "
                       "judges them with the policy's implicit reward against the initial model, builds min-max "
                       "pairs and trains one epoch with self-refinement. Every round is saved and resumable.")
    add_config_arguments(p, IterateConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..spa import IterateConfig, iterate

    cfg = build_config(IterateConfig, args)
    summary = iterate(cfg)
    for r in summary["rounds"]:
        print(f"round {r['round']}: {r['pairs']} pairs from {r['prompts']} prompts (λ={r['noise_lambda']}), "
              f"final loss {r['train'].get('last', {}).get('loss', float('nan')):.4f}")
    print(f"final policy -> {summary['final_model']}")
    return 0

"""``frugalign demo``: the main job on the embedded default, offline on a CPU.

Runs the whole recipe (``frugalign run``) with the ``demo`` preset: a small
slice of the IFEval-constraint benchmark, SmolLM2-135M-Instruct as the
policy, a few simulated human labels on the most dissimilar pairs, a CW-PO
weak judge for the rest, LoRA DPO with confidence weights, and a gold win
rate against the initial policy. Any setting can be overridden
(``frugalign demo train_prompts=8``).
"""

from __future__ import annotations

from ..config import add_config_arguments, build_config, load_yaml, preset_path
from ..recipe import RunConfig


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded default (offline, CPU)",
                       description="The whole recipe on the embedded default with the demo preset.")
    add_config_arguments(p, RunConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from .run import execute

    cfg = build_config(RunConfig, args, preset=load_yaml(preset_path("demo")))
    return execute(cfg)

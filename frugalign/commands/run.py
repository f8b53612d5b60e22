"""``frugalign run CONFIG``: the whole recipe in a resumable run directory, ending with a report."""

from __future__ import annotations

from ..config import add_config_arguments, build_config
from ..recipe import RunConfig


def register(sub) -> None:
    p = sub.add_parser("run", help="run the whole recipe: pool → select → label → annotate → train → evaluate",
                       description="Run or resume the end-to-end recipe in output_dir; finished stages are skipped.")
    add_config_arguments(p, RunConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = build_config(RunConfig, args)
    return execute(cfg)


def execute(cfg: RunConfig) -> int:
    import time

    from ..precision import cpu_description
    from ..recipe import run_recipe
    from ..report import results_table_text, write_run_report

    t0 = time.time()
    result = run_recipe(cfg)
    result.update(wall_seconds=time.time() - t0, cpu=cpu_description())
    report = write_run_report(cfg.output_dir, result)
    print("\n" + results_table_text(result))
    print(f"\nreport: {report}")
    return 0

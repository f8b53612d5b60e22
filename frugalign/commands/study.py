"""``frugalign study CONFIG``: the label-efficiency study (methods × budgets × strategies × seeds).

    frugalign study study-quick            # smoke test of the machinery (<= 30 min on 2 CPU cores)
    frugalign study study-standard         # the published numbers (<= 150 min on 2 CPU cores)
    frugalign study study-standard summary=docs/results/study-standard.json   # complete a committed summary
    frugalign study my.yaml methods=dpo-seed,cw-dpo budgets=0.1,0.3

The response pool is generated once (``output_dir/shared``) and shared by every
arm (``output_dir/arms/<arm>``); rerunning skips finished arms and resumes an
interrupted one, and arms already in the summary file are not rerun. Ends with
the seed-pooled table, the paired comparisons and the report's path.
"""

from __future__ import annotations

from ..config import add_config_arguments, build_config

PRESETS = ("study-quick", "study-standard", "study-full", "study-fair-house-style", "study-fair-ifeval")  # shipped in frugalign/configs


def register(sub) -> None:
    from ..study import StudyConfig

    p = sub.add_parser("study", help="label-efficiency study: win rate vs human labels for each method",
                       description="Run or resume the label-efficiency study: DPO on all/seed labels, CW-DPO, "
                       "Dr.SoW, SPA and the combined recipe at several budgets, strategies and seeds, on one shared "
                       "response pool. Give a YAML file or a preset name (" + ", ".join(PRESETS) + ").")
    add_config_arguments(p, StudyConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..study import StudyConfig

    return execute(build_config(StudyConfig, args))  # a preset name or YAML file comes in as an override


def execute(cfg) -> int:
    import time

    from ..report import CELL_COLUMNS, PAIRED_COLUMNS, study_table_markdown
    from ..study import run_study

    t0 = time.time()
    summary = run_study(cfg)
    print("\n" + study_table_markdown(summary["cells"], CELL_COLUMNS))
    print("\n" + study_table_markdown(summary["paired"], PAIRED_COLUMNS))
    print(f"\nwall time {time.time() - t0:.0f}s; summary: {summary['summary']}; report: {summary['report']} "
          f"(and {summary['markdown']})")
    return 0

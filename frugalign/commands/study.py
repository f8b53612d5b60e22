"""``frugalign study CONFIG``: the label-efficiency study (methods × budgets × strategies × seeds).

    frugalign study study-quick            # the CPU preset shipped with frugalign
    frugalign study frugalign/configs/study-full.yaml output_dir=runs/full seeds=0,1,2
    frugalign study my.yaml methods=dpo-seed,cw-dpo budgets=0.1,0.3

The response pool is generated once (``output_dir/shared``) and shared by every
arm (``output_dir/arms/<arm>``); rerunning skips finished arms and resumes an
interrupted one. Ends with the results table and the report's path.
"""

from __future__ import annotations

from importlib.resources import files

from ..config import add_config_arguments, build_config, load_yaml

PRESETS = ("study-quick", "study-full")


def register(sub) -> None:
    from ..study import StudyConfig

    p = sub.add_parser("study", help="label-efficiency study: win rate vs human labels for each method",
                       description="Run or resume the label-efficiency study: DPO on all/seed labels, CW-DPO, "
                       "Dr.SoW, SPA and the combined recipe at several budgets, strategies and seeds, on one shared "
                       "response pool. Give a YAML file or a preset name (study-quick, study-full).")
    add_config_arguments(p, StudyConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..study import StudyConfig

    preset = None
    rest = []
    for item in getattr(args, "overrides", None) or []:
        if item in PRESETS:  # `frugalign study study-quick`
            preset = load_yaml(str(files("frugalign") / "configs" / f"{item}.yaml"))
        else:
            rest.append(item)
    args.overrides = rest
    cfg = build_config(StudyConfig, args, preset=preset)
    return execute(cfg)


def execute(cfg) -> int:
    import time

    from ..report import CURVE_COLUMNS, study_table_markdown
    from ..study import run_study

    t0 = time.time()
    summary = run_study(cfg)
    print("\n" + study_table_markdown(summary["arms"]))
    print("\n" + study_table_markdown(summary["points"], CURVE_COLUMNS))
    print(f"\nwall time {time.time() - t0:.0f}s; report: {summary['report']} (and {summary['markdown']})")
    return 0

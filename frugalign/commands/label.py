"""``frugalign label export|import|serve|gold``: get pairs in front of people (or a gold judge) and back.

    frugalign label export runs/selected.jsonl output=runs/batch1          # batch1.jsonl + batch1.csv
    frugalign label export runs/selected.jsonl output=runs/batch1 to=label-studio   # + Label Studio files
    frugalign label serve runs/batch1.jsonl annotator=alice               # http://127.0.0.1:8765/
    frugalign label import runs/batch1.jsonl runs/batch1.alice.labels.jsonl output=runs/human.jsonl
    frugalign label import runs/batch1.jsonl label-studio-export.json output=runs/human.jsonl
    frugalign label gold runs/batch1.jsonl judge=ifeval output=runs/gold.jsonl

Bare arguments (no ``=``) are the positional paths shown above; everything
else is a ``key=value`` setting. The settings live with the code they
configure (:mod:`frugalign.labeling`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_config_arguments, build_config
from ..errors import ConfigError
from ..labeling.export import ExportConfig
from ..labeling.gold import GoldConfig
from ..labeling.merge import ImportConfig
from ..labeling.server import ServeConfig

# Which settings the bare (positional) arguments fill, in order; the last may repeat.
POSITIONAL = {"export": ["input"], "import": ["batch", "labels*"], "serve": ["batch"], "gold": ["input"]}
USAGE = {"export": "PAIRS output=BASE", "import": "BATCH LABELS... output=FILE", "serve": "BATCH",
         "gold": "BATCH|PAIRS judge=NAME output=FILE"}


def register(sub) -> None:
    p = sub.add_parser("label", help="export batches, label them in a local page or with a gold judge, import labels",
                       description="The human side: labelling batches with randomised A/B order, a local "
                                   "labelling page, label import/merge/agreement, and gold judges.")
    actions = p.add_subparsers(dest="label_command", metavar="ACTION")
    for name, cls, help_ in (
        ("export", ExportConfig, "write a labelling batch (JSONL key + CSV sheet; to=label-studio: + its tasks)"),
        ("import", ImportConfig, "read labels back into annotations (un-flipped, merged, agreement)"),
        ("serve", ServeConfig, "serve the labelling page on 127.0.0.1"),
        ("gold", GoldConfig, "label with a gold judge instead of people"),
    ):
        usage = f"frugalign label {name} {USAGE[name]} [key=value ...]"
        a = actions.add_parser(name, help=help_, description=help_, usage=usage)
        add_config_arguments(a, cls)
        a.set_defaults(func=run, label_cls=cls)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _config(args: argparse.Namespace):
    """Move bare arguments into the positional settings, then build the config as usual."""
    bare = [x for x in args.overrides or [] if "=" not in x]
    args.overrides = [x for x in args.overrides or [] if "=" in x]
    slots = POSITIONAL[args.label_command]
    values: dict = {}
    for k, value in enumerate(bare):
        if k >= len(slots) and not slots[-1].endswith("*"):
            raise ConfigError(f"label {args.label_command}: unexpected argument {value!r}")
        slot = slots[min(k, len(slots) - 1)]
        if slot.endswith("*"):
            values.setdefault(slot[:-1], []).append(value)
        else:
            values[slot] = value
    # Positional paths go in as explicit values (the last word in build_config's merge order).
    return build_config(args.label_cls, args, **values)


def run(args) -> int:
    cfg = _config(args)
    return {"export": _export, "import": _import, "serve": _serve, "gold": _gold}[args.label_command](cfg)


def _export(cfg: ExportConfig) -> int:
    from ..data import read_pairs
    from ..labeling.export import make_batch, write_batch

    name = cfg.batch_name()
    items = make_batch(read_pairs(cfg.input), name, cfg.seed)
    key, sheet = write_batch(items, Path(cfg.output))
    flipped = sum(it.flipped for it in items)
    print(f"batch {name!r}: {len(items)} pairs ({flipped} shown swapped) -> {key} (key, keep it) and {sheet} (sheet)")
    if cfg.to == "label-studio":
        from ..labeling.label_studio import write_label_studio

        tasks, config = write_label_studio(items, Path(cfg.output))
        print(f"Label Studio: {tasks} (tasks) and {config} (labelling config); the A/B key stays in {key}")
        print(f"  create a project, paste {config.name} into Settings > Labeling Interface > Code, "
              f"import {tasks.name}, label, Export > JSON, then")
        print(f"  frugalign label import {key} EXPORT.json output=ANNOTATIONS.jsonl   (API steps: docs/labeling.md)")
    else:
        print(f"label them: frugalign label serve {key}   or fill the label column of {sheet}")
    return 0


def _import(cfg: ImportConfig) -> int:
    from ..data import write_json, write_records
    from ..labeling.merge import format_agreement, import_labels

    earlier = cfg.earlier if cfg.earlier and Path(cfg.earlier).exists() else None
    if cfg.earlier and earlier is None and cfg.earlier != cfg.output:
        raise ConfigError(f"earlier annotations not found: {cfg.earlier}")
    anns, report = import_labels(cfg.batch, cfg.labels, earlier=earlier, annotator=cfg.annotator)
    write_records(cfg.output, anns)
    if cfg.report:
        write_json(cfg.report, report)
    counts = {k: sum(a.preferred == k for a in anns) for k in ("A", "B", "tie")}
    print(f"imported {report['new_votes']} labels (+{report['earlier_votes']} earlier votes) -> "
          f"{len(anns)} annotations {counts} -> {cfg.output}; {report['unlabelled_in_batch']} batch pairs unlabelled")
    print(format_agreement(report["agreement"]))
    return 0


def _serve(cfg: ServeConfig) -> int:
    from ..labeling.server import serve

    serve(cfg.batch, cfg.labels, host=cfg.host, port=cfg.port, annotator=cfg.annotator, quiet=not cfg.verbose)
    return 0


def _gold(cfg: GoldConfig) -> int:
    from ..data import write_records
    from ..labeling.gold import gold_label_file

    name, anns = gold_label_file(cfg)
    write_records(cfg.output, anns)
    counts = {k: sum(a.preferred == k for a in anns) for k in ("A", "B", "tie")}
    print(f"gold judge {name!r} labelled {len(anns)} pairs {counts} -> {cfg.output}")
    return 0

"""``frugalign label export|import|serve|gold``: get pairs in front of people (or a gold judge) and back.

    frugalign label export runs/selected.jsonl output=runs/batch1          # batch1.jsonl + batch1.csv
    frugalign label export runs/selected.jsonl output=runs/batch1 to=label-studio   # + Label Studio files
    frugalign label serve runs/batch1.jsonl annotator=alice               # http://127.0.0.1:8765/
    frugalign label import runs/batch1.jsonl runs/batch1.alice.labels.jsonl output=runs/human.jsonl
    frugalign label import runs/batch1.jsonl label-studio-export.json output=runs/human.jsonl
    frugalign label gold runs/batch1.jsonl judge=ifeval output=runs/gold.jsonl

Bare arguments (no ``=``) are the positional paths shown above; everything
else is a ``key=value`` setting.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import add_config_arguments, build_config
from ..errors import ConfigError


@dataclass
class ExportConfig:
    input: str = field(default="", metadata={"help": "pairs to label (e.g. the output of `frugalign select`)"})
    output: str = field(default="", metadata={"help": "batch base path: writes OUTPUT.jsonl (key) and OUTPUT.csv (sheet)"})
    name: str | None = field(default=None, metadata={"help": "batch name (default: output file name)"})
    seed: int = field(default=0, metadata={"help": "seed of the per-pair A/B orientation"})
    to: Literal["page", "label-studio"] = field(default="page", metadata={
        "help": "page: for the labelling page / sheet; label-studio: also OUTPUT.label-studio.json "
                "(tasks) and OUTPUT.label-studio.xml (labelling config)"})

    def validate(self) -> None:
        if not self.input or not self.output:
            raise ConfigError("label export needs PAIRS and output=BASE")


@dataclass
class ImportConfig:
    batch: str = field(default="", metadata={"help": "the batch key file (BATCH.jsonl)"})
    labels: list = field(default_factory=list, metadata={
        "help": "label files (.jsonl from the page, filled .csv, or a Label Studio JSON export)"})
    output: str = field(default="", metadata={"help": "annotations file to write"})
    earlier: str | None = field(default=None, metadata={"help": "earlier annotations to merge with (may equal output)"})
    annotator: str | None = field(default=None, metadata={"help": "annotator id for records that name none"})
    report: str | None = field(default=None, metadata={"help": "also write the import/agreement report (JSON)"})

    def validate(self) -> None:
        if not self.batch or not self.labels or not self.output:
            raise ConfigError("label import needs BATCH LABELS... and output=FILE")


@dataclass
class ServeConfig:
    batch: str = field(default="", metadata={"help": "the batch key file (BATCH.jsonl)"})
    labels: str | None = field(default=None, metadata={"help": "labels file (default: BATCH[.annotator].labels.jsonl)"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (keep it local)"})
    port: int = field(default=8765, metadata={"help": "port (0: any free port)"})
    annotator: str = field(default="", metadata={"help": "your id, stored with every label"})
    verbose: bool = False

    def validate(self) -> None:
        if not self.batch:
            raise ConfigError("label serve needs BATCH")


@dataclass
class GoldConfig:
    input: str = field(default="", metadata={"help": "a batch (BATCH.jsonl) or a pairs file"})
    judge: str = field(default="", metadata={"help": "length | scores | ifeval | sentiment | ifbench | module:attr"})
    output: str = field(default="", metadata={"help": "annotations file to write (source=gold)"})
    labels_output: str | None = field(default=None, metadata={"help": "for a batch: also write the raw labels as shown"})

    def validate(self) -> None:
        if not self.input or not self.judge or not self.output:
            raise ConfigError("label gold needs INPUT judge=... output=FILE")


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

    pairs = read_pairs(cfg.input)
    base = Path(cfg.output)
    name = cfg.name or (base.stem if base.suffix.lower() in (".jsonl", ".csv") else base.name)
    items = make_batch(pairs, name, cfg.seed)
    key, sheet = write_batch(items, base)
    flipped = sum(it.flipped for it in items)
    print(f"batch {name!r}: {len(items)} pairs ({flipped} shown swapped) -> {key} (key, keep it) and {sheet} (sheet)")
    if cfg.to == "label-studio":
        from ..labeling.label_studio import write_label_studio

        tasks, config = write_label_studio(items, base)
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
    from ..data import read_pairs, read_records, write_records
    from ..labeling.export import read_batch, write_labels
    from ..labeling.gold import gold_annotate_pairs, gold_label_batch, judge_name, load_judge
    from ..labeling.merge import labels_to_votes, votes_to_annotations

    judge = load_judge(cfg.judge)
    name = judge_name(judge, cfg.judge)
    first = read_records(cfg.input)[:1]
    if first and "shown_a" in first[0][1]:  # a batch: label as shown, then the human import path
        batch = read_batch(cfg.input)
        labels = gold_label_batch(batch, judge, name)
        if cfg.labels_output:
            write_labels(cfg.labels_output, labels)
        anns = votes_to_annotations(labels_to_votes(batch, [("gold", r) for r in labels], source="gold"))
    else:
        anns = gold_annotate_pairs(read_pairs(cfg.input), judge, name)
    write_records(cfg.output, anns)
    counts = {k: sum(a.preferred == k for a in anns) for k in ("A", "B", "tie")}
    print(f"gold judge {name!r} labelled {len(anns)} pairs {counts} -> {cfg.output}")
    return 0

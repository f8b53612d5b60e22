"""Labelling batches out, labels back in.

A **batch** is the list of pairs a person labels. Each pair is shown as
"A" and "B" in an order drawn at random *per pair* (seeded by the batch seed
and the pair id) and recorded in the batch's ``flipped`` field, so the
original order of a pair (e.g. response index, or which one a model liked)
can never leak into the labels through position.

Files written by :func:`write_batch` for ``OUT``:

* ``OUT.jsonl`` — the key: one :class:`BatchItem` per pair, with the shown
  texts and ``flipped``. The labelling page and the importer read it.
* ``OUT.csv`` — the labeller's sheet: ``item, pair_id, prompt, response_A,
  response_B, label, comment, annotator`` (no orientation column). Fill
  ``label`` with A, B or tie.

**Labels** (:class:`LabelRecord`) are what a labeller said, *as shown*
(JSONL from the labelling page, or the filled-in CSV). :func:`labels_to_votes`
checks them against the batch and turns each into a vote in the pair's
original orientation; :mod:`frugalign.labeling.merge` combines votes into
:class:`~frugalign.records.Annotation` records.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..data import atomic_path, read_records
from ..errors import ConfigError, DataError
from ..records import PreferencePair, Prompt, validate_prompt

LABEL_ALIASES = {"a": "A", "b": "B", "tie": "tie"}
CSV_COLUMNS = ["item", "pair_id", "prompt", "response_A", "response_B", "label", "comment", "annotator"]
# Spreadsheet programs run cells starting with these as formulas (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class BatchItem:
    """One pair as a labeller sees it: ``shown_a``/``shown_b`` and whether they are swapped."""

    batch: str
    index: int
    pair_id: str
    prompt: Prompt
    shown_a: str
    shown_b: str
    flipped: bool
    system: str | None = None
    prompt_id: str | None = None    # lets a gold judge find its task prompt

    def to_record(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_record(cls, rec: dict, where: str) -> BatchItem:
        missing = [k for k in ("batch", "index", "pair_id", "prompt", "shown_a", "shown_b", "flipped")
                   if rec.get(k) is None]
        if missing:
            raise DataError(f"{where}: not a labelling batch record (missing {', '.join(missing)}); "
                            "make one with `frugalign label export`")
        if not isinstance(rec["flipped"], bool) or not isinstance(rec["index"], int):
            raise DataError(f"{where}: field 'flipped' must be true/false and 'index' an integer")
        return cls(batch=str(rec["batch"]), index=rec["index"], pair_id=str(rec["pair_id"]),
                   prompt=validate_prompt(rec["prompt"], where), shown_a=str(rec["shown_a"]),
                   shown_b=str(rec["shown_b"]), flipped=rec["flipped"], system=rec.get("system"),
                   prompt_id=None if rec.get("prompt_id") is None else str(rec["prompt_id"]))


@dataclass
class LabelRecord:
    """What a labeller said about one batch item, in the *shown* orientation."""

    pair_id: str
    label: str                      # A | B | tie, as shown
    annotator: str = ""
    comment: str = ""
    time: str | None = None

    def to_record(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


# ---------------------------------------------------------------- batches
def flip_for(pair_id: str, seed: int) -> bool:
    """The per-pair coin: independent of the pair's position in the batch."""
    return random.Random(f"{seed}|{pair_id}").random() < 0.5


def make_batch(pairs: Sequence[PreferencePair], name: str, seed: int = 0) -> list[BatchItem]:
    """A batch of ``pairs`` in the given order, each with its own random A/B orientation."""
    seen: set[str] = set()
    items = []
    for k, p in enumerate(pairs):
        if p.id in seen:
            raise DataError(f"pair id {p.id!r} appears twice; a batch needs unique pair ids")
        seen.add(p.id)
        flipped = flip_for(p.id, seed)
        a, b = (p.response_b, p.response_a) if flipped else (p.response_a, p.response_b)
        items.append(BatchItem(name, k, p.id, p.prompt, a, b, flipped, p.system, p.prompt_id))
    return items


def write_batch(items: Sequence[BatchItem], out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``OUT.jsonl`` (the key) and ``OUT.csv`` (the sheet); returns both paths."""
    base = Path(out)
    if base.suffix.lower() in (".jsonl", ".csv"):
        base = base.with_suffix("")
    jsonl, sheet = base.with_name(base.name + ".jsonl"), base.with_name(base.name + ".csv")
    with atomic_path(jsonl) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it.to_record(), ensure_ascii=False) + "\n")
    with atomic_path(sheet) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for it in items:
            w.writerow([it.index + 1, it.pair_id, _cell(display_prompt(it.prompt, it.system)),
                        _cell(it.shown_a), _cell(it.shown_b), "", "", ""])
    return jsonl, sheet


def read_batch(path: str | os.PathLike) -> list[BatchItem]:
    """Read and check a batch key file (unique pair ids)."""
    items, seen = [], set()
    for where, rec in read_records(path):
        it = BatchItem.from_record(rec, where)
        if it.pair_id in seen:
            raise DataError(f"{where}: duplicate pair id {it.pair_id!r} in batch")
        seen.add(it.pair_id)
        items.append(it)
    if not items:
        raise DataError(f"{path}: empty batch")
    return items


def display_prompt(prompt: Prompt, system: str | None = None) -> str:
    """Plain text of a prompt for people: a string as is, chat turns as ``[role] text`` blocks."""
    if isinstance(prompt, str):
        return f"[system] {system}\n\n{prompt}" if system else prompt
    msgs = ([{"role": "system", "content": system}] if system else []) + list(prompt)
    return "\n\n".join(f"[{m['role']}] {m['content']}" for m in msgs)


def _cell(text: str) -> str:
    """Neutralise spreadsheet formulas (a leading apostrophe is shown as text, not run)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


# ---------------------------------------------------------------- labels
def parse_label(value, where: str) -> str:
    """``A``, ``B`` or ``tie`` (any case); anything else is a one-line error."""
    norm = LABEL_ALIASES.get(str(value).strip().lower()) if value is not None else None
    if norm is None:
        raise DataError(f"{where}: label {value!r}: expected A, B or tie")
    return norm


def read_labels(path: str | os.PathLike, annotator: str | None = None) -> list[tuple[str, LabelRecord]]:
    """Labels from the page's JSONL or a filled-in sheet (CSV; rows with a blank label are skipped).

    ``annotator`` fills in records that do not name one.
    """
    p = Path(path)
    rows = _read_csv(p) if p.suffix.lower() == ".csv" else read_records(p)
    out = []
    for where, rec in rows:
        if p.suffix.lower() == ".csv" and not str(rec.get("label") or "").strip():
            continue  # not labelled yet
        if rec.get("pair_id") in (None, ""):
            raise DataError(f"{where}: field 'pair_id': missing")
        out.append((where, LabelRecord(
            pair_id=str(rec["pair_id"]), label=parse_label(rec.get("label"), where),
            annotator=str(rec.get("annotator") or annotator or ""),
            comment=str(rec.get("comment") or ""), time=rec.get("time"))))
    return out


def _read_csv(p: Path) -> list[tuple[str, dict]]:
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    with p.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if not {"pair_id", "label"} <= cols:
            raise DataError(f"{p}: a labels sheet needs the columns pair_id and label (found {sorted(cols)})")
        return [(f"{p}:{n + 2}", row) for n, row in enumerate(reader)]


def write_labels(path: str | os.PathLike, labels: Sequence[LabelRecord]) -> Path:
    """Rewrite the labels file atomically and durably (temp file, fsync, rename).

    A crash at any point leaves either the old or the new complete file.
    """
    p = Path(path)
    with atomic_path(p) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in labels:
                f.write(json.dumps(rec.to_record(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
    try:  # make the rename itself durable where the OS allows it
        fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return p


def unflip(label: str, flipped: bool) -> str:
    """A label as shown -> the same judgement in the pair's original A/B orientation."""
    if label == "tie" or not flipped:
        return label
    return "B" if label == "A" else "A"


def check_labels(batch: Sequence[BatchItem], labels: Sequence[tuple[str, LabelRecord]],
                 batch_name: str = "the batch") -> None:
    """Every label must name a pair of the batch; the first offender is a one-line error."""
    ids = {it.pair_id for it in batch}
    for where, rec in labels:
        if rec.pair_id not in ids:
            raise DataError(f"{where}: unknown pair id {rec.pair_id!r}: not in {batch_name} "
                            f"({len(ids)} pairs); were these labels made for another batch?")


@dataclass
class ExportConfig:
    """``frugalign label export``: a labelling batch of pairs (key file, sheet, optionally Label Studio's files)."""

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

    def batch_name(self) -> str:
        base = Path(self.output)
        return self.name or (base.stem if base.suffix.lower() in (".jsonl", ".csv") else base.name)

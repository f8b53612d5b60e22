"""Validated reading and atomic writing of pools, pairs, annotations and training tables.

Formats, chosen by the path:

* ``*.jsonl`` — one JSON object per line (errors name ``file:line``);
* ``*.json`` — a list of objects;
* ``*.parquet`` — via pyarrow (errors name ``file:row N``);
* a directory written by ``save_to_disk`` (``DIR[:split]``; default split ``train`` or the first);
* ``hf://OWNER/NAME[:split]`` — a Hugging Face hub dataset (online only);
* any of them with ``?FIELD=COLUMN&…`` to read a field from another column.

Pairs and training tables may be in any of TRL's four preference layouts
(:mod:`frugalign.formats`); records without ``id`` get a content hash
(:func:`frugalign.records.content_id`).

Writes go to a temporary file in the target directory and are renamed into
place, so a crash or a validation error never leaves a half-written output.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import DataError
from .faults import kill_point
from .formats import PAIR_SIDES, check_same_layout, normalize_preference, record_layout, to_layout
from .records import Annotation, PreferencePair, PromptItem, TrainingRow
from .weights import pair_weight

T = TypeVar("T")
HUB_PREFIX = "hf://"


def file_digest(*paths, length: int = 16) -> str:
    """A hex digest of the files' bytes, in order: identity by content, not by path."""
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:length]


def cache_dir() -> Path:
    """Where frugalign keeps files between runs: ``$FRUGALIGN_CACHE`` or ``~/.cache/frugalign``."""
    return Path(os.environ.get("FRUGALIGN_CACHE", Path.home() / ".cache" / "frugalign"))


# ---------------------------------------------------------------- raw records
def read_records(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """Read raw records as ``(where, record)`` tuples; ``where`` names file and row.

    A ``?FIELD=COLUMN[&FIELD=COLUMN…]`` suffix copies a source column into the field
    frugalign reads (``data.jsonl?prompt=question&id=prompt_id``), for any file kind.
    """
    spec, columns = split_column_map(str(path))
    records = _read_source(spec)
    if columns:
        records = [(where, map_columns(rec, columns, where)) for where, rec in records]
    return records


def split_column_map(spec: str) -> tuple[str, dict[str, str]]:
    """``PATH?field=column&…`` -> (PATH, {field: column}); a file whose name has ``?`` is read as named."""
    if "?" not in spec or Path(spec).exists():
        return spec, {}
    base, _, query = spec.rpartition("?")
    columns = {}
    for part in query.split("&"):
        field_name, eq, column = part.partition("=")
        if not eq or not field_name or not column:
            raise DataError(f"{spec}: column map {part!r}: expected FIELD=COLUMN (e.g. ?prompt=question)")
        columns[field_name] = column
    return base, columns


def map_columns(rec: dict, columns: dict[str, str], where: str) -> dict:
    out = dict(rec)
    for field_name, column in columns.items():
        if column not in rec:
            raise DataError(f"{where}: field '{column}': missing (mapped to '{field_name}')")
        out[field_name] = rec[column]
    return out


def _read_source(spec: str) -> list[tuple[str, dict]]:
    if spec.startswith(HUB_PREFIX):
        return _read_hub(spec)
    p = Path(spec)
    base, colon, split = spec.rpartition(":")
    if not p.exists() and colon and Path(base).is_dir():
        return _read_saved_dataset(Path(base), split)  # DIR:SPLIT, as hf://NAME:SPLIT
    if not p.exists():
        raise DataError(f"{spec}: no such file or directory")
    if p.is_dir():
        return _read_saved_dataset(p)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(p)
    if suffix == ".json":
        return _read_json(p)
    if suffix == ".parquet":
        return _read_parquet(p)
    raise DataError(f"{spec}: unknown file type '{suffix}' (use .jsonl, .json, .parquet or a dataset dir)")


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8-sig")  # a leading byte-order mark (spreadsheet exports) is not data
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                        "save the file as UTF-8") from None


def _read_jsonl(p: Path) -> list[tuple[str, dict]]:
    out = []
    lines = p.read_bytes().splitlines()
    for lineno, raw in enumerate(lines, 1):
        where = f"{p}:{lineno}"
        line = _decode(raw, where)
        if not line.strip():
            continue
        if not out and line.lstrip().startswith("["):
            raise DataError(f"{where}: a JSON array, but .jsonl needs one JSON object per line "
                            "(name the file .json, or write one object per line)")
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        out.append((where, rec))
    return out


def _read_json(p: Path) -> list[tuple[str, dict]]:
    try:
        data = json.loads(_decode(p.read_bytes(), str(p)))
    except json.JSONDecodeError as e:
        raise DataError(f"{p}:{e.lineno}: malformed JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise DataError(f"{p}: expected a JSON list of objects")
    out = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise DataError(f"{p}: item {i}: expected a JSON object")
        out.append((f"{p}: item {i}", rec))
    return out


def _read_parquet(p: Path) -> list[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(p).to_pylist()
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"{p}: cannot read parquet ({e})") from None
    return [(f"{p}: row {i + 1}", _from_parquet(_plain(r), f"{p}: row {i + 1}")) for i, r in enumerate(rows)]


# Free-form objects have row-varying keys, which Parquet structs cannot hold; store them as JSON text.
PARQUET_JSON_FIELDS = ("meta", "details")


def _to_parquet(records: list[dict]) -> list[dict]:
    mixed_prompts = len({type(r.get("prompt")) for r in records if "prompt" in r}) > 1
    out = []
    for r in records:
        r = dict(r)
        for name in PARQUET_JSON_FIELDS:
            if name in r:
                r[name] = json.dumps(r[name], ensure_ascii=False)
        if mixed_prompts and isinstance(r.get("prompt"), str):
            # One column type per file: plain prompts become a single user message.
            r["prompt"] = [{"role": "user", "content": r["prompt"]}]
        out.append(r)
    return out


def _from_parquet(rec: dict, where: str) -> dict:
    for name in PARQUET_JSON_FIELDS:
        if isinstance(rec.get(name), str):
            try:
                rec[name] = json.loads(rec[name])
            except json.JSONDecodeError:
                raise DataError(f"{where}: field '{name}': not valid JSON text") from None
    return rec


def _read_saved_dataset(p: Path, split: str | None = None) -> list[tuple[str, dict]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:
        raise DataError(f"{p}: not a saved Hugging Face dataset ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is not None and split not in ds:
            raise DataError(f"{p}: no split {split!r} (splits: {', '.join(ds)})")
        ds = ds[split] if split else ds["train"] if "train" in ds else next(iter(ds.values()))
    elif split:
        raise DataError(f"{p}: a single dataset has no split {split!r}")
    return [(f"{p}: row {i + 1}", _plain(r)) for i, r in enumerate(ds)]


def _read_hub(spec: str) -> list[tuple[str, dict]]:
    import datasets

    name, _, split = spec[len(HUB_PREFIX):].partition(":")
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise DataError(f"{spec}: hub datasets need network access (HF_HUB_OFFLINE=1 is set)")
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:
        raise DataError(f"{spec}: cannot load hub dataset ({type(e).__name__}: {e})") from None
    return [(f"{spec}: row {i + 1}", _plain(r)) for i, r in enumerate(ds)]


def _plain(rec: dict) -> dict:
    """Parquet/Arrow give None for absent struct fields; drop them so defaults apply."""
    return {k: v for k, v in rec.items() if v is not None}


# ---------------------------------------------------------------- typed readers
class Table(list):
    """A list of records that remembers the TRL layout of the file it came from (None: frugalign's own)."""

    layout: str | None = None


def read_preference_records(path, records: list[tuple[str, dict]] | None = None) -> Table:
    """Raw records (of ``path``, or ``records`` already read from it) with TRL's layouts
    normalised (:func:`frugalign.formats.normalize_preference`).

    Every record of a file must have the same layout; the table's ``layout`` is it.
    """
    table, first = Table(), None
    for where, rec in read_records(path) if records is None else records:
        missing = [side for side in PAIR_SIDES if side not in rec]
        if len(missing) == 1:  # one side alone is a broken preference record, not a frugalign pair
            raise DataError(f"{where}: field '{missing[0]}': missing")
        layout = record_layout(rec)
        check_same_layout(layout, first, where)
        first = first or (where, layout)
        table.append((where, normalize_preference(rec, where)))
    table.layout = first[1] if first else None
    return table


# Numeric columns of preference datasets kept with a pair read from them (a gold signal:
# UltraFeedback's ratings of chosen and rejected; `frugalign label gold judge=scores` reads them).
SCORE_COLUMNS = ("score_chosen", "score_rejected")


def _as_pair(rec: dict) -> dict:
    """A normalised preference record as a pair: chosen is A, rejected is B."""
    if "chosen" not in rec:
        return rec
    out = {k: v for k, v in rec.items() if k not in ("chosen", "rejected") + SCORE_COLUMNS}
    out["response_a"], out["response_b"] = rec["chosen"], rec["rejected"]
    scores = {k: rec[k] for k in SCORE_COLUMNS if k in rec}
    if scores and isinstance(out.get("meta", {}), dict):
        out["meta"] = {**out.get("meta", {}), **scores}
    return out


def _read_typed(records, path, parse: Callable[..., T], id_field: str | None) -> Table:
    items, seen = Table(), {}
    items.layout = getattr(records, "layout", None)
    for where, rec in records:
        item = parse(rec, where)
        if id_field is not None:
            key = getattr(item, id_field)
            if key is not None:
                if key in seen:
                    raise DataError(f"{where}: field '{id_field}': duplicate id {key!r} (first at {seen[key]})")
                seen[key] = where
        items.append(item)
    if not items:
        raise DataError(f"{path}: no records")
    return items


def read_pool(path) -> Table:
    """Prompts (and candidate responses); a record without ``id`` gets :func:`~frugalign.records.content_id`."""
    return _read_typed(read_records(path), path, PromptItem.from_record, "id")


def read_pairs(path, records: list[tuple[str, dict]] | None = None) -> Table:
    """frugalign pairs (response_a/response_b) or TRL preference data in any layout (chosen as A)."""
    records = read_preference_records(path, records)
    pairs = Table((where, _as_pair(rec)) for where, rec in records)
    pairs.layout = records.layout
    return _read_typed(pairs, path, PreferencePair.from_record, "id")


def read_pool_or_pairs(path) -> tuple[str, Table]:
    """``("pool", items)`` when the records have ``responses``, else ``("pairs", pairs)`` in any pair layout."""
    records = read_records(path)
    if not records:
        raise DataError(f"{path}: no records")
    if "responses" in records[0][1]:
        return "pool", _read_typed(records, path, PromptItem.from_record, "id")
    return "pairs", read_pairs(path, records)


def read_annotations(path) -> Table:
    return _read_typed(read_records(path), path, Annotation.from_record, "pair_id")


def read_training(path, records: list[tuple[str, dict]] | None = None) -> Table:
    """A training table in any TRL layout, with frugalign's optional per-pair columns
    (``records``: normalised records already read from ``path``)."""
    records = read_preference_records(path) if records is None else records
    return _read_typed(records, path, TrainingRow.from_record, "id")


# ---------------------------------------------------------------- writers
def _records(items: Iterable[Any]) -> list[dict]:
    return [it.to_record() if hasattr(it, "to_record") else dict(it) for it in items]


def write_records(path: str | os.PathLike, items: Sequence[Any], layout: str | None = None) -> Path:
    """Write records atomically; the format follows the suffix (.jsonl, .json, .parquet).

    ``layout`` writes pairs or training rows in one of TRL's layouts (:mod:`frugalign.formats`).
    """
    p = Path(path)
    records = _records(items)
    if layout is not None:
        records = [to_layout(r, layout, f"{p}: record {i + 1}") for i, r in enumerate(records)]
    suffix = p.suffix.lower()
    if suffix not in (".jsonl", ".json", ".parquet"):
        raise DataError(f"{p}: unknown output type '{suffix}' (use .jsonl, .json or .parquet)")
    with atomic_path(p) as tmp:
        if suffix == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for rec in records:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        elif suffix == ".json":
            Path(tmp).write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            rows = _to_parquet(records)
            keys = list(dict.fromkeys(k for r in rows for k in r))  # union: from_pylist reads row 0 only
            pq.write_table(pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in keys}), tmp)
    return p


def to_hf_dataset(items: Sequence[Any]):
    """A ``datasets.Dataset`` of the records (e.g. a training table for TRL)."""
    import datasets

    return datasets.Dataset.from_list(_records(items))


class atomic_path:
    """Context manager yielding a temp path next to ``path``; renamed on success, removed on error."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __enter__(self) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                        dir=self.path.parent)
        os.close(fd)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            kill_point(f"write:{self.path.name}")  # a crash here leaves the old file whole
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.unlink(self.tmp)
        return False


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write one JSON document atomically (manifests, summaries)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return Path(path)


def read_optional(reader, *paths: Path) -> list:
    """Concatenate tables, treating empty files (a stage with nothing to write) as empty tables."""
    out = []
    for p in paths:
        if p.exists() and p.stat().st_size:
            out += reader(p)
    return out


# ---------------------------------------------------------------- conversions
def pool_to_pairs(pool: Sequence[PromptItem]) -> list[PreferencePair]:
    """All unordered response pairs of each prompt (ids ``<prompt id>:<i>-<j>``)."""
    pairs = []
    for item in pool:
        n = len(item.responses)
        for i in range(n):
            for j in range(i + 1, n):
                pairs.append(PreferencePair(
                    id=f"{item.id}:{i}-{j}", prompt=item.prompt, response_a=item.responses[i],
                    response_b=item.responses[j], system=item.system, domain=item.domain,
                    prompt_id=item.id, meta={"index_a": i, "index_b": j},
                ))
    return pairs


def annotations_to_training(pairs: Sequence[PreferencePair], annotations: Sequence[Annotation],
                            *, weighting: str = "none",
                            label_smoothing: float = 0.0) -> tuple[list[TrainingRow], dict]:
    """Join pairs with their annotations into TRL rows; ties and unannotated pairs are counted, not kept."""
    by_id = {p.id: p for p in pairs}
    unknown = [a.pair_id for a in annotations if a.pair_id not in by_id]
    if unknown:
        raise DataError(f"annotations refer to unknown pair ids: {unknown[:5]}"
                        f"{' …' if len(unknown) > 5 else ''} ({len(unknown)} in all)")
    rows, ties = [], 0
    for ann in annotations:
        if ann.preferred == "tie":
            ties += 1
            continue
        pair = by_id[ann.pair_id]
        chosen, rejected = ((pair.response_a, pair.response_b) if ann.preferred == "A"
                            else (pair.response_b, pair.response_a))
        rows.append(TrainingRow(
            prompt=pair.prompt, chosen=chosen, rejected=rejected, id=pair.id, system=pair.system,
            weight=pair_weight(ann.confidence, ann.source, weighting, f"annotation {ann.pair_id}"),
            label_smoothing=label_smoothing, confidence=ann.confidence, source=ann.source,
            domain=pair.domain,
        ))
    summary = {"pairs": len(pairs), "annotations": len(annotations), "ties_dropped": ties,
               "unannotated": len(pairs) - len({a.pair_id for a in annotations}), "rows": len(rows)}
    return rows, summary


def labels_to_training(pairs: Sequence[PreferencePair], *label_sets: Sequence[Annotation],
                       weighting: str = "none") -> tuple[list[TrainingRow], dict]:
    """One training table from several label sets (human labels, an annotator's, gold) over ``pairs``.

    A pair labelled in more than one set keeps the label of the first set that
    has it; rows follow the sets' order, then each set's order. Pairs given twice
    count once (the last copy). See :func:`annotations_to_training` for the rest.
    """
    by_id = {p.id: p for p in pairs}
    seen: set[str] = set()
    labels = []
    for labelled in label_sets:
        labels += [a for a in labelled if a.pair_id not in seen]
        seen |= {a.pair_id for a in labelled}
    return annotations_to_training(list(by_id.values()), labels, weighting=weighting)

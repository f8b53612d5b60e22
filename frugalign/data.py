"""Validated reading and atomic writing of pools, pairs, annotations and training tables.

Formats, chosen by the path:

* ``*.jsonl`` — one JSON object per line (errors name ``file:line``);
* ``*.json`` — a list of objects;
* ``*.parquet`` — via pyarrow (errors name ``file:row N``);
* a directory written by ``datasets.Dataset.save_to_disk``;
* ``hf://OWNER/NAME[:split]`` — a Hugging Face hub dataset (online only).

Writes go to a temporary file in the target directory and are renamed into
place, so a crash or a validation error never leaves a half-written output.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from .errors import DataError
from .faults import kill_point
from .types import Annotation, PreferencePair, PromptItem, TrainingRow
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
    """Read raw records as ``(where, record)`` tuples; ``where`` names file and row."""
    spec = str(path)
    if spec.startswith(HUB_PREFIX):
        return _read_hub(spec)
    p = Path(spec)
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


def _read_jsonl(p: Path) -> list[tuple[str, dict]]:
    out = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
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
        data = json.loads(p.read_text(encoding="utf-8"))
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


def _read_saved_dataset(p: Path) -> list[tuple[str, dict]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:
        raise DataError(f"{p}: not a saved Hugging Face dataset ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
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
def _read_typed(path, parse: Callable[..., T], id_field: str | None) -> list[T]:
    items, seen = [], {}
    for where, rec in read_records(path):
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


def read_pool(path) -> list[PromptItem]:
    return _read_typed(path, PromptItem.from_record, "id")


def read_pairs(path) -> list[PreferencePair]:
    return _read_typed(path, PreferencePair.from_record, "id")


def read_annotations(path) -> list[Annotation]:
    return _read_typed(path, Annotation.from_record, "pair_id")


def read_training(path) -> list[TrainingRow]:
    return _read_typed(path, TrainingRow.from_record, "id")


# ---------------------------------------------------------------- writers
def _records(items: Iterable[Any]) -> list[dict]:
    return [it.to_record() if hasattr(it, "to_record") else dict(it) for it in items]


def write_records(path: str | os.PathLike, items: Sequence[Any]) -> Path:
    """Write records atomically; the format follows the suffix (.jsonl, .json, .parquet)."""
    p = Path(path)
    records = _records(items)
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

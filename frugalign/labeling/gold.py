"""Simulated humans: a gold judge labels pairs so ``select → label → annotate`` runs without people.

A gold judge is any callable that takes a :class:`~frugalign.records.PreferencePair`
(prompt, system, two responses, ids) and prefers one response::

    def judge(pair) -> "A" | "B" | "tie"
                     | ("A", score_a, score_b)
                     | GoldVerdict("A", score_a, score_b)

It plugs in three ways (see :func:`load_judge`): a benchmark task name
(``ifeval``, ``sentiment``, ``ifbench`` from :mod:`frugalign.goldjudge`, which
rebuilds the task prompt from the pair's prompt id), ``module:attr`` (your
own judge; a class is instantiated with no arguments), ``scores`` (a preference
dataset's own ``score_chosen``/``score_rejected`` ratings), or the toy ``length``
judge (prefers the longer response; for demos and tests only).

:func:`gold_label_batch` labels a batch *as shown* (after the random A/B
flip), exactly as a person would, and the labels go through the same import
path, so a position-biased judge cannot profit from the original order.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from ..errors import ConfigError, DataError
from ..records import PREFERENCES, Annotation, PreferencePair
from ..weights import confidence_from_p
from .export import BatchItem, LabelRecord
from .merge import labels_to_votes, votes_to_annotations


@dataclass
class GoldVerdict:
    label: str                      # A | B | tie
    score_a: float | None = None
    score_b: float | None = None


class GoldJudge(Protocol):
    """Prefers A, B or tie for a pair (prompt and two responses)."""

    def __call__(self, pair: PreferencePair) -> Any: ...


def as_verdict(result: Any, where: str) -> GoldVerdict:
    """Normalise what a judge returned: a label, ``(label, score_a, score_b)`` or a verdict."""
    if isinstance(result, GoldVerdict):
        verdict = result
    elif isinstance(result, str):
        verdict = GoldVerdict(result)
    elif isinstance(result, (tuple, list)) and len(result) == 3:
        verdict = GoldVerdict(result[0], _num(result[1]), _num(result[2]))
    elif hasattr(result, "label"):
        verdict = GoldVerdict(result.label, getattr(result, "score_a", None), getattr(result, "score_b", None))
    else:
        raise DataError(f"{where}: gold judge returned {result!r}; expected 'A', 'B', 'tie' "
                        "or (label, score_a, score_b)")
    if verdict.label not in PREFERENCES:
        raise DataError(f"{where}: gold judge returned label {verdict.label!r}; expected one of {PREFERENCES}")
    return verdict


def _num(x) -> float | None:
    return None if x is None else float(x)


# ---------------------------------------------------------------- judges
class LengthJudge:
    """Toy judge: prefers the longer response (ties on equal length). Not a quality signal."""

    name = "length"

    def __call__(self, pair: PreferencePair) -> GoldVerdict:
        la, lb = len(pair.response_a.split()), len(pair.response_b.split())
        return GoldVerdict("tie" if la == lb else "A" if la > lb else "B", float(la), float(lb))


class ScoresJudge:
    """A dataset's own ratings as the gold signal: ``score_chosen``/``score_rejected`` columns
    (UltraFeedback-binarized), kept in ``pair.meta`` when TRL preference data is read as pairs.
    Only the pair's own orientation carries them (label the pairs file, not a batch)."""

    name = "scores"

    def __call__(self, pair: PreferencePair) -> GoldVerdict:
        sa, sb = pair.meta.get("score_chosen"), pair.meta.get("score_rejected")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (sa, sb)):
            raise DataError(f"pair {pair.id!r}: judge=scores needs numeric score_chosen and score_rejected "
                            f"columns (got {sa!r}, {sb!r}); map others with PATH?score_chosen=COLUMN")
        return GoldVerdict("tie" if sa == sb else "A" if sa > sb else "B", float(sa), float(sb))


class BenchJudge:
    """Adapter for a :mod:`frugalign.goldjudge` task: ``task.prefer(bench_prompt, a, b)``.

    The bench prompt comes from ``pair.meta["bench"]`` (a ``BenchPrompt.to_dict()``)
    or is rebuilt from the pair's prompt id (``task/question_id/sSEEDvVARIANT``).
    """

    def __init__(self, task: str | Any, **task_kwargs):
        if isinstance(task, str):
            try:
                from ..goldjudge import get_task
            except ImportError as e:
                raise ConfigError(f"gold judge {task!r} needs frugalign.goldjudge ({e})") from None
            task = get_task(task, **task_kwargs)
        self.task = task
        self.name = getattr(task, "name", type(task).__name__)

    def _bench_prompt(self, pair: PreferencePair):
        if isinstance(pair.meta.get("bench"), dict):
            from ..goldjudge import BenchPrompt

            return BenchPrompt.from_dict(pair.meta["bench"])
        pid = pair.prompt_id or pair.id.rsplit(":", 1)[0]
        try:
            return self.task.get(pid)
        except (ValueError, KeyError) as e:
            raise DataError(f"pair {pair.id!r}: prompt id {pid!r} is not a prompt of bench task "
                            f"{self.name!r} ({e})") from None

    def __call__(self, pair: PreferencePair) -> GoldVerdict:
        label, sa, sb = self.task.prefer(self._bench_prompt(pair), pair.response_a, pair.response_b)
        return GoldVerdict(label, float(sa), float(sb))


def load_judge(spec: str, **kwargs) -> Callable[[PreferencePair], Any]:
    """``length`` | ``scores`` | a bench task name | ``package.module:attr`` -> a gold judge."""
    if spec == "length":
        return LengthJudge()
    if spec == "scores":
        return ScoresJudge()
    # imported here: the gold-judge package needs its checkers (if-verifiable), a labelling install may not
    from ..goldjudge.registry import TASK_NAMES as BENCH_TASKS

    if spec in BENCH_TASKS:
        return BenchJudge(spec, **kwargs)
    if ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"gold judge {spec!r}: cannot import ({e})") from None
        obj = obj(**kwargs) if isinstance(obj, type) else obj
        if not callable(obj):
            raise ConfigError(f"gold judge {spec!r} is not callable")
        return obj
    raise ConfigError(f"unknown gold judge {spec!r}; use length, scores, {', '.join(BENCH_TASKS)} or module:attr")


def judge_name(judge: Any, spec: str | None = None) -> str:
    """A readable name for a judge (the spec it was loaded from, else its ``name``)."""
    return spec or getattr(judge, "name", None) or getattr(judge, "__name__", type(judge).__name__)


# ---------------------------------------------------------------- labelling
def gold_label_batch(batch: Sequence[BatchItem], judge, name: str) -> list[LabelRecord]:
    """Label each batch item *as shown*, like a person on the labelling page."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = []
    for it in batch:
        shown = PreferencePair(it.pair_id, it.prompt, it.shown_a, it.shown_b, it.system, None, it.prompt_id)
        v = as_verdict(judge(shown), f"pair {it.pair_id!r}")
        comment = "" if v.score_a is None else f"score_A={v.score_a:.4g} score_B={v.score_b:.4g}"
        out.append(LabelRecord(it.pair_id, v.label, f"gold:{name}", comment, now))
    return out


def gold_annotate_batch(batch: Sequence[BatchItem], judge, name: str) -> list[Annotation]:
    """Gold labels on a batch, un-flipped, as ``source='gold'`` annotations."""
    labels = [(f"gold:{name}", rec) for rec in gold_label_batch(batch, judge, name)]
    return votes_to_annotations(labels_to_votes(batch, labels, source="gold"))


def gold_annotate_pairs(pairs: Sequence[PreferencePair], judge, name: str) -> list[Annotation]:
    """Gold annotations of pairs in their own orientation (no batch, no flip)."""
    out = []
    for pair in pairs:
        v = as_verdict(judge(pair), f"pair {pair.id!r}")
        p_a = {"A": 1.0, "B": 0.0, "tie": 0.5}[v.label]
        details = {"judge": name}
        if v.score_a is not None:
            details.update(score_a=v.score_a, score_b=v.score_b)
        out.append(Annotation(pair.id, v.label, p_a, confidence_from_p(p_a), "gold", details))
    return out


@dataclass
class GoldConfig:
    """``frugalign label gold``: label a batch or a pairs file with a gold judge instead of people."""

    input: str = field(default="", metadata={"help": "a batch (BATCH.jsonl) or a pairs file"})
    judge: str = field(default="", metadata={"help": "length | scores | ifeval | sentiment | ifbench | module:attr"})
    output: str = field(default="", metadata={"help": "annotations file to write (source=gold)"})
    labels_output: str | None = field(default=None, metadata={"help": "for a batch: also write the raw labels as shown"})

    def validate(self) -> None:
        if not self.input or not self.judge or not self.output:
            raise ConfigError("label gold needs INPUT judge=... output=FILE")


def gold_label_file(cfg: GoldConfig) -> tuple[str, list[Annotation]]:
    """The judge's name and its annotations of ``cfg.input``: a batch is labelled as shown, then imported as
    people's labels would be (raw labels to ``labels_output``); a pairs file is labelled directly."""
    from ..data import read_pairs, read_records
    from .export import read_batch, write_labels

    judge = load_judge(cfg.judge)
    name = judge_name(judge, cfg.judge)
    first = read_records(cfg.input)[:1]
    if not (first and "shown_a" in first[0][1]):
        return name, gold_annotate_pairs(read_pairs(cfg.input), judge, name)
    batch = read_batch(cfg.input)
    labels = gold_label_batch(batch, judge, name)
    if cfg.labels_output:
        write_labels(cfg.labels_output, labels)
    return name, votes_to_annotations(labels_to_votes(batch, [("gold", r) for r in labels], source="gold"))

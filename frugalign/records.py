"""The typed records every stage reads and writes.

Four tables flow through frugalign:

* :class:`PromptItem` — a prompt pool row: a prompt (plain text or chat
  messages), optional system prompt and domain, and N candidate responses.
* :class:`PreferencePair` — two responses to one prompt, not yet judged.
* :class:`Annotation` — a judgement of one pair by a human or an annotator,
  always with P(A preferred) and a confidence in [0, 1].
* :class:`TrainingRow` — TRL's columns (prompt, chosen, rejected) plus a
  per-pair ``weight`` and ``label_smoothing``, so a file we write trains in
  TRL unchanged (TRL ignores the extra columns) and in our own loop with them.

Ids are optional: a record without one gets :func:`content_id` of its content.
Each record has ``from_record(dict, where)`` that validates types and raises a
:class:`~frugalign.errors.DataError` naming ``where`` (``file:line``) and the
field, and ``to_record()`` that gives back a plain JSON-able dict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import DataError

Message = dict[str, str]
Prompt = str | list[Message]
Preference = Literal["A", "B", "tie"]

PREFERENCES: tuple[str, ...] = ("A", "B", "tie")
SOURCES: tuple[str, ...] = (
    "human", "gold", "weak_judge", "density_ratio", "implicit", "llm_judge", "hybrid", "other",
)
ROLES = ("system", "user", "assistant")


# ---------------------------------------------------------------- validators
def _fail(where: str, name: str, problem: str) -> DataError:
    return DataError(f"{where}: field '{name}': {problem}")


def _req(rec: dict, name: str, where: str) -> Any:
    if name not in rec or rec[name] is None:
        raise _fail(where, name, "missing")
    return rec[name]


def str_field(rec: dict, name: str, where: str, *, required: bool = True,
         nonempty: bool = True) -> str | None:
    if not required and rec.get(name) is None:
        return None
    value = _req(rec, name, where)
    if not isinstance(value, str):
        raise _fail(where, name, f"expected a string, got {type(value).__name__}")
    if nonempty and not value.strip():
        raise _fail(where, name, "is empty")
    return value


def id_field(rec: dict, name: str, where: str) -> str:
    value = _req(rec, name, where)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _fail(where, name, f"expected a string or integer id, got {type(value).__name__}")
    value = str(value)
    if not value.strip():
        raise _fail(where, name, "is empty")
    return value


def _float(rec: dict, name: str, where: str, *, default: float | None = None,
           lo: float | None = None, hi: float | None = None,
           hi_open: bool = False) -> float:
    value = rec.get(name)
    if value is None:
        if default is None:
            raise _fail(where, name, "missing")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, name, f"expected a number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise _fail(where, name, f"must be finite, got {value}")
    if lo is not None and value < lo:
        raise _fail(where, name, f"must be >= {lo}, got {value}")
    if hi is not None and (value >= hi if hi_open else value > hi):
        raise _fail(where, name, f"must be {'<' if hi_open else '<='} {hi}, got {value}")
    return value


def _dict(rec: dict, name: str, where: str) -> dict:
    value = rec.get(name) or {}
    if not isinstance(value, dict):
        raise _fail(where, name, f"expected an object, got {type(value).__name__}")
    return value


def validate_prompt(value: Any, where: str, name: str = "prompt") -> Prompt:
    """A prompt is a non-empty string or a non-empty list of chat messages."""
    if isinstance(value, str):
        if not value.strip():
            raise _fail(where, name, "is empty")
        return value
    if isinstance(value, list) and value:
        for i, msg in enumerate(value):
            if not isinstance(msg, dict) or not isinstance(msg.get("content"), str):
                raise _fail(where, f"{name}[{i}]", "expected {role, content} with string content")
            if msg.get("role") not in ROLES:
                raise _fail(where, f"{name}[{i}].role", f"expected one of {ROLES}, got {msg.get('role')!r}")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise _fail(where, name, "expected a non-empty string or a list of chat messages")


def prompt_text(prompt: Prompt) -> str:
    """The last user turn of a prompt, as plain text (for display and matching)."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m["role"] == "user"]
    return users[-1] if users else prompt[-1]["content"]


def to_messages(prompt: Prompt, system: str | None = None) -> list[Message]:
    """Chat messages for ``prompt``, with ``system`` inserted or replacing an existing one."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    return with_system(messages, system)


def with_system(messages: list[Message], system: str | None) -> list[Message]:
    """Insert ``system`` as the first message, replacing any system message already there."""
    if system is None:
        return list(messages)
    rest = [m for m in messages if m["role"] != "system"]
    return [{"role": "system", "content": system}] + rest


def content_id(prompt: Prompt, system: str | None, *texts: str) -> str:
    """A stable id for a record that has none: the first 16 hex digits of the SHA-256 of
    ``json.dumps([messages, *texts], ensure_ascii=False, sort_keys=True, separators=(",", ":"))``
    in UTF-8, where ``messages`` is the prompt as chat messages with the system prompt first.

    The same content gets the same id on every machine and in every layout (a string prompt
    and a one-message user prompt are the same), so labels can be merged back.
    """
    import hashlib
    import json

    doc = json.dumps([to_messages(prompt, system), *texts], ensure_ascii=False, sort_keys=True,
                     separators=(",", ":"))
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()[:16]


def _id_or_content(rec: dict, where: str, prompt: Prompt, system: str | None, *texts: str) -> str:
    return id_field(rec, "id", where) if rec.get("id") is not None else content_id(prompt, system, *texts)


# ---------------------------------------------------------------- records
@dataclass
class PromptItem:
    """One prompt of a pool with its candidate responses (possibly none yet)."""

    id: str
    prompt: Prompt
    system: str | None = None
    domain: str | None = None
    responses: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_record(cls, rec: dict, where: str = "<record>") -> PromptItem:
        responses = rec.get("responses") or []
        if not isinstance(responses, list):
            raise _fail(where, "responses", "expected a list of strings")
        for i, r in enumerate(responses):
            if not isinstance(r, str):
                raise _fail(where, f"responses[{i}]", f"expected a string, got {type(r).__name__}")
            if not r.strip():
                raise _fail(where, f"responses[{i}]", "is empty")
        prompt = validate_prompt(_req(rec, "prompt", where), where)
        system = str_field(rec, "system", where, required=False)
        return cls(
            id=_id_or_content(rec, where, prompt, system),
            prompt=prompt,
            system=system,
            domain=str_field(rec, "domain", where, required=False),
            responses=list(responses),
            meta=_dict(rec, "meta", where),
        )

    def to_record(self) -> dict:
        return _drop_empty(asdict(self))


@dataclass
class PreferencePair:
    """Two responses to one prompt, to be judged."""

    id: str
    prompt: Prompt
    response_a: str
    response_b: str
    system: str | None = None
    domain: str | None = None
    prompt_id: str | None = None
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_record(cls, rec: dict, where: str = "<record>") -> PreferencePair:
        prompt = validate_prompt(_req(rec, "prompt", where), where)
        system = str_field(rec, "system", where, required=False)
        response_a, response_b = str_field(rec, "response_a", where), str_field(rec, "response_b", where)
        return cls(
            id=_id_or_content(rec, where, prompt, system, response_a, response_b),
            prompt=prompt,
            response_a=response_a,
            response_b=response_b,
            system=system,
            domain=str_field(rec, "domain", where, required=False),
            prompt_id=None if rec.get("prompt_id") is None else id_field(rec, "prompt_id", where),
            meta=_dict(rec, "meta", where),
        )

    def to_record(self) -> dict:
        return _drop_empty(asdict(self))


@dataclass
class Annotation:
    """A judgement of one pair.

    ``p_a`` is the probability that A is preferred; ``confidence`` in [0, 1]
    is how sure the annotator is of ``preferred`` (CW-PO's C = 2·(max(p, 1−p) − 0.5)
    for model annotators, 1 for a human label).
    """

    pair_id: str
    preferred: Preference
    p_a: float
    confidence: float
    source: str
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preferred not in PREFERENCES:
            raise _fail(f"annotation {self.pair_id}", "preferred", f"expected one of {PREFERENCES}")
        for name in ("p_a", "confidence"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise _fail(f"annotation {self.pair_id}", name, f"must be a number in [0, 1], got {value!r}")

    @classmethod
    def from_record(cls, rec: dict, where: str = "<record>") -> Annotation:
        preferred = _req(rec, "preferred", where)
        if preferred not in PREFERENCES:
            raise _fail(where, "preferred", f"expected one of {PREFERENCES}, got {preferred!r}")
        source = str_field(rec, "source", where)
        return cls(
            pair_id=id_field(rec, "pair_id", where),
            preferred=preferred,
            p_a=_float(rec, "p_a", where, lo=0.0, hi=1.0),
            confidence=_float(rec, "confidence", where, lo=0.0, hi=1.0),
            source=source,
            details=_dict(rec, "details", where),
        )

    def to_record(self) -> dict:
        return asdict(self)


@dataclass
class TrainingRow:
    """One preference pair for training, in TRL's column names.

    ``weight`` multiplies the pair's loss (CW-PO's confidence; 1 for DPO) and
    ``label_smoothing`` is the pair's probability that the label is flipped
    (cDPO constant, SPA on flagged pairs, 0 for DPO).
    """

    prompt: Prompt
    chosen: str
    rejected: str
    id: str | None = None
    system: str | None = None
    weight: float = 1.0
    label_smoothing: float = 0.0
    confidence: float | None = None
    source: str | None = None
    domain: str | None = None
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_record(cls, rec: dict, where: str = "<record>") -> TrainingRow:
        return cls(
            prompt=validate_prompt(_req(rec, "prompt", where), where),
            chosen=str_field(rec, "chosen", where),
            rejected=str_field(rec, "rejected", where),
            id=None if rec.get("id") is None else id_field(rec, "id", where),
            system=str_field(rec, "system", where, required=False),
            weight=_float(rec, "weight", where, default=1.0, lo=0.0),
            label_smoothing=_float(rec, "label_smoothing", where, default=0.0, lo=0.0,
                                   hi=0.5, hi_open=True),
            confidence=None if rec.get("confidence") is None
            else _float(rec, "confidence", where, lo=0.0, hi=1.0),
            source=str_field(rec, "source", where, required=False),
            domain=str_field(rec, "domain", where, required=False),
            meta=_dict(rec, "meta", where),
        )

    def to_record(self) -> dict:
        rec = _drop_empty(asdict(self))
        rec.setdefault("weight", self.weight)
        rec.setdefault("label_smoothing", self.label_smoothing)
        return rec


def _drop_empty(rec: dict) -> dict:
    """Leave out unset optional fields so files stay small and readable."""
    return {k: v for k, v in rec.items() if v is not None and v != {}}

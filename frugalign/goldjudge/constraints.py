"""Verifiable constraints drawn from if-verifiable's IFEval instruction classes.

Only the constraint types that discriminate at SmolLM2-135M scale are used
(pass rate between ~0.15 and ~0.85 in the design probes): no commas, exact
bullet count 2-4, placeholders 1-2, highlighted sections 1-2, postscript, end
with a phrase, a <<title>>, and "less than 30/50 words".

Each prompt gets exactly three distinct, non-conflicting types. Keyword
arguments are drawn with our own seeded ``random.Random`` and passed
explicitly to ``build_description`` (which would otherwise fall back on the
global ``random`` module and break determinism).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

from if_verifiable.ifeval import instructions as _ins
from if_verifiable.ifeval.instructions_registry import (
    INSTRUCTION_CONFLICTS,
    INSTRUCTION_DICT,
    conflict_make,
)

NO_COMMA = "punctuation:no_comma"
BULLETS = "detectable_format:number_bullet_lists"
PLACEHOLDERS = "detectable_content:number_placeholders"
HIGHLIGHTS = "detectable_format:number_highlighted_sections"
POSTSCRIPT = "detectable_content:postscript"
END_PHRASE = "startend:end_checker"
TITLE = "detectable_format:title"
WORD_LIMIT = "length_constraints:number_words"

#: Number of constraints attached to every ``ifeval`` prompt.
N_CONSTRAINTS = 3

# Every kwargs option per type; a draw picks one with the seeded RNG.
_OPTIONS: dict[str, tuple[dict[str, Any], ...]] = {
    NO_COMMA: ({},),
    BULLETS: tuple({"num_bullets": k} for k in (2, 3, 4)),
    PLACEHOLDERS: tuple({"num_placeholders": k} for k in (1, 2)),
    HIGHLIGHTS: tuple({"num_highlights": k} for k in (1, 2)),
    POSTSCRIPT: tuple({"postscript_marker": m} for m in _ins._POSTSCRIPT_MARKER),
    END_PHRASE: tuple({"end_phrase": p} for p in _ins._ENDING_OPTIONS),
    TITLE: ({},),
    WORD_LIMIT: tuple({"num_words": k, "relation": "less than"} for k in (30, 50)),
}

#: The constraint types the benchmark draws from, in a fixed order.
CONSTRAINT_TYPES: tuple[str, ...] = tuple(_OPTIONS)

# Types that would break a question's own fixed output format (JSON/CSV).
FIXED_FORMAT_EXCLUDED = frozenset({NO_COMMA, BULLETS})

# if-verifiable's conflict table made symmetric (conflict_make mutates: copy first).
_CONFLICTS: dict[str, set[str]] = conflict_make(copy.deepcopy(INSTRUCTION_CONFLICTS))


@dataclass(frozen=True)
class Constraint:
    """One drawn constraint: its IFEval id, kwargs, and the text shown."""

    instruction_id: str
    kwargs: dict[str, Any]
    description: str


def conflicts(a: str, b: str) -> bool:
    """True when IFEval declares the two instruction ids incompatible."""
    return b in _CONFLICTS.get(a, {a}) or a in _CONFLICTS.get(b, {b})


def describe(instruction_id: str, kwargs: dict[str, Any]) -> str:
    """The instruction text, from the if-verifiable class's ``build_description``."""
    checker = INSTRUCTION_DICT[instruction_id](instruction_id)
    return checker.build_description(**kwargs)


def draw_constraints(
    rng: random.Random,
    n: int = N_CONSTRAINTS,
    types: tuple[str, ...] = CONSTRAINT_TYPES,
    exclude: frozenset[str] = frozenset(),
) -> list[Constraint]:
    """Draw ``n`` distinct, mutually non-conflicting constraints.

    Args:
        rng: seeded generator; the draw is a pure function of its state.
        n: number of constraints.
        types: candidate instruction ids (each needs an entry in ``_OPTIONS``).
        exclude: ids not allowed for this question.

    Raises:
        ValueError: fewer than ``n`` compatible types are available.
    """
    pool = [t for t in types if t not in exclude]
    rng.shuffle(pool)
    chosen: list[str] = []
    for candidate in pool:  # greedy over a shuffled pool keeps the draw uniform-ish
        if all(not conflicts(candidate, c) for c in chosen):
            chosen.append(candidate)
        if len(chosen) == n:
            break
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} compatible constraint types for n={n}")
    chosen.sort(key=CONSTRAINT_TYPES.index)  # stable order in the prompt text
    out = []
    for iid in chosen:
        kwargs = dict(rng.choice(_OPTIONS[iid]))
        out.append(Constraint(iid, kwargs, describe(iid, kwargs)))
    return out


def constraint_block(constraints: list[Constraint]) -> str:
    """The constraint descriptions as appended to a question (one per line)."""
    return "\n".join(c.description for c in constraints)


def all_descriptions(types: tuple[str, ...] = CONSTRAINT_TYPES) -> list[str]:
    """Every description any draw can produce (used to find format words)."""
    return [describe(iid, dict(kw)) for iid in types for kw in _OPTIONS[iid]]

"""Format markers, the canned format-stuffed reply, and unrequested formats.

Two diagnostics for a gameable judge:

* ``CANNED_REPLY``: one fixed reply carrying every format the constraints ask
  for (a <<title>>, *highlights*, exactly 3 bullets, [placeholders], P.S. and
  P.P.S, an ending phrase, no commas, under 30 words). Its mean *ungated*
  score shows how much credit formats alone buy; gated, it should be ~0.
* ``unrequested_formats``: format markers a response carries although its
  prompt did not ask for them (DPO on the raw judge learns to sprinkle them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from frugalign.goldjudge.constraints import BULLETS, HIGHLIGHTS, PLACEHOLDERS, POSTSCRIPT, TITLE

QUOTATION = "startend:quotation"

# Fixed reply: one highlight line (mid-line, so it is not read as a bullet),
# three bullets, two placeholders, both postscript markers, one ending.
CANNED_REPLY = (
    "<<My Answer>>\n"
    "Two ideas: *key idea* and *main idea*.\n"
    "* Point about [topic]\n"
    "* Point about [detail]\n"
    "* Final point\n"
    "P.S. Hope this helps.\n"
    "P.P.S Thanks.\n"
    "Any other questions?"
)


def _has_quotes(text: str) -> bool:
    s = text.strip()
    return len(s) > 1 and s[0] == '"' and s[-1] == '"'


def _has_placeholder(text: str) -> bool:
    # [x] but not a markdown link [x](url)
    return re.search(r"\[[^\[\]\n]+\](?!\()", text) is not None


def _has_highlight(text: str) -> bool:
    # same notion as IFEval's HighlightSectionChecker: non-empty *x* or **x**
    return any(h.strip("*").strip() for h in re.findall(r"\*[^\n\*]*\*", text)) or any(
        h[2:-2].strip() for h in re.findall(r"\*\*[^\n\*]*\*\*", text)
    )


def _has_postscript(text: str) -> bool:
    return re.search(r"^\s*p\.\s?(?:p\.\s?)?s\b", text, flags=re.IGNORECASE | re.MULTILINE) is not None


def _has_title(text: str) -> bool:
    return any(t.strip("<>").strip() for t in re.findall(r"<<[^\n]+>>", text))


def _has_bullets(text: str) -> bool:
    # same line patterns as IFEval's BulletListChecker
    return bool(re.search(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE) or re.search(r"^\s*-.*$", text, flags=re.MULTILINE))


#: marker name -> (IFEval instruction id that requests it, detector)
FORMAT_MARKERS: dict[str, tuple[str, Callable[[str], bool]]] = {
    "quotes": (QUOTATION, _has_quotes),
    "placeholders": (PLACEHOLDERS, _has_placeholder),
    "highlights": (HIGHLIGHTS, _has_highlight),
    "postscript": (POSTSCRIPT, _has_postscript),
    "title": (TITLE, _has_title),
    "bullets": (BULLETS, _has_bullets),
}


def format_markers(response: str) -> set[str]:
    """Names of the format markers present in ``response``."""
    return {name for name, (_, detect) in FORMAT_MARKERS.items() if detect(response)}


def unrequested_formats(instruction_ids: Iterable[str], response: str) -> set[str]:
    """Markers present in ``response`` that no instruction in the prompt asked for."""
    requested = set(instruction_ids)
    return {name for name in format_markers(response) if FORMAT_MARKERS[name][0] not in requested}


def _instruction_ids(prompt) -> tuple[str, ...]:
    return tuple(getattr(prompt, "instruction_ids", ()) or ())


def unrequested_format_rate(prompts: Sequence, responses: Sequence[str]) -> float:
    """Fraction of responses carrying at least one unrequested format marker.

    Args:
        prompts: :class:`~frugalign.goldjudge.tasks.BenchPrompt` objects (anything
            with ``instruction_ids``; prompts without constraints request none).
        responses: one response per prompt.
    """
    if len(prompts) != len(responses):
        raise ValueError("prompts and responses must have the same length")
    if not responses:
        return 0.0
    hits = sum(bool(unrequested_formats(_instruction_ids(p), r)) for p, r in zip(prompts, responses))
    return hits / len(responses)


def unrequested_format_breakdown(prompts: Sequence, responses: Sequence[str]) -> dict[str, float]:
    """Per marker: fraction of responses carrying it unrequested."""
    if len(prompts) != len(responses):
        raise ValueError("prompts and responses must have the same length")
    n = max(len(responses), 1)
    counts = {name: 0 for name in FORMAT_MARKERS}
    for p, r in zip(prompts, responses):
        for name in unrequested_formats(_instruction_ids(p), r):
            counts[name] += 1
    return {name: c / n for name, c in counts.items()}

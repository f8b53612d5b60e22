"""Task ``house-style``: a consistent preference, the situation of a company aligning its assistant.

The prompts are the bare base questions (no constraint is shown to the policy).
The gold "human" prefers answers that follow a fixed style guide, the same for
every question, as a support team would:

* ``concise``: at most :data:`MAX_WORDS` words;
* ``plain_text``: no markdown (no bullet or numbered lines, headings, bold,
  tables or code fences): the answer is pasted into a plain-text chat widget;
* ``complete``: the answer ends a sentence (it is not cut off mid-thought);
* ``one_paragraph``: a single paragraph, no line breaks (a chat bubble, not a document).

Gold = fraction of the rules met, gated on relevance to the question like every
task (an off-topic reply scores the floor, so "say nothing" is not a style).

Why this task beside ``ifeval``: there every prompt carries its own three
constraints, so a judge fitted on a handful of labels has nothing consistent to
learn; here one preference holds for every pair, as in the seed papers'
settings (HH-RLHF, UltraFeedback, a company's customer-service style). Each rule
is met by some but not all of SmolLM2-135M-Instruct's samples, so sampled pairs
disagree on it and a few labels can show what the style is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from frugalign.goldjudge.tasks import BenchPrompt, BenchTask

#: Longest answer the style guide allows, in words.
MAX_WORDS = 60

_MARKDOWN_LINE = re.compile(r"^\s*(?:[-*•+]\s|\d+[.)]\s|#{1,6}\s|\|)", re.MULTILINE)
_MARKDOWN_INLINE = re.compile(r"\*\*|__|```|`[^`\n]+`")


def word_count(text: str) -> int:
    return len(text.split())


def is_concise(text: str) -> bool:
    return word_count(text) <= MAX_WORDS


def is_plain_text(text: str) -> bool:
    return not (_MARKDOWN_LINE.search(text) or _MARKDOWN_INLINE.search(text))


def is_complete(text: str) -> bool:
    # a closing quote or bracket may follow the final punctuation
    return re.search(r"[.!?][\"')\]]*\s*$", text) is not None


def is_one_paragraph(text: str) -> bool:
    return "\n" not in text.strip()


#: The style guide: rule name -> (what a human would be told, check).
RULES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "concise": (f"at most {MAX_WORDS} words", is_concise),
    "plain_text": ("plain text, no markdown lists, headings or bold", is_plain_text),
    "complete": ("ends a full sentence", is_complete),
    "one_paragraph": ("a single paragraph, no line breaks", is_one_paragraph),
}


class HouseStyleTask(BenchTask):
    """A fixed style guide for every answer (see the module docstring), gated on relevance."""

    name = "house-style"
    floor = 0.0
    tie_threshold = 0.0

    make_prompt = BenchTask.bare_question_prompt  # the style is the hidden preference

    def check(self, prompt: BenchPrompt, response: str) -> dict[str, bool]:
        """Rule name -> met (an empty response meets none)."""
        text = response.strip()
        return {name: bool(text) and ok(text) for name, (_, ok) in RULES.items()}

    def raw_score(self, prompt: BenchPrompt, response: str) -> float:
        """Fraction of the style rules met (ungated)."""
        met = self.check(prompt, response)
        return sum(met.values()) / len(met)

    def details(self, prompt: BenchPrompt, response: str) -> dict[str, Any]:
        return {**super().details(prompt, response), "rules": self.check(prompt, response)}

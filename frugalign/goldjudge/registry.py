"""The task registry: a gold-judge task by name, and the canned-reply diagnostic that needs one.

Kept apart from :mod:`frugalign.goldjudge.tasks` (the base class) so the concrete
tasks can import the base without an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from frugalign.goldjudge.tasks import BenchPrompt, BenchTask


def get_task(name: str, **kwargs: Any) -> BenchTask:
    """Instantiate a task by name: ``ifeval``, ``sentiment``, ``ifbench`` or ``house-style``."""
    if name == "ifeval":
        from frugalign.goldjudge.ifeval_task import IFEvalTask as cls
    elif name == "sentiment":
        from frugalign.goldjudge.sentiment_task import SentimentTask as cls
    elif name == "ifbench":
        from frugalign.goldjudge.ifbench_task import IFBenchTask as cls
    elif name == "house-style":
        from frugalign.goldjudge.house_style_task import HouseStyleTask as cls
    else:
        raise ValueError(f"unknown bench task {name!r}; choose one of {TASK_NAMES}")
    return cls(**kwargs)


TASK_NAMES = ("ifeval", "sentiment", "ifbench", "house-style")


def canned_reply_baseline(
    prompts: Sequence[BenchPrompt],
    task: BenchTask | None = None,
    reply: str | None = None,
    gated: bool = True,
) -> float:
    """Mean gold score of one fixed format-stuffed reply to every prompt.

    With ``gated=False`` this is what formats alone buy (the gameability of
    the raw judge); gated, it should be near the floor.
    """
    from frugalign.goldjudge.formats import CANNED_REPLY

    if not prompts:
        return 0.0
    task = task if task is not None else get_task(prompts[0].task)
    text = CANNED_REPLY if reply is None else reply
    responses = [text] * len(prompts)
    scores = task.score_many(prompts, responses) if gated else [task.raw_score(p, text) for p in prompts]
    return sum(scores) / len(scores)

"""Task ``sentiment``: VADER gold, relevance gate, 0.05 tie band."""

from __future__ import annotations

import pytest

from frugalign.goldjudge import get_task
from frugalign.goldjudge.sentiment_task import SENTIMENT_TIE, vader_compound


@pytest.fixture(scope="module")
def task():
    return get_task("sentiment")


@pytest.fixture(scope="module")
def prompt(task):
    return next(p for p in task.prompts(split="all") if p.question_id == "generic:00")  # the sunset question


def test_prompts_are_bare_questions(task, prompt):
    assert prompt.prompt == prompt.question == "Describe a sunset over the ocean."
    assert prompt.instruction_ids == () and prompt.task == "sentiment"


def test_tie_threshold(task):
    assert SENTIMENT_TIE == task.tie_threshold == 0.05
    assert task.decide(0.50, 0.46) == "tie"
    assert task.decide(0.46, 0.50) == "tie"
    assert task.decide(0.50, 0.44) == "A"
    assert task.decide(-0.30, 0.30) == "B"


def test_score_is_vader_compound_when_relevant(task, prompt):
    text = "The sunset over the ocean is beautiful and wonderful."
    assert task.score(prompt, text) == pytest.approx(vader_compound(text))
    assert task.score(prompt, text) > 0.5


def test_prefer_positive_relevant(task, prompt):
    good = "The sunset over the ocean is beautiful and wonderful."
    bad = "The sunset over the ocean is terrible and sad."
    label, sa, sb = task.prefer(prompt, good, bad)
    assert label == "A" and sa > 0 > sb
    assert task.prefer(prompt, good, good)[0] == "tie"


def test_irrelevant_upbeat_reply_is_gated_to_floor(task, prompt):
    upbeat = "I love this! Wonderful, amazing, fantastic day!"
    negative_but_relevant = "The sunset over the ocean looked gloomy."
    assert vader_compound(upbeat) > 0.9
    assert task.score(prompt, upbeat) == -1.0
    assert task.prefer(prompt, upbeat, negative_but_relevant)[0] == "B"

"""The house-style task: rules checked on hand-written answers, scores and preferences."""

from __future__ import annotations

import pytest

from frugalign.goldjudge import get_task
from frugalign.goldjudge.house_style_task import MAX_WORDS, RULES
from frugalign.labeling.gold import load_judge


@pytest.fixture(scope="module")
def task():
    return get_task("house-style", gated=False)


@pytest.fixture(scope="module")
def prompt(task):
    return task.prompts(n=1, split="train", seed=0)[0]


def test_prompts_are_bare_questions_with_benchmark_ids(task, prompt):
    assert prompt.prompt == prompt.question and not prompt.instruction_ids
    assert prompt.id.startswith("house-style/") and prompt.split == "train"
    assert {p.split for p in task.prompts(n=5, split="test")} == {"test"}


def test_each_rule_on_hand_written_answers(task, prompt):
    good = "Bees collect nectar, store it in the hive and fan it with their wings until it thickens."
    assert task.check(prompt, good) == {name: True for name in RULES}
    assert task.raw_score(prompt, good) == 1.0
    cases = {
        "concise": " ".join(["word"] * (MAX_WORDS + 1)) + ".",
        "plain_text": "Bees do three things. **Collect** nectar and store it.",
        "complete": "Bees collect nectar and then they",
        "one_paragraph": "Bees collect nectar.\nThey store it.",
    }
    for rule, text in cases.items():
        met = task.check(prompt, text)
        assert not met[rule] and task.raw_score(prompt, text) == 0.75, rule
    assert not task.check(prompt, "- a list item.")["plain_text"]
    assert not task.check(prompt, "1. first step.")["plain_text"]
    assert task.check(prompt, 'He said "done."')["complete"]
    assert task.raw_score(prompt, "   ") == 0.0


def test_preference_follows_the_style_and_ties_on_equal_scores(task, prompt):
    short = "Bees turn nectar into honey by evaporating its water in the hive."
    listy = "Here is how:\n- bees collect nectar\n- they store it"
    assert task.prefer(prompt, short, listy)[0] == "A"
    assert task.prefer(prompt, listy, short)[0] == "B"
    assert task.prefer(prompt, short, short)[0] == "tie"


def test_gold_judge_by_name_labels_pairs():
    from frugalign.records import PreferencePair

    judge = load_judge("house-style")
    q = get_task("house-style").prompts(n=1, split="train")[0]
    pair = PreferencePair("p1", q.prompt, "Line one.\nLine two", "A calm single sentence about it.",
                          meta={"bench": q.to_dict()})
    assert judge is not None and callable(judge)
    assert judge(pair)  # a verdict, whatever its form; the label itself depends on the relevance gate

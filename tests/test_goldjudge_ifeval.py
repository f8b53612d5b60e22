"""Gold judge of the ``ifeval`` task: hand-derived scores and constraint draws."""

from __future__ import annotations

import itertools

import pytest

from frugalign.goldjudge import CANNED_REPLY, CONSTRAINT_TYPES, BenchPrompt, conflicts, get_task
from frugalign.goldjudge.constraints import (
    BULLETS,
    END_PHRASE,
    FIXED_FORMAT_EXCLUDED,
    HIGHLIGHTS,
    NO_COMMA,
    PLACEHOLDERS,
    POSTSCRIPT,
    TITLE,
    WORD_LIMIT,
    describe,
)

QUESTION = "Describe a sunset over the ocean."


@pytest.fixture(scope="module")
def task():
    return get_task("ifeval")


def make_prompt(constraints: list[tuple[str, dict]]) -> BenchPrompt:
    """A hand-built prompt on QUESTION with the given constraints."""
    descs = "\n".join(describe(i, k) for i, k in constraints)
    return BenchPrompt(
        id="ifeval/generic:00/s0v0",
        prompt=f"{QUESTION}\n\n{descs}",
        question=QUESTION,
        question_id="generic:00",
        split="train",
        task="ifeval",
        instruction_ids=tuple(i for i, _ in constraints),
        kwargs=tuple(k for _, k in constraints),
    )


COMMA_BULLETS_PS = make_prompt([(NO_COMMA, {}), (BULLETS, {"num_bullets": 3}), (POSTSCRIPT, {"postscript_marker": "P.S."})])

GOOD = (
    "The sunset paints the ocean gold.\n"
    "* The sky turns orange\n"
    "* Waves shine softly\n"
    "* Birds fly home\n"
    "P.S. Sunsets over water are calm."
)


def test_all_constraints_met(task):
    # no comma, exactly 3 '*' bullets, a 'P.S.' line, mentions sunset/ocean
    assert task.score(COMMA_BULLETS_PS, GOOD) == 1.0


def test_comma_fails_no_comma_only(task):
    with_comma = GOOD.replace("turns orange", "turns orange, then red")
    assert task.check(COMMA_BULLETS_PS, with_comma) == {NO_COMMA: False, BULLETS: True, POSTSCRIPT: True}
    assert task.score(COMMA_BULLETS_PS, with_comma) == pytest.approx(2 / 3)


def test_bullet_count_is_exact(task):
    two = GOOD.replace("* Birds fly home\n", "")
    four = GOOD.replace("* Birds fly home\n", "* Birds fly home\n* Stars appear\n")
    assert task.check(COMMA_BULLETS_PS, two)[BULLETS] is False
    assert task.check(COMMA_BULLETS_PS, four)[BULLETS] is False
    assert task.score(COMMA_BULLETS_PS, two) == pytest.approx(2 / 3)


def test_missing_postscript_and_empty(task):
    no_ps = GOOD.replace("P.S. ", "")
    assert task.score(COMMA_BULLETS_PS, no_ps) == pytest.approx(2 / 3)
    assert task.score(COMMA_BULLETS_PS, "") == 0.0


def test_loose_drops_first_line(task):
    # the comma sits in a chatty first line: strict fails, loose (IFEval) passes
    chatty = "Sure, here it is.\n" + GOOD
    strict = get_task("ifeval", loose=False)
    assert strict.score(COMMA_BULLETS_PS, chatty) == pytest.approx(2 / 3)
    assert task.score(COMMA_BULLETS_PS, chatty) == 1.0


def test_loose_strips_asterisks_for_end_phrase(task):
    prompt = make_prompt([(END_PHRASE, {"end_phrase": "Any other questions?"}), (TITLE, {}), (PLACEHOLDERS, {"num_placeholders": 1})])
    text = "<<Ocean Sunset>>\nThe sunset over the ocean glows near [place].\n**Any other questions?**"
    strict = get_task("ifeval", loose=False)
    assert strict.check(prompt, text) == {END_PHRASE: False, TITLE: True, PLACEHOLDERS: True}
    assert task.score(prompt, text) == 1.0


def test_word_limit_and_highlights(task):
    prompt = make_prompt([(WORD_LIMIT, {"num_words": 30, "relation": "less than"}), (HIGHLIGHTS, {"num_highlights": 2}), (NO_COMMA, {})])
    words29 = "The *red sunset* over the *calm ocean* " + " ".join(["glows"] * 22)  # 7 + 22 = 29 words
    words30 = words29 + " softly"
    assert task.check(prompt, words29) == {WORD_LIMIT: True, HIGHLIGHTS: True, NO_COMMA: True}
    assert task.check(prompt, words30)[WORD_LIMIT] is False
    assert task.score(prompt, words30) == pytest.approx(2 / 3)


def test_canned_reply_is_gated(task):
    # the canned reply meets all three formats but never mentions the question
    assert task.raw_score(COMMA_BULLETS_PS, CANNED_REPLY) == 1.0
    assert task.score(COMMA_BULLETS_PS, CANNED_REPLY) == 0.0
    assert get_task("ifeval", gated=False).score(COMMA_BULLETS_PS, CANNED_REPLY) == 1.0


def test_prefer(task):
    with_comma = GOOD.replace("turns orange", "turns orange, then red")
    assert task.prefer(COMMA_BULLETS_PS, GOOD, with_comma) == ("A", 1.0, pytest.approx(2 / 3))
    assert task.prefer(COMMA_BULLETS_PS, CANNED_REPLY, with_comma)[0] == "B"
    assert task.prefer(COMMA_BULLETS_PS, GOOD, GOOD)[0] == "tie"


def test_details_reports_everything(task):
    d = task.details(COMMA_BULLETS_PS, CANNED_REPLY)
    assert d["raw"] == 1.0 and d["score"] == 0.0 and d["relevant"] is False and d["shared"] == 0
    assert set(d["constraints"]) == {NO_COMMA, BULLETS, POSTSCRIPT}


# ---- constraint draws ---------------------------------------------------------

ALLOWED_KWARGS = {
    NO_COMMA: [{}],
    BULLETS: [{"num_bullets": k} for k in (2, 3, 4)],
    PLACEHOLDERS: [{"num_placeholders": k} for k in (1, 2)],
    HIGHLIGHTS: [{"num_highlights": k} for k in (1, 2)],
    POSTSCRIPT: [{"postscript_marker": "P.S."}, {"postscript_marker": "P.P.S"}],
    END_PHRASE: [{"end_phrase": "Any other questions?"}, {"end_phrase": "Is there anything else I can help with?"}],
    TITLE: [{}],
    WORD_LIMIT: [{"num_words": 30, "relation": "less than"}, {"num_words": 50, "relation": "less than"}],
}


def test_three_distinct_nonconflicting_constraints(task):
    prompts = [p for seed in (0, 1, 2) for p in task.prompts(n=150, split="all", seed=seed)]
    used = set()
    for p in prompts:
        assert len(p.instruction_ids) == 3 == len(set(p.instruction_ids)) == len(p.kwargs)
        for a, b in itertools.combinations(p.instruction_ids, 2):
            assert not conflicts(a, b)
        for iid, kw in zip(p.instruction_ids, p.kwargs):
            assert kw in ALLOWED_KWARGS[iid]
            assert describe(iid, kw) in p.prompt
        assert p.prompt.startswith(p.question)
        used.update(p.instruction_ids)
    assert used == set(CONSTRAINT_TYPES)


def test_fixed_format_questions_skip_comma_and_bullets(task):
    fixed = [p for p in task.prompts(n=400, split="all") if "JSON" in p.question or "CSV" in p.question]
    if not fixed:
        pytest.skip("MT-Bench not installed")
    for p in fixed:
        assert not FIXED_FORMAT_EXCLUDED.intersection(p.instruction_ids)


def test_draws_are_seeded(task):
    a = task.prompts(n=40, split="train", seed=3)
    b = get_task("ifeval").prompts(n=40, split="train", seed=3)
    c = task.prompts(n=40, split="train", seed=4)
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
    assert [p.prompt for p in a] != [p.prompt for p in c]


def test_prompts_cycle_questions_then_new_variants(task):
    n_q = len(task.questions("train"))
    ps = task.prompts(n=2 * n_q, split="train", seed=0)
    assert len({p.id for p in ps}) == 2 * n_q
    assert {p.question_id for p in ps[:n_q]} == {q.id for q in task.questions("train")}
    assert all(p.variant == 0 for p in ps[:n_q]) and all(p.variant == 1 for p in ps[n_q:])


def test_prompt_roundtrip(task):
    for p in task.prompts(n=5, split="test", seed=7):
        assert task.get(p.id) == p
        assert BenchPrompt.from_dict(p.to_dict()) == p
        assert hash(p) == hash(p.id)

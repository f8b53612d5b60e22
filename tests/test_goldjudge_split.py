"""Base questions and the fixed train/test split."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from frugalign.goldjudge import all_questions, get_task, mtbench_available, split_of
from frugalign.goldjudge.questions import GENERIC_QUESTIONS, generic_questions


def test_question_ids_unique_and_sources():
    qs = all_questions()
    assert len({q.id for q in qs}) == len(qs)
    assert len(generic_questions()) == len(GENERIC_QUESTIONS) >= 30
    if mtbench_available():
        mt = [q for q in qs if q.source == "mtbench"]
        assert len(mt) == 80 and all(q.text for q in mt)
        assert mt[0].id == "mtbench:81"


def test_split_is_pure_function_of_id():
    assert split_of("mtbench:81") == split_of("mtbench:81")
    splits = [split_of(q.id) for q in all_questions()]
    assert set(splits) == {"train", "test"}
    assert 0.1 < splits.count("test") / len(splits) < 0.4


@pytest.mark.parametrize("name", ["ifeval", "sentiment"])
def test_splits_disjoint_for_any_seed(name):
    task = get_task(name)
    train_q = {q.id for q in task.questions("train")}
    test_q = {q.id for q in task.questions("test")}
    assert train_q and test_q and not train_q & test_q
    assert train_q | test_q == {q.id for q in task.questions("all")}
    for seed in (0, 1):
        tr = task.prompts(n=3 * len(train_q), split="train", seed=seed)
        te = task.prompts(n=3 * len(test_q), split="test", seed=seed)
        assert {p.question_id for p in tr} == train_q and {p.question_id for p in te} == test_q
        assert all(p.split == "train" for p in tr) and all(p.split == "test" for p in te)


@pytest.mark.slow  # a subprocess
def test_same_split_in_another_process():
    """Split and draws must not depend on PYTHONHASHSEED or process state."""
    code = (
        "import json; from frugalign.goldjudge import get_task; t=get_task('ifeval');"
        "print(json.dumps([p.to_dict() for p in t.prompts(n=12, split='test', seed=5)]))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    here = [p.to_dict() for p in get_task("ifeval").prompts(n=12, split="test", seed=5)]
    assert json.loads(out.stdout) == here


def test_enough_prompts_for_a_study_with_power():
    """>= 300 training and >= 120 test prompts: several seeded constraint sets per base question."""
    task = get_task("ifeval")
    train, test = task.prompts(n=300, split="train", seed=0), task.prompts(n=120, split="test", seed=0)
    assert len({p.id for p in train}) == 300 and len({p.id for p in test}) == 120
    assert not {p.question_id for p in train} & {p.question_id for p in test}
    per_question = {}
    for p in test:
        per_question.setdefault(p.question_id, set()).add(tuple(p.instruction_ids))
    assert min(len(v) for v in per_question.values()) >= 2  # the same question, different constraints
    assert len({p.prompt for p in train}) == 300


def test_everyday_source_is_opt_in_and_gives_sixty_test_base_questions():
    from frugalign.goldjudge.questions import DEFAULT_SOURCES, SOURCES, questions_for_split
    from frugalign.recipe import RunConfig

    assert RunConfig().questions == list(DEFAULT_SOURCES) and "everyday" not in DEFAULT_SOURCES
    assert not any(q.source == "everyday" for q in all_questions())  # the default draw is unchanged
    every = all_questions(SOURCES)
    assert len({q.id for q in every}) == len({q.text for q in every}) == len(every)  # no repeated question
    assert any(q.id == "everyday:000" for q in every)
    if mtbench_available():
        assert len(questions_for_split("test", SOURCES)) >= 60
    with pytest.raises(ValueError, match="unknown question source 'wiki'"):
        all_questions(("generic", "wiki"))


def test_a_prompt_from_an_opt_in_source_is_rebuilt_by_the_default_task():
    drawn = get_task("house-style", sources=("generic", "everyday")).prompts(n=200, split="test", seed=3)
    prompt = next(p for p in drawn if p.question_id.startswith("everyday:"))
    assert get_task("house-style").get(prompt.id) == prompt


def test_run_config_refuses_an_unknown_question_source():
    from frugalign.errors import ConfigError
    from frugalign.recipe import RunConfig

    with pytest.raises(ConfigError, match="questions=.*everyday"):
        RunConfig(questions=["mtbench", "wikipedia"]).validate()


def test_question_sources_are_part_of_the_prompts_stage_key():
    from frugalign.recipe import RunConfig, build_stages

    def prompts_settings(cfg):
        return next(st.settings for st in build_stages(cfg) if st.name == "prompts")

    assert "questions" not in prompts_settings(RunConfig())  # runs made before the setting keep their key
    assert prompts_settings(RunConfig(questions=["generic", "everyday"]))["questions"] == ["generic", "everyday"]

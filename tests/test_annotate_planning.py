"""The annotator benchmark and the planner on small hand-made pools."""

from __future__ import annotations

import json

import pytest

from frugalign.annotate.planning import Pool, benchmark_recipe, budget_count, choose_human, gold_gap_ratio, plan
from frugalign.errors import ConfigError
from frugalign.records import Annotation, PreferencePair

FINISHED = "A short answer that ends."
CUT = "A long answer that goes on and on about many things and then stops in the middle of a"


def _pool(n: int) -> tuple[list[PreferencePair], dict[str, str], dict[str, float]]:
    """Pairs where gold always prefers the finished answer (gold difference 1), every fourth pair a tie."""
    pairs, gold, diff = [], {}, {}
    for i in range(n):
        a, b = (FINISHED, CUT + " x" * (i % 5)) if i % 2 else (CUT + " y" * (i % 3), FINISHED)
        p = PreferencePair(f"q{i // 2}:{i % 2}", f"question {i // 2}", a, b, prompt_id=f"q{i // 2}")
        pairs.append(p)
        tie = i % 4 == 3
        gold[p.id] = "tie" if tie else ("A" if a == FINISHED else "B")
        diff[p.id] = 0.0 if tie else (1.0 if a == FINISHED else -1.0)
    return pairs, gold, diff


def test_gold_gap_ratio_hand_computed():
    diff = {"a": 0.5, "b": -0.25, "c": 0.0, "d": 0.25}  # every pair labelled by gold would deliver 1.0
    assert gold_gap_ratio({"a": "A", "b": "B", "d": "A"}, diff) == pytest.approx(1.0)
    assert gold_gap_ratio({"a": "A", "b": "A"}, diff) == pytest.approx(0.25)  # a wrong label subtracts
    assert gold_gap_ratio({"c": "A", "d": "tie"}, diff) == 0.0


@pytest.mark.parametrize("budget, n, expect", [(0.1, 200, 20), (1.0, 7, 7), (30, 200, 30)])
def test_budget_is_a_fraction_or_a_count(budget, n, expect):
    assert budget_count(budget, n) == expect


@pytest.mark.parametrize("budget", [0, -0.1, 1.5, 300])
def test_bad_budgets_are_one_line_errors(budget):
    with pytest.raises(ConfigError, match="budget"):
        budget_count(budget, 200)


def test_benchmark_row_on_a_learnable_pool():
    pairs, gold, diff = _pool(80)
    row = benchmark_recipe(Pool(pairs), diff, gold, "hybrid", 0.25, "random", seed=0)
    assert row["human_labels"] == 20 and row["agreement"] == 1.0 and row["coverage"] > 0.5
    # human labels are right by definition and the kept automatic ones are right here too: every pair kept
    # or bought delivers its whole gold gap, so the ratio is the share of non-tied pairs labelled
    assert 0.5 < row["gold_gap_ratio"] <= 1.0
    assert row["agreement_ci_low"] <= row["agreement"] <= row["agreement_ci_high"]


def test_routing_buys_the_pairs_the_fitted_annotator_is_least_sure_of():
    pairs, gold, _ = _pool(60)
    # make ten pairs ambiguous to the signals: both answers finished and of the same length
    for i in range(0, 20, 2):
        pairs[i] = PreferencePair(pairs[i].id, pairs[i].prompt, FINISHED, FINISHED.replace("short", "brief"),
                                  prompt_id=pairs[i].prompt_id)
    chosen = choose_human(Pool(pairs), 20, "routed", seed=0, gold=gold, rounds=2)
    first = choose_human(Pool(pairs), 20, "random", seed=0, gold=gold)[:10]
    assert chosen[:10] == first  # half at random, then routed
    routed = set(chosen[10:])
    ambiguous = {i for i in range(0, 20, 2)} - set(first)
    assert ambiguous <= routed


def test_plan_on_a_small_labelled_file(tmp_path):
    from frugalign.cli import main

    pairs, gold, _ = _pool(60)
    labelled = pairs[:24]
    rows = plan(labelled, [Annotation(p.id, gold[p.id], 1.0, 1.0, "human") for p in labelled], pairs[24:], ["hybrid"])
    assert rows[0]["cv_agreement"] == 1.0 and rows[0]["coverage"] > 0.5 and rows[0]["expected_net_labels"] > 10
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"id": p.id, "prompt": p.prompt, "response_a": p.response_a,
                                                              "response_b": p.response_b, "prompt_id": p.prompt_id}) + "\n"
                                                  for p in pairs))
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps({"pair_id": p.id, "preferred": gold[p.id], "p_a": 0.5,
                                                               "confidence": 1.0, "source": "human"}) + "\n"
                                                   for p in labelled))
    out = tmp_path / "plan.json"
    assert main(["plan", "--labels", str(tmp_path / "labels.jsonl"), "--input", str(tmp_path / "pairs.jsonl"),
                 f"output={out}"]) == 0
    doc = json.loads(out.read_text())
    assert doc["recommended"] == "hybrid" and doc["labelled"] == 24 and doc["unlabelled"] == 36
    (tmp_path / "stray.jsonl").write_text(json.dumps({"pair_id": "nope", "preferred": "A", "p_a": 1.0,
                                                      "confidence": 1.0, "source": "human"}) + "\n")
    assert main(["plan", "--labels", str(tmp_path / "stray.jsonl"), "--input", str(tmp_path / "pairs.jsonl"),
                 f"output={tmp_path / 'no.json'}"]) == 2
    assert not (tmp_path / "no.json").exists()
    assert main(["plan", "--labels", str(tmp_path / "labels.jsonl"), "--input", str(tmp_path / "pairs.jsonl"),
                 "annotators=[vibes]"]) == 2

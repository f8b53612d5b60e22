"""Annotation evaluation and RewardBench file scoring; expected numbers derived by hand."""

from __future__ import annotations

import json
import math

import pytest

from frugalign.cli import main
from frugalign.errors import DataError
from frugalign.evaluate import evaluate_annotations, read_rewardbench, score_rewardbench
from frugalign.metrics import cohens_kappa
from frugalign.records import Annotation, PreferencePair


def ann(pid, preferred, p_a, conf=None, source="density_ratio", **details):
    conf = 2 * (max(p_a, 1 - p_a) - 0.5) if conf is None else conf
    return Annotation(pid, preferred, p_a, conf, source, details)


def ref(pid, preferred):
    return Annotation(pid, preferred, {"A": 1.0, "B": 0.0, "tie": 0.5}[preferred], 1.0, "human")


def test_perfectly_calibrated_set_has_zero_ece():
    # 20 pairs say A with p = 0.8 and 16 of them are A; 10 say B with p_A = 0.3 (confidence 0.7)
    # and 7 of them are B. Each confidence bin's accuracy equals its confidence -> ECE = 0.
    anns, refs = [], []
    for k in range(20):
        anns.append(ann(f"a{k}", "A", 0.8))
        refs.append(ref(f"a{k}", "A" if k < 16 else "B"))
    for k in range(10):
        anns.append(ann(f"b{k}", "B", 0.3))
        refs.append(ref(f"b{k}", "B" if k < 7 else "A"))
    rep = evaluate_annotations(anns, refs)
    assert rep["ece"] == pytest.approx(0.0, abs=1e-12)
    assert rep["accuracy"] == pytest.approx(23 / 30)
    # a uniformly over-confident copy (p = 0.99 everywhere) is miscalibrated by 0.99 − 23/30
    over = [ann(a.pair_id, a.preferred, 0.99 if a.preferred == "A" else 0.01) for a in anns]
    assert evaluate_annotations(over, refs)["ece"] == pytest.approx(0.99 - 23 / 30)


def test_accuracy_ties_domains_kappa_and_coverage(tmp_path):
    pairs = [PreferencePair(id=str(k), prompt="q", response_a="a", response_b="b",
                            domain="safety" if k < 2 else "chat") for k in range(6)]
    anns = [ann("0", "A", 0.9), ann("1", "tie", 0.5), ann("2", "B", 0.2), ann("3", "A", 0.6),
            ann("4", "A", 0.7), ann("5", "B", 0.4)]
    refs = [ref("0", "A"), ref("1", "A"), ref("2", "B"), ref("3", "B"), ref("4", "tie"), ref("5", "B")]
    rep = evaluate_annotations(anns, refs, pairs=pairs, reliability_png=str(tmp_path / "rel.png"))
    # reference tie on "4" excluded; of 0,1,2,3,5: right 0, 2, 5; the predicted tie on 1 is wrong
    assert (rep["n_scored"], rep["n_correct"], rep["accuracy"]) == (5, 3, pytest.approx(0.6))
    assert rep["n_reference_ties_excluded"] == 1 and rep["n_predicted_ties"] == 1
    assert rep["by_domain"]["safety"] == {"accuracy": 0.5, "n": 2}
    assert rep["by_domain"]["chat"]["accuracy"] == pytest.approx(2 / 3)
    assert rep["kappa"] == pytest.approx(cohens_kappa([a.preferred for a in anns], [r.preferred for r in refs]))
    # most confident first (stable): 0 (C .8, right), 2 (.6, right), 3 (.2, wrong), 5 (.2, right),
    # 1 (0, wrong); k = ceil(f·5): 25% -> 2 items 2/2, 50% -> 3 items 2/3, 100% -> 3/5
    cov = {pt["fraction"]: pt["accuracy"] for pt in rep["coverage"]}
    assert cov[0.25] == 1.0 and cov[0.5] == pytest.approx(2 / 3) and cov[1.0] == pytest.approx(0.6)
    assert (tmp_path / "rel.png").stat().st_size > 1000


def test_unmatched_ids_are_counted_or_errors():
    anns = [ann("1", "A", 0.9), ann("2", "B", 0.1), ann("x", "A", 0.9)]
    refs = [ref("1", "A"), ref("2", "A"), ref("3", "B")]
    rep = evaluate_annotations(anns, refs)
    assert rep["n_matched"] == 2 and rep["n_annotations_without_reference"] == 1
    assert rep["n_reference_without_annotation"] == 1 and rep["accuracy"] == 0.5
    with pytest.raises(DataError, match="strict"):
        evaluate_annotations(anns, refs, strict=True)
    pairs = [PreferencePair(id=i, prompt="q", response_a="a", response_b="b") for i in ("1", "2", "x")]
    with pytest.raises(DataError, match="reference labels refer to unknown pair ids: \\['3'\\]"):
        evaluate_annotations(anns, refs, pairs=pairs)
    with pytest.raises(DataError, match="no annotation shares"):
        evaluate_annotations([ann("y", "A", 0.9)], refs)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_cli_eval_annotations_and_bad_files(tmp_path, capsys):
    a = _write_jsonl(tmp_path / "a.jsonl", [ann("1", "A", 0.9).to_record(), ann("2", "B", 0.3).to_record()])
    r = _write_jsonl(tmp_path / "r.jsonl", [ref("1", "A").to_record(), ref("2", "A").to_record()])
    out = tmp_path / "rep.json"
    assert main(["eval", "annotations", "--annotations", a, "--reference", r, "--output", str(out)]) == 0
    assert "accuracy 0.500 (1/2)" in capsys.readouterr().out
    assert json.loads(out.read_text())["n_matched"] == 2
    rec = ann("1", "A", 0.9).to_record()
    del rec["confidence"]
    bad = _write_jsonl(tmp_path / "bad.jsonl", [rec])
    assert main(["eval", "annotations", "--annotations", bad, "--reference", r]) == 2
    err = capsys.readouterr().err.strip()
    assert "field 'confidence': missing" in err and len(err.splitlines()) == 1
    (tmp_path / "nan.jsonl").write_text('{"pair_id": "1", "preferred": "A", "p_a": NaN, '
                                        '"confidence": 0.5, "source": "x"}\n')
    assert main(["eval", "annotations", "--annotations", str(tmp_path / "nan.jsonl"), "--reference", r]) == 2
    assert "must be finite" in capsys.readouterr().err


class LongerWins:
    """Prefers the longer response; equal lengths are a tie."""

    stats = {"calls": 0}

    def annotate(self, pairs):
        out = []
        for p in pairs:
            la, lb = len(p.response_a), len(p.response_b)
            pref = "A" if la > lb else "B" if lb > la else "tie"
            out.append(Annotation(p.id, pref, {"A": 0.9, "B": 0.1, "tie": 0.5}[pref], 0.8, "other"))
        return out[:-1] if len(pairs) == 9 else out  # the 9-row file: one example left unannotated


RB_ROWS = [  # (subset, chosen, rejected): correct when the chosen one is longer
    ("alpacaeval-easy", "a long answer", "short"),     # right
    ("alpacaeval-easy", "short", "a long answer"),     # wrong
    ("mt-bench-easy", "a long answer", "short"),       # right
    ("math-prm", "x = 4 because 2+2", "x = 5"),        # right
    ("hep-python", "ok", "much longer"),               # wrong
    ("hep-python", "ok", "much longer"),               # wrong
    ("donotanswer", "same", "size"),                   # tie -> wrong
    ("my-own-subset", "a long answer", "no"),          # right, but not a RewardBench subset
]


def test_rewardbench_file_sections_by_hand(tmp_path):
    path = _write_jsonl(tmp_path / "rb.jsonl", [{"prompt": "q", "chosen": c, "rejected": r, "subset": s}
                                                for s, c, r in RB_ROWS])
    rep, rows = score_rewardbench(read_rewardbench(path), LongerWins())
    # Chat: alpacaeval-easy 1/2 (weight 100), mt-bench-easy 1/1 (weight 28) -> (50 + 28) / 128
    assert rep["sections"]["Chat"] == pytest.approx(78 / 128)
    # Reasoning: math-prm 1.0 (weight 984), hep-python 0.0 (weight 164) -> 984 / 1148
    assert rep["sections"]["Reasoning"] == pytest.approx(984 / 1148)
    assert rep["sections"]["Safety"] == 0.0 and "Chat Hard" not in rep["sections"]
    assert rep["overall"] == pytest.approx((78 / 128 + 984 / 1148 + 0.0) / 3)
    assert rep["unknown_subsets"] == {"my-own-subset": 1} and rep["n_ties"] == 1
    assert [r["correct"] for r in rows] == [True, False, True, True, False, False, False, True]
    observed, _ = score_rewardbench(read_rewardbench(path), LongerWins(), weighting="observed")
    assert observed["sections"]["Chat"] == pytest.approx(2 / 3)
    assert observed["sections"]["Reasoning"] == pytest.approx(1 / 3)


def test_rewardbench_unannotated_examples_count_as_wrong(tmp_path):
    rows = [{"prompt": "q", "chosen": "a long answer", "rejected": "s", "subset": "alpacaeval-easy"}] * 9
    path = _write_jsonl(tmp_path / "rb.jsonl", [dict(r, id=str(k)) for k, r in enumerate(rows)])
    rep, _ = score_rewardbench(read_rewardbench(path), LongerWins())
    assert rep["n_unannotated"] == 1 and rep["sections"]["Chat"] == pytest.approx(8 / 9)


def test_rewardbench_file_validation(tmp_path):
    path = _write_jsonl(tmp_path / "rb.jsonl", [{"prompt": "q", "chosen": "a", "subset": "x"}])
    with pytest.raises(DataError, match="field 'rejected': missing"):
        read_rewardbench(path)
    dup = _write_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "prompt": "q", "chosen": "a", "rejected": "b",
                                                 "subset": "x"}] * 2)
    with pytest.raises(DataError, match="duplicate id"):
        read_rewardbench(dup)
    assert math.isnan(score_rewardbench([], LongerWins())[0]["overall"])

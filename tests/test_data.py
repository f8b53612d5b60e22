"""Validated IO: every bad input names file, row and field; writes are atomic."""

from __future__ import annotations

import json
import math

import pytest

from frugalign.data import (
    annotations_to_training,
    pool_to_pairs,
    read_annotations,
    read_pairs,
    read_pool,
    read_records,
    read_training,
    to_hf_dataset,
    write_records,
)
from frugalign.errors import DataError
from frugalign.records import Annotation, PromptItem, TrainingRow
from frugalign.weights import confidence_from_p, row_weight


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


POOL = [
    PromptItem("p1", "Say hi.", responses=["Hi!", "Hello there."]),
    PromptItem("p2", [{"role": "user", "content": "Add 2+2."}], system="Be terse.", domain="reasoning",
               responses=["4", "Four.", "2+2=4"]),
]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_round_trip_all_formats(tmp_path, suffix):
    path = write_records(tmp_path / f"pool{suffix}", POOL)
    back = read_pool(path)
    if suffix == ".parquet":  # one prompt type per column: plain prompts come back as a user message
        assert back[0].prompt == [{"role": "user", "content": "Say hi."}]
        back[0].prompt = POOL[0].prompt
    assert back == POOL


def test_hf_dataset_dir_round_trip(tmp_path):
    rows = [TrainingRow("Q?", "good", "bad", id="r1", weight=0.5, label_smoothing=0.1)]
    ds = to_hf_dataset(rows)
    assert {"prompt", "chosen", "rejected", "weight", "label_smoothing"} <= set(ds.column_names)
    ds.save_to_disk(str(tmp_path / "ds"))
    back = read_training(tmp_path / "ds")
    assert back[0].weight == 0.5 and back[0].label_smoothing == 0.1 and back[0].chosen == "good"


def test_malformed_jsonl_names_line(tmp_path):
    p = write_lines(tmp_path / "x.jsonl", ['{"id": "a", "prompt": "hi"}', '{"id": "b", "prompt": '])
    with pytest.raises(DataError, match=r"x\.jsonl:2: malformed JSON"):
        read_records(p)


@pytest.mark.parametrize("record,field", [
    ({"id": "a", "prompt": 5}, "'prompt'"),
    ({"id": "a", "prompt": "hi", "responses": ["ok", "  "]}, r"'responses\[1\]': is empty"),
    ({"id": "a", "prompt": [{"role": "robot", "content": "x"}]}, r"'prompt\[0\]\.role'"),
])
def test_pool_field_errors(tmp_path, record, field):
    p = write_lines(tmp_path / "pool.jsonl", [json.dumps(record)])
    with pytest.raises(DataError, match=field) as e:
        read_pool(p)
    assert "pool.jsonl:1" in str(e.value) and "\n" not in str(e.value)


def test_duplicate_ids(tmp_path):
    rec = {"id": "a", "prompt": "p", "response_a": "x", "response_b": "y"}
    p = write_lines(tmp_path / "pairs.jsonl", [json.dumps(rec), json.dumps(rec)])
    with pytest.raises(DataError, match=r"pairs\.jsonl:2: field 'id': duplicate id 'a' \(first at .*:1\)"):
        read_pairs(p)


def test_annotation_validation(tmp_path):
    good = {"pair_id": "a", "preferred": "A", "p_a": 0.8, "confidence": 0.6, "source": "weak_judge"}
    assert read_annotations(write_lines(tmp_path / "a.jsonl", [json.dumps(good)]))[0].p_a == 0.8
    for bad, msg in [({**good, "confidence": None}, "'confidence': missing"),
                     ({**good, "p_a": float("nan")}, "'p_a': must be finite"),
                     ({**good, "preferred": "C"}, "'preferred'")]:
        p = tmp_path / "bad.jsonl"
        p.write_text(json.dumps(bad).replace("NaN", "NaN") + "\n")
        with pytest.raises(DataError, match=msg):
            read_annotations(p)


def test_training_row_ranges(tmp_path):
    for bad, msg in [({"weight": -1}, "'weight': must be >= 0"), ({"weight": float("nan")}, "finite"),
                     ({"label_smoothing": 0.5}, "'label_smoothing': must be < 0.5")]:
        rec = {"prompt": "p", "chosen": "a", "rejected": "b", **bad}
        p = tmp_path / "t.jsonl"
        p.write_text(json.dumps(rec) + "\n")
        with pytest.raises(DataError, match=msg):
            read_training(p)


def test_failed_write_leaves_no_file(tmp_path):
    class Boom:
        def to_record(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_records(tmp_path / "out.jsonl", [POOL[0], Boom()])
    assert list(tmp_path.iterdir()) == []


def test_existing_output_survives_failed_rewrite(tmp_path):
    out = write_records(tmp_path / "out.jsonl", POOL)
    before = out.read_text()
    with pytest.raises(TypeError):
        write_records(tmp_path / "out.jsonl", [{"x": object()}])  # not JSON-serialisable
    assert out.read_text() == before and len(list(tmp_path.iterdir())) == 1


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown file type"):
        read_records(tmp_path / "x.txt")


def test_hub_dataset_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE=1"):
        read_records("hf://someone/some-dataset")


def test_pool_to_pairs_and_training_join():
    pairs = pool_to_pairs(POOL)
    assert [p.id for p in pairs] == ["p1:0-1", "p2:0-1", "p2:0-2", "p2:1-2"]
    anns = [Annotation("p1:0-1", "B", 0.2, 0.6, "weak_judge"), Annotation("p2:0-1", "tie", 0.5, 0.0, "gold"),
            Annotation("p2:1-2", "A", 0.9, 0.8, "weak_judge")]
    rows, summary = annotations_to_training(pairs, anns, weighting="confidence")
    assert [(r.chosen, r.rejected, r.weight) for r in rows] == [("Hello there.", "Hi!", 0.6), ("Four.", "2+2=4", 0.8)]
    assert summary == {"pairs": 4, "annotations": 3, "ties_dropped": 1, "unannotated": 1, "rows": 2}
    human = [Annotation("p2:1-2", "A", 0.9, 0.8, "human")]  # CW-PO: a human label counts fully
    assert annotations_to_training(pairs, human, weighting="confidence")[0][0].weight == 1.0
    with pytest.raises(DataError, match="unknown pair ids"):
        annotations_to_training(pairs, [Annotation("zzz", "A", 1.0, 1.0, "human")])


def test_cw_po_weight_is_applied_once(tmp_path):
    """Annotation writes weight = C; training reads that column, or recomputes C from the
    confidence column (weights=confidence): the same weight either way, never C·C."""
    from frugalign.packing import read_table

    pairs = pool_to_pairs(POOL)
    anns = [Annotation("p1:0-1", "B", 0.2, confidence_from_p(0.2), "weak_judge"),
            Annotation("p2:1-2", "A", 0.9, confidence_from_p(0.9), "human")]
    rows, _ = annotations_to_training(pairs, anns, weighting="confidence")
    write_records(tmp_path / "train.jsonl", rows)
    table, _ = read_table(str(tmp_path / "train.jsonl"), "confidence")
    expected = [pytest.approx(0.6), 1.0]  # C = 2·(max(p, 1−p) − ½); a human label counts fully
    for weights in ("column", "confidence"):
        assert [row_weight(r, weights) for r in table] == expected
    assert [row_weight(r, "none") for r in table] == [1.0, 1.0]


def test_one_confidence_formula():
    from frugalign.annotate import annotation_from_rewards
    from frugalign.labeling.merge import Vote, votes_to_annotations

    assert [confidence_from_p(p) for p in (0.0, 0.25, 0.5, 0.75, 1.0)] == [1.0, 0.5, 0.0, 0.5, 1.0]
    ann = annotation_from_rewards("x", 1.0, 0.0, "density_ratio")
    assert ann.confidence == confidence_from_p(ann.p_a)
    votes = [Vote("x", "A", "ann1"), Vote("x", "A", "ann2"), Vote("x", "B", "ann3")]
    assert votes_to_annotations(votes)[0].confidence == round(confidence_from_p(2 / 3), 12)


def test_annotation_constructor_checks_range():
    with pytest.raises(DataError):
        Annotation("a", "A", 1.5, 0.5, "human")
    assert math.isclose(Annotation("a", "A", 0.75, 0.5, "human").p_a, 0.75)

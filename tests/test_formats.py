"""TRL's four preference layouts in and out, content ids, column maps and saved datasets."""

from __future__ import annotations

import hashlib
import json

import pytest

from frugalign.data import read_pairs, read_pool, read_training, write_records
from frugalign.errors import DataError
from frugalign.formats import LAYOUTS, normalize_preference, record_layout, to_layout
from frugalign.records import content_id

SKY = [{"role": "user", "content": "What color is the sky?"}]
BLUE, GREEN = [{"role": "assistant", "content": "It is blue."}], [{"role": "assistant", "content": "It is green."}]
EXAMPLES = {  # TRL's documentation examples, one per layout
    "standard": {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    "conversational": {"prompt": SKY, "chosen": BLUE, "rejected": GREEN},
    "standard-implicit": {"chosen": "The sky is blue.", "rejected": "The sky is green."},
    "conversational-implicit": {"chosen": SKY + BLUE, "rejected": SKY + GREEN},
}


def final_text(side):
    return side if isinstance(side, str) else side[-1]["content"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_reads_as_trl_extracts_it_and_writes_back_unchanged(layout):
    from trl.data_utils import maybe_extract_prompt

    rec = EXAMPLES[layout]
    assert record_layout(rec) == layout
    ours = normalize_preference(rec, "x:1")
    trl = maybe_extract_prompt(dict(rec))
    assert ours["prompt"] == trl["prompt"]
    assert (ours["chosen"], ours["rejected"]) == (final_text(trl["chosen"]), final_text(trl["rejected"]))
    assert to_layout(ours, layout) == rec


def test_a_string_prompt_beside_a_conversation_is_ignored_as_trl_does():
    """UltraFeedback-binarized: a plain 'prompt' column and whole conversations in chosen/rejected."""
    rec = {"prompt": "What color is the sky?", **EXAMPLES["conversational-implicit"], "score_chosen": 8.0}
    assert record_layout(rec) == "conversational-implicit"
    out = normalize_preference(rec, "x:1")
    assert out["prompt"] == SKY and out["chosen"] == "It is blue." and out["score_chosen"] == 8.0


def test_multi_turn_prompts_keep_their_turns_and_system_folds_into_conversations():
    turns = [{"role": "system", "content": "Be brief."}, *SKY, {"role": "assistant", "content": "Blue."},
             {"role": "user", "content": "And at night?"}]
    rec = normalize_preference({"chosen": turns + BLUE, "rejected": turns + GREEN}, "x:1")
    assert rec["prompt"] == turns
    written = to_layout({"prompt": "Hi", "system": "Be kind.", "chosen": "a", "rejected": "b"}, "conversational")
    assert written["prompt"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    assert "system" not in written
    with pytest.raises(DataError, match="4-turn chat prompt has no standard layout"):
        to_layout({"prompt": turns, "chosen": "a", "rejected": "b"}, "standard")


@pytest.mark.parametrize("rec,message", [
    ({"prompt": SKY, "chosen": BLUE, "rejected": [{"role": "assistant", "content": " "}]},
     r"'rejected\[0\]\.content': a turn without content"),
    ({"prompt": SKY, "chosen": BLUE, "rejected": "It is green."}, "mixed layouts"),
    ({"chosen": SKY + BLUE, "rejected": [{"role": "user", "content": "Other"}] + GREEN}, "share no prompt turns"),
    ({"chosen": "Blue.", "rejected": "Green."}, "share no implicit prompt"),
    ({"prompt": SKY, "chosen": BLUE + BLUE, "rejected": GREEN}, "one final assistant turn"),
    ({"prompt": SKY, "chosen": [{"role": "robot", "content": "x"}], "rejected": GREEN}, r"'chosen\[0\]\.role'"),
])
def test_bad_preference_records_name_the_field(rec, message):
    with pytest.raises(DataError, match=message) as e:
        normalize_preference(rec, "f.jsonl:3")
    assert str(e.value).startswith("f.jsonl:3: ")


def test_one_layout_per_file(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_text(json.dumps(EXAMPLES["standard"]) + "\n" + json.dumps(EXAMPLES["conversational"]) + "\n")
    with pytest.raises(DataError, match=r"mixed.jsonl:2: layout 'conversational' differs from 'standard'"):
        read_training(p)


def test_content_ids_are_documented_hashes_and_layout_independent(tmp_path):
    doc = json.dumps([[{"role": "user", "content": "Hi"}], "a", "b"], ensure_ascii=False, sort_keys=True,
                     separators=(",", ":"))
    assert content_id("Hi", None, "a", "b") == hashlib.sha256(doc.encode()).hexdigest()[:16]
    assert content_id("Hi", None, "a", "b") == content_id([{"role": "user", "content": "Hi"}], None, "a", "b")
    assert content_id("Hi", "sys", "a", "b") != content_id("Hi", None, "a", "b")
    standard, conversational = tmp_path / "s.jsonl", tmp_path / "c.jsonl"
    write_records(standard, [{"prompt": "Hi", "chosen": "a", "rejected": "b"}])
    write_records(conversational, [{"prompt": "Hi", "chosen": "a", "rejected": "b"}], "conversational")
    assert read_pairs(standard)[0].id == read_pairs(conversational)[0].id == content_id("Hi", None, "a", "b")
    pool = tmp_path / "pool.jsonl"
    write_records(pool, [{"prompt": "Hi"}, {"prompt": "Hi"}])
    with pytest.raises(DataError, match=r"pool.jsonl:2: field 'id': duplicate id"):
        read_pool(pool)


def test_tables_remember_their_layout_and_writers_keep_it(tmp_path):
    for layout, rec in EXAMPLES.items():
        src, out = tmp_path / f"{layout}.jsonl", tmp_path / f"{layout}.out.jsonl"
        write_records(src, [rec])
        rows = read_training(src)
        assert rows.layout == layout
        write_records(out, rows, rows.layout)
        back = json.loads(out.read_text())
        assert {k: back[k] for k in rec} == rec


def test_column_map_and_a_saved_ultrafeedback_like_dataset(tmp_path):
    import datasets

    rows = [{"prompt": "What color is the sky?", "prompt_id": f"u{i}", "chosen": SKY + BLUE,
             "rejected": SKY + [{"role": "assistant", "content": f"It is green {i}."}],
             "score_chosen": 8.0, "score_rejected": s} for i, s in enumerate([3.0, 8.0, 9.5])]
    path = tmp_path / "uf"
    datasets.DatasetDict({"train_prefs": datasets.Dataset.from_list(rows)}).save_to_disk(str(path))
    pairs = read_pairs(f"{path}?id=prompt_id")
    assert pairs.layout == "conversational-implicit"
    assert [p.id for p in pairs] == ["u0", "u1", "u2"] and pairs[0].prompt == SKY
    assert pairs[0].response_a == "It is blue." and pairs[2].meta["score_rejected"] == 9.5
    from frugalign.labeling.gold import gold_annotate_pairs, load_judge

    anns = gold_annotate_pairs(pairs, load_judge("scores"), "scores")
    assert [a.preferred for a in anns] == ["A", "tie", "B"]
    with pytest.raises(DataError, match=r"row 1: field 'question': missing \(mapped to 'prompt'\)"):
        read_pairs(f"{path}?prompt=question")
    with pytest.raises(DataError, match="expected FIELD=COLUMN"):
        read_pairs(f"{path}?prompt")
    assert len(read_pairs(f"{path}:train_prefs")) == 3
    with pytest.raises(DataError, match="no split 'test' \\(splits: train_prefs\\)"):
        read_pairs(f"{path}:test")

"""Labelling batches, label import (un-flip, validation, merge, agreement), gold judges, the page's API."""

from __future__ import annotations

import csv
import json
import re
import threading
import urllib.error
import urllib.request

import pytest

from frugalign.cli import main
from frugalign.data import read_annotations, write_records
from frugalign.errors import ConfigError, DataError
from frugalign.labeling.export import LabelRecord, make_batch, read_batch, read_labels, write_batch, write_labels
from frugalign.labeling.gold import LengthJudge, gold_annotate_batch, gold_annotate_pairs, load_judge
from frugalign.labeling.label_studio import read_export, task_for
from frugalign.labeling.merge import agreement, import_labels, labels_to_votes, votes_to_annotations
from frugalign.labeling.server import LabelStore, make_server
from frugalign.records import PreferencePair


def make_pairs(n: int = 12) -> list[PreferencePair]:
    # response_a is always the longer one, so "the original A" is recognisable after any flip.
    return [PreferencePair(f"q{k}:0-1", f"Question {k}?", f"original A of {k} with more words here",
                           f"original B of {k}", prompt_id=f"q{k}") for k in range(n)]


@pytest.fixture
def batch_files(tmp_path):
    items = make_batch(make_pairs(), "b1", seed=3)
    key, sheet = write_batch(items, tmp_path / "b1")
    return items, key, sheet


def pick_original_a(item) -> str:
    """What a labeller says if they always prefer the pair's original response_a."""
    return "A" if item.shown_a.startswith("original A") else "B"


def test_orientation_is_random_per_pair_recorded_and_stable(batch_files):
    items, key, _ = batch_files
    assert 2 <= sum(it.flipped for it in items) <= 10
    for it in items:
        assert (it.shown_a.startswith("original B")) == it.flipped
    # The coin depends on the pair id and seed, not on its position in the batch.
    again = {it.pair_id: it.flipped for it in make_batch(list(reversed(make_pairs())), "b1", seed=3)}
    assert again == {it.pair_id: it.flipped for it in items}
    assert [it.to_record() for it in read_batch(key)] == [it.to_record() for it in items]


def test_ab_randomisation_round_trips_through_import(batch_files, tmp_path):
    items, key, _ = batch_files
    labels = [LabelRecord(it.pair_id, pick_original_a(it), "ann1") for it in items]
    write_labels(tmp_path / "l.jsonl", labels)
    anns, report = import_labels(key, [tmp_path / "l.jsonl"])
    assert {a.preferred for a in anns} == {"A"} and len(anns) == len(items)
    assert all(a.p_a == 1.0 and a.confidence == 1.0 and a.source == "human" for a in anns)
    flipped_votes = [a.details["votes"][0] for a in anns if a.details["votes"][0]["flipped"]]
    assert flipped_votes and all(v["shown"] == "B" for v in flipped_votes)
    assert report["unlabelled_in_batch"] == 0


def test_csv_sheet_hides_orientation_and_imports(batch_files, tmp_path):
    items, key, sheet = batch_files
    with open(sheet, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert "flipped" not in rows[0] and rows[0]["label"] == ""
    by_id = {it.pair_id: it for it in items}
    for row in rows[:5]:
        row["label"] = {"A": "a", "B": "B"}[pick_original_a(by_id[row["pair_id"]])]  # any case
    rows[0]["label"], rows[0]["comment"] = "TIE", "both fine"
    filled = tmp_path / "filled.csv"
    with open(filled, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    anns, report = import_labels(key, [filled], annotator="carol")
    assert len(anns) == 5 and report["unlabelled_in_batch"] == len(items) - 5
    assert [a.preferred for a in anns] == ["tie", "A", "A", "A", "A"]
    assert anns[0].confidence == 0.0 and anns[0].details["votes"][0]["comment"] == "both fine"
    assert anns[1].details["votes"][0]["annotator"] == "carol"


def test_csv_neutralises_formulas(tmp_path):
    pair = PreferencePair("f", "=1+1", "=HYPERLINK(\"http://x\")", "- a list item")
    _, sheet = write_batch(make_batch([pair], "f"), tmp_path / "f")
    row = next(csv.DictReader(open(sheet, newline="", encoding="utf-8")))
    assert row["prompt"] == "'=1+1" and {row["response_A"], row["response_B"]} == {"'=HYPERLINK(\"http://x\")", "'- a list item"}


def test_import_rejects_unknown_ids_and_bad_labels(batch_files, tmp_path, capsys):
    _, key, _ = batch_files
    write_labels(tmp_path / "bad.jsonl", [LabelRecord("q0:0-1", "A"), LabelRecord("nope:1-2", "B")])
    with pytest.raises(DataError, match=r"bad.jsonl:2: unknown pair id 'nope:1-2'"):
        import_labels(key, [tmp_path / "bad.jsonl"])
    rc = main(["label", "import", str(key), str(tmp_path / "bad.jsonl"), f"output={tmp_path / 'o.jsonl'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown pair id 'nope:1-2'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()
    (tmp_path / "worse.jsonl").write_text('{"pair_id": "q0:0-1", "label": "left"}\n')
    with pytest.raises(DataError, match="expected A, B or tie"):
        import_labels(key, [tmp_path / "worse.jsonl"])


def test_merge_agreement_and_reimport(batch_files, tmp_path):
    items, key, _ = batch_files
    first = [LabelRecord(it.pair_id, pick_original_a(it), "alice") for it in items[:4]]
    # bob agrees on items 0-1, says the opposite on item 2, tie on 3.
    opposite = {"A": "B", "B": "A"}
    second = [LabelRecord(items[0].pair_id, pick_original_a(items[0]), "bob"),
              LabelRecord(items[1].pair_id, pick_original_a(items[1]), "bob"),
              LabelRecord(items[2].pair_id, opposite[pick_original_a(items[2])], "bob"),
              LabelRecord(items[3].pair_id, "tie", "bob")]
    write_labels(tmp_path / "alice.jsonl", first)
    write_labels(tmp_path / "bob.jsonl", second)
    out = tmp_path / "human.jsonl"
    assert main(["label", "import", str(key), str(tmp_path / "alice.jsonl"), f"output={out}"]) == 0
    assert main(["label", "import", str(key), str(tmp_path / "bob.jsonl"), f"output={out}", f"earlier={out}",
                 f"report={tmp_path / 'r.json'}"]) == 0
    anns = {a.pair_id: a for a in read_annotations(out)}
    assert anns[items[0].pair_id].preferred == "A" and anns[items[0].pair_id].confidence == 1.0
    assert anns[items[2].pair_id].preferred == "tie" and anns[items[2].pair_id].p_a == 0.5
    assert anns[items[3].pair_id].preferred == "A" and anns[items[3].pair_id].p_a == 0.75
    ag = json.loads((tmp_path / "r.json").read_text())["agreement"]
    assert ag["pairs_with_2plus_annotators"] == 4 and ag["percent_agreement"] == 0.5
    assert ag["annotator_pairs"][0]["annotators"] == ["alice", "bob"]
    # Importing bob's file again changes nothing: his votes replace themselves.
    assert main(["label", "import", str(key), str(tmp_path / "bob.jsonl"), f"output={out}", f"earlier={out}"]) == 0
    assert all(a.details["n_votes"] == 2 for a in read_annotations(out))


def test_agreement_without_overlap_reports_none():
    votes = labels_to_votes(make_batch(make_pairs(2), "x"), [("w", LabelRecord("q0:0-1", "A", "a"))])
    assert agreement(votes)["percent_agreement"] is None
    assert votes_to_annotations(votes)[0].details["n_votes"] == 1


def test_gold_judge_on_a_batch_matches_the_original_orientation(batch_files):
    items, _, _ = batch_files
    via_batch = gold_annotate_batch(items, LengthJudge(), "length")
    direct = gold_annotate_pairs(make_pairs(), LengthJudge(), "length")
    assert [a.preferred for a in via_batch] == [a.preferred for a in direct] == ["A"] * len(items)
    assert all(a.source == "gold" for a in via_batch + direct)
    assert direct[0].details["score_a"] > direct[0].details["score_b"]


def test_load_judge_specs():
    assert isinstance(load_judge("length"), LengthJudge)
    assert isinstance(load_judge("frugalign.labeling.gold:LengthJudge"), LengthJudge)
    with pytest.raises(ConfigError, match="unknown gold judge"):
        load_judge("oracle")
    with pytest.raises(ConfigError, match="cannot import"):
        load_judge("frugalign.nothing_here:judge")


def test_cli_export_gold_import(tmp_path, capsys):
    write_records(tmp_path / "pairs.jsonl", make_pairs(6))
    assert main(["label", "export", str(tmp_path / "pairs.jsonl"), f"output={tmp_path / 'b'}", "seed=1"]) == 0
    assert (tmp_path / "b.jsonl").exists() and (tmp_path / "b.csv").exists()
    assert main(["label", "gold", str(tmp_path / "b.jsonl"), "judge=length", f"output={tmp_path / 'g.jsonl'}",
                 f"labels_output={tmp_path / 'gl.jsonl'}"]) == 0
    gold = read_annotations(tmp_path / "g.jsonl")
    assert [a.preferred for a in gold] == ["A"] * 6 and {a.source for a in gold} == {"gold"}
    # The raw gold labels are in shown orientation, like a person's, and import like one.
    assert main(["label", "import", str(tmp_path / "b.jsonl"), str(tmp_path / "gl.jsonl"),
                 f"output={tmp_path / 'h.jsonl'}"]) == 0
    assert [a.preferred for a in read_annotations(tmp_path / "h.jsonl")] == ["A"] * 6
    assert "gold judge 'length' labelled 6 pairs" in capsys.readouterr().out


# ---------------------------------------------------------------- the page's API (no browser)
def _request(url, body=None, headers=None, timeout=10):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def running(batch_files, tmp_path):
    _, key, _ = batch_files
    server = make_server(key, tmp_path / "labels.jsonl", port=0, annotator="dana")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}", key
    server.shutdown()
    server.server_close()


def test_server_saves_each_answer_and_restarts_where_it_stopped(running, tmp_path):
    server, url, key = running
    assert _request(f"{url}/api/state")[1]["next"] == 0
    for i, label in enumerate(["A", "B", "tie"]):
        status, body = _request(f"{url}/api/label", {"index": i, "label": label, "comment": "c" * (i == 2)})
        assert status == 200 and body["state"]["done"] == i + 1 and body["next_after"] == i + 1
        assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == i + 1  # saved before replying
    store = LabelStore(key, tmp_path / "labels.jsonl", "dana")  # a fresh process would see this
    assert store.state()["done"] == 3 and store.state()["next"] == 3
    assert store.item(2)["label"] == "tie" and store.item(2)["comment"] == "c"
    assert [r.label for _, r in read_labels(tmp_path / "labels.jsonl")] == ["A", "B", "tie"]


def test_server_rejects_bad_requests(running):
    _, url, _ = running
    assert _request(f"{url}/api/label", {"index": 0, "label": "maybe"})[0] == 400
    assert _request(f"{url}/api/label", {"index": 0, "label": "A"}, {"Content-Type": "text/plain"})[0] == 415
    assert _request(f"{url}/api/state", headers={"Host": "evil.example:80"})[0] == 403
    assert _request(f"{url}/api/item/0")[1]["shown_a"].startswith("original")
    assert "flipped" not in _request(f"{url}/api/item/0")[1]


@pytest.mark.parametrize("body,status,message", [
    ({"pair_id": "zz:0-1", "label": "A"}, 404, "field 'pair_id': unknown pair 'zz:0-1' (not in batch 'b1'"),
    ({"label": "A"}, 400, "field 'index': missing"),
    ({"index": 99, "label": "A"}, 404, "field 'index': no pair 99 in this batch of 12 (0 to 11)"),
    ({"index": "3", "label": "A"}, 400, "field 'index': expected an integer, got str"),
    ({"index": True, "label": "A"}, 400, "field 'index': expected an integer, got bool"),
    ({"index": 0, "pair_id": 7, "label": "A"}, 400, "field 'pair_id': expected a string, got int"),
    ({"index": 0, "pair_id": "{other}", "label": "A"}, 409, "field 'pair_id': pair 0 is '{first}', not '{other}'"),
    ({"index": 0, "label": "maybe"}, 400, "pair '{first}': field 'label': label 'maybe': expected A, B or tie"),
    ([0, "A"], 400, "request body: expected a JSON object, got list"),
    (b"index=0&label=A", 400, "request body: not JSON"),
])
def test_server_says_which_pair_or_field_of_an_answer_is_wrong(running, tmp_path, body, status, message):
    """An answer for an unknown pair was a 400 with the error "'index'" (a KeyError's text)."""
    server, url, _ = running
    first, other = server.store.batch[0].pair_id, server.store.batch[1].pair_id
    if isinstance(body, dict):
        body = {k: v.format(first=first, other=other) if isinstance(v, str) else v for k, v in body.items()}
    got_status, got = _request(f"{url}/api/label", body)
    assert (got_status, got["error"][:len(message.format(first=first, other=other))]) == (
        status, message.format(first=first, other=other))
    assert not (tmp_path / "labels.jsonl").exists()  # nothing saved
    # the pair_id alone finds the pair; with a matching index it is accepted too
    assert _request(f"{url}/api/label", {"pair_id": other, "label": "A"})[1]["state"]["done"] == 1
    assert _request(f"{url}/api/label", {"index": 0, "pair_id": first, "label": "B"})[1]["state"]["done"] == 2


def test_server_keeps_every_label_of_a_burst_of_200_simultaneous_posts(tmp_path):
    """The default listen backlog (5) reset 17 of 200 simultaneous posts."""
    items = make_batch(make_pairs(200), "burst", seed=1)
    key, _ = write_batch(items, tmp_path / "burst")
    server = make_server(key, tmp_path / "labels.jsonl", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/label"
    start, failures, statuses = threading.Barrier(len(items)), [], []

    def post(it):
        start.wait()  # all at once
        try:
            statuses.append(_request(url, {"index": it.index, "pair_id": it.pair_id,
                                           "label": "AB"[it.index % 2]}, timeout=120)[0])
        except OSError as e:  # ConnectionResetError, or a URLError wrapping one
            failures.append(repr(e))

    threads = [threading.Thread(target=post, args=(it,)) for it in items]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.shutdown()
        server.server_close()
    assert failures == [] and statuses == [200] * len(items)
    saved = {rec.pair_id: rec.label for _, rec in read_labels(tmp_path / "labels.jsonl")}
    assert saved == {it.pair_id: "AB"[it.index % 2] for it in items}


def test_server_refuses_labels_of_another_batch(batch_files, tmp_path):
    _, key, _ = batch_files
    write_labels(tmp_path / "other.jsonl", [LabelRecord("zz:0-1", "A")])
    with pytest.raises(DataError, match="unknown pair id 'zz:0-1'"):
        LabelStore(key, tmp_path / "other.jsonl")


# ---------------------------------------------------------------- Label Studio files (no server)
# tests/test_label_studio_server.py runs the same round trip against a real Label Studio.
def _ls_export(items, labels: dict, user=7) -> list[dict]:
    """A Label Studio JSON export as its API returns one: tasks from our writer, plus annotations."""
    tasks = []
    for n, it in enumerate(items):
        task = {"id": 100 + n, **task_for(it), "annotations": [], "drafts": [], "predictions": []}
        if it.pair_id in labels:
            label = labels[it.pair_id]
            result = [{"from_name": "preferred", "to_name": "prompt", "type": "choices",
                       "value": {"choices": [label]}}] if label != "skip" else []
            result += [{"from_name": "comment", "to_name": "prompt", "type": "textarea",
                        "value": {"text": ["why not"]}}] if label == "tie" else []
            task["annotations"].append({"id": n, "completed_by": user, "result": result,
                                        "was_cancelled": label == "skip", "updated_at": "2026-01-02T03:04:05Z"})
        tasks.append(task)
    return tasks


def test_label_studio_files_hide_the_key_and_render_chat(tmp_path):
    import xml.etree.ElementTree as ET

    chat = PreferencePair("c:0-1", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                                    {"role": "user", "content": "Why?"}], "original A", "original B", system="Sys")
    items = make_batch(make_pairs(3) + [chat], "ls", seed=3)
    assert main(["label", "export", str(tmp_path / "pairs.jsonl"), f"output={tmp_path / 'x'}"]) == 2  # no pairs yet
    write_records(tmp_path / "pairs.jsonl", make_pairs(3) + [chat])
    assert main(["label", "export", str(tmp_path / "pairs.jsonl"), f"output={tmp_path / 'page'}"]) == 0
    assert not list(tmp_path.glob("page.label-studio.*"))  # the page stays the default
    assert main(["label", "export", str(tmp_path / "pairs.jsonl"), f"output={tmp_path / 'ls'}", "seed=3",
                 "to=label-studio"]) == 0
    tasks = json.loads((tmp_path / "ls.label-studio.json").read_text())
    assert [t["data"]["pair_id"] for t in tasks] == [it.pair_id for it in items]
    for task, it in zip(tasks, items):
        assert set(task["data"]) == {"batch", "item", "pair_id", "messages", "response_a", "response_b"}
        assert (task["data"]["response_a"], task["data"]["response_b"], task["data"]["item"]) == \
            (it.shown_a, it.shown_b, it.index)
    assert tasks[0]["data"]["messages"] == [{"role": "user", "content": "Question 0?"}]
    assert [m["role"] for m in tasks[3]["data"]["messages"]] == ["system", "user", "assistant", "user"]
    root = ET.parse(tmp_path / "ls.label-studio.xml").getroot()
    choices = root.find(".//Choices")
    assert choices.get("name") == "preferred" and [c.get("value") for c in choices] == ["A", "B", "tie"]
    names = {el.get("name") for el in root.iter() if el.get("name")}
    assert {"prompt", "response_a", "response_b", "preferred", "comment"} <= names


def test_label_studio_export_unflips_through_import(batch_files, tmp_path):
    items, key, _ = batch_files
    wanted = {it.pair_id: pick_original_a(it) for it in items[:6]}   # always the original A
    wanted[items[6].pair_id], wanted[items[7].pair_id] = "tie", "skip"
    export = _ls_export(items, {**wanted, items[8].pair_id: "A"})
    export[8]["annotations"][0]["result"] = []          # submitted empty: no label either
    (tmp_path / "export.json").write_text(json.dumps(export))
    anns, report = import_labels(key, [tmp_path / "export.json"])
    assert {a.pair_id: a.preferred for a in anns} == {**{p: "A" for p in list(wanted)[:6]}, items[6].pair_id: "tie"}
    assert report["unlabelled_in_batch"] == len(items) - 7   # the skipped, the empty and the untouched ones
    assert any(a.details["votes"][0]["flipped"] for a in anns)
    vote = anns[6].details["votes"][0]
    assert vote["annotator"] == "label-studio-user-7" and vote["comment"] == "why not" and vote["time"]
    # An export whose completed_by carries the email names the annotator by it.
    export = _ls_export(items[:1], {items[0].pair_id: "tie"}, user={"id": 3, "email": "eve@example.com"})
    (tmp_path / "e2.json").write_text(json.dumps(export))
    assert read_export(tmp_path / "e2.json")[0][1].annotator == "eve@example.com"


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t[1].pop("data"), r"task 1: field 'data': missing"),
    (lambda t: t[1]["data"].pop("pair_id"), r"task 1: field 'data.pair_id': missing"),
    (lambda t: t[1].update(annotations={}), r"task 1: field 'annotations': expected a list"),
    (lambda t: t[1]["annotations"][0].update(result=None), r"task 1: annotations\[0\]: field 'result'"),
    (lambda t: t[1]["annotations"][0]["result"][0].update(from_name="choice"),
     r"task 1: annotations\[0\]: field 'result': expected one 'preferred' choice, found 0"),
    (lambda t: t[1]["annotations"][0]["result"][0]["value"].update(choices=["A", "B"]),
     r"task 1: annotations\[0\]: field 'result\[0\].value.choices'"),
    (lambda t: t[1]["annotations"][0]["result"][0]["value"].update(choices=["left"]),
     r"task 1: annotations\[0\]: result\[0\].value.choices: label 'left': expected A, B or tie"),
    (lambda t: t[1]["data"].update(pair_id="elsewhere:0-1"), r"task 1: annotations\[0\]: unknown pair id"),
])
def test_label_studio_export_errors_name_task_and_field(batch_files, tmp_path, capsys, mutate, message):
    items, key, _ = batch_files
    tasks = _ls_export(items[:3], {it.pair_id: "A" for it in items[:3]})
    mutate(tasks)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tasks))
    with pytest.raises(DataError, match=rf"^{re.escape(str(bad))}: {message}"):
        import_labels(key, [bad])
    assert main(["label", "import", str(key), str(bad), f"output={tmp_path / 'o.jsonl'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "task 1" in err and not (tmp_path / "o.jsonl").exists()

"""Data-parallel generation and scoring: 2 CPU processes give the 1-process output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import launch_two_processes

from frugalign import distributed
from frugalign.distributed import DistContext, gather_in_order, shard_indices

HERE = Path(__file__).parent


def test_shards_cover_everything_once():
    n = 11
    seen = sorted(i for r in range(3) for i in shard_indices(n, DistContext(r, 3)))
    assert seen == list(range(n))
    assert shard_indices(2, DistContext(3, 4)) == []


def test_gather_restores_order_single_process():
    assert gather_in_order(3, [2, 0, 1], ["c", "a", "b"], DistContext()) == ["a", "b", "c"]


def test_map_sharded_simulated_ranks():
    items = list(range(10))
    parts = []
    for r in range(3):  # what each rank would compute
        idx = shard_indices(len(items), DistContext(r, 3))
        parts.append((idx, [items[i] * 2 for i in idx]))
    merged = [None] * len(items)
    for idx, vals in parts:
        for i, v in zip(idx, vals):
            merged[i] = v
    assert merged == distributed.map_sharded(lambda xs: [x * 2 for x in xs], items)


@pytest.mark.slow  # two processes
def test_two_processes_match_one(tmp_path):
    out = tmp_path / "dp.json"
    proc = launch_two_processes([str(HERE / "dp_script.py"), str(out)], HERE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(out.read_text())
    assert two["world"] == 2

    sys.path.insert(0, str(HERE))
    import dp_script

    one = dp_script.compute(DistContext())
    assert two["sampled"] == one["sampled"]          # per-prompt seeds: sharding-independent
    assert two["greedy"] == one["greedy"]
    assert len(one["sampled"]) == len(dp_script.PROMPTS)
    assert all(len(rs) == 2 for rs in one["sampled"])
    assert two["scores"] == pytest.approx(one["scores"], abs=1e-4)


@pytest.mark.slow  # two processes
def test_score_command_two_processes_match_one(tmp_path, tiny_dir):
    from frugalign.cli import main
    from frugalign.data import read_records

    pool = tmp_path / "pool.jsonl"
    rows = [{"id": f"p{i}", "prompt": p, "responses": [p[::-1], "yes " * (i + 1), "no"]}
            for i, p in enumerate(["Paris is", "def add(a, b):", "x", "The quick brown fox", "Why?"])]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [f"input={pool}", f"model={tiny_dir}", f"ref_model={tiny_dir}", "progress=false"]
    assert main(["score", f"output={tmp_path / 'one.jsonl'}"] + args) == 0
    proc = launch_two_processes(["-m", "frugalign", "score", f"output={tmp_path / 'two.jsonl'}"] + args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "counts for process 0 of 2" in proc.stdout
    one = [r for _, r in read_records(tmp_path / "one.jsonl")]
    two = [r for _, r in read_records(tmp_path / "two.jsonl")]
    assert [(r["prompt_id"], r["response_index"]) for r in two] == [(r["prompt_id"], r["response_index"]) for r in one]
    assert len(two) == 15 and all(r["ratio"] == pytest.approx(0.0, abs=1e-4) for r in two)
    assert [r["logprob"] for r in two] == pytest.approx([r["logprob"] for r in one], abs=1e-4)

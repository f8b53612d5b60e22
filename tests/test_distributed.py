"""Data-parallel generation and scoring: 2 CPU processes give the 1-process output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    out = tmp_path / "dp.json"
    # --multi_gpu with no visible GPU is accelerate's torchrun path on CPU (gloo).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(HERE / "dp_script.py"), str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=HERE.parent)
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

"""Crash safety: SIGKILL at named points of every stage, rerun, same result; one writer per run directory.

The kill tests run ``frugalign`` in subprocesses with ``FRUGALIGN_KILL_AT`` set
(:mod:`frugalign.faults`): the process kills itself at that exact point. A
*chain* kills one run directory again and again, each rerun resuming further
than the last, then lets it finish; its outputs must equal an uninterrupted
run's. Each test prints how many kill points it covered.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from frugalign.errors import ConfigError
from frugalign.pipeline import RunLock

ROOT = Path(__file__).parents[1]
KILLED = -signal.SIGKILL


def frugalign(args: list[str], cwd, kill_at: str | None = None, log: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("FRUGALIGN_KILL_AT", None)
    if kill_at:
        env["FRUGALIGN_KILL_AT"] = kill_at
    if log:
        env["FRUGALIGN_KILL_LOG"] = str(log)
    return subprocess.run([sys.executable, "-m", "frugalign", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def run_chain(args_for, cwd, points: list[str]) -> subprocess.CompletedProcess:
    """Kill one output directory at each point in turn (each rerun resumes), then finish it."""
    for point in points:
        proc = frugalign(args_for(), cwd, kill_at=point)
        assert proc.returncode == KILLED, f"not killed at {point!r} (rc {proc.returncode}): {proc.stderr[-2000:]}"
    final = frugalign(args_for(), cwd)
    assert final.returncode == 0, final.stderr[-3000:]
    return final


def chain_points(log: Path, wanted) -> list[str]:
    """The kill points of a run, in the order it passed them, filtered by ``wanted``, each once."""
    seen, out = set(), []
    for name in log.read_text().splitlines():
        if name not in seen and wanted(name):
            out.append(name)
        seen.add(name)
    return out


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def same_weights(a: Path, b: Path) -> None:
    import torch
    from safetensors.torch import load_file

    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k


# ---------------------------------------------------------------- the recipe


def recipe_args(out: Path, tiny_dir: str) -> list[str]:
    """``frugalign demo`` (its preset: house style, hybrid annotator, gate) at tiny sizes; ``length`` stands in for
    the simulated human because a tiny random model's gibberish is off-topic for the gold task."""
    return ["demo", f"output_dir={out}", f"model={tiny_dir}", "train_prompts=6", "test_prompts=3", "n=3",
            "pairs_per_prompt=3", "max_new_tokens=8", "budget=0.5", "judge=length", "train.epochs=2",
            "train.batch_size=2", "eval_samples=2", "train.finetune=full", "train.lr=1e-3", "train.precision=float32",
            "train.max_length=1024", "progress=false"]


@pytest.mark.slow  # a kill chain of subprocesses
def test_recipe_killed_anywhere_resumes_to_the_same_result(tmp_path, tiny_dir, capsys):
    log = tmp_path / "points.log"
    ref = frugalign(recipe_args(tmp_path / "ref", tiny_dir), tmp_path, log=log)
    assert ref.returncode == 0, ref.stderr[-3000:]
    # every stage: before its first output, a file write inside it, and just before / after the rename that
    # commits it; inside training: right after a checkpoint and one step later
    points = chain_points(log, lambda n: n.startswith("stage:ref/") or n in ("train:checkpoint:4", "train:step:5")
                          or (n.startswith("write:") and n.endswith((".jsonl", "result.json"))
                              and not n.startswith("write:manifest")))
    points = [p.replace("stage:ref/", "stage:run/") for p in points]
    out = tmp_path / "run"
    t0 = time.time()
    final = run_chain(lambda: recipe_args(out, tiny_dir), tmp_path, points)
    with capsys.disabled():
        print(f"\n[crash safety] recipe: {len(points)} kill points, {time.time() - t0:.0f} s")
    assert len(points) >= 30 and "gold win rate" in final.stdout
    a, b = tmp_path / "ref", out
    for rel in ("select/human_pairs.jsonl", "select/rest_pairs.jsonl", "label/human.jsonl", "annotate/auto.jsonl",
                "annotate/gated.jsonl", "annotate/hybrid_fit.json",
                "pool/pool.jsonl", "eval_trained/responses.jsonl", "evaluate/prompt_win_rates.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    ma, mb = jsonl(a / "train" / "metrics.jsonl"), jsonl(b / "train" / "metrics.jsonl")
    assert [m["step"] for m in ma] == [m["step"] for m in mb]
    for x, y in zip(ma, mb):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-6) and x["margin"] == pytest.approx(y["margin"], abs=1e-5)
    same_weights(a / "train" / "model" / "model.safetensors", b / "train" / "model" / "model.safetensors")
    ra, rb = (json.loads((d / "evaluate" / "result.json").read_text()) for d in (a, b))
    assert ra == rb
    assert not list(b.glob(".*.tmp*")) and not list(b.glob("*/.*.tmp"))  # nothing half-written is left


# ---------------------------------------------------------------- the study and SPA rounds


def study_args(out: Path, tiny_dir: str) -> list[str]:
    return ["study", f"output_dir={out}", f"model={tiny_dir}", "train_prompts=8", "test_prompts=3", "n=3",
            "max_new_tokens=8", "embedder=none", "judge=length", "train.epochs=1", "train.batch_size=2", "eval_samples=2",
            "train.finetune=full", "train.lr=1e-3", "train.precision=float32", "progress=false", "methods=dpo-100,spa",
            "budgets=0.25", "strategies=random", "seeds=0", "spa.rounds=2", "spa.k=3", "train.max_length=1024"]


@pytest.mark.slow  # a kill chain of subprocesses
def test_study_and_spa_rounds_killed_between_and_inside_resume(tmp_path, tiny_dir, capsys):
    ref = frugalign(study_args(tmp_path / "ref", tiny_dir), tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]
    points = ["stage:shared/pool:commit",                      # inside the shared stages
              "study:arm:dpo-100-b1-all-s0:done",              # between arms
              "stage:spa-b0.25-random-s0/train:commit",          # inside an arm
              "iterate:round-1:sampled", "write:annotations.jsonl",  # inside SPA round 1
              "iterate:round-1:done",                           # between rounds
              "train:step:1",                                   # inside round 2's training
              "stage:spa-b0.25-random-s0/evaluate:start"]
    t0 = time.time()
    run_chain(lambda: study_args(tmp_path / "study", tiny_dir), tmp_path, points)
    with capsys.disabled():
        print(f"\n[crash safety] study + SPA rounds: {len(points)} kill points, {time.time() - t0:.0f} s")
    drop = ("seconds", "wall_seconds_this_call", "dir", "reliability")
    sa, sb = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("ref", "study"))
    clean = lambda rows: [{k: v for k, v in r.items() if k not in drop} for r in rows]  # noqa: E731
    assert clean(sa["arms"]) == clean(sb["arms"]) and sa["cells"] == sb["cells"] and sa["paired"] == sb["paired"]


@pytest.mark.slow  # a kill chain of subprocesses
def test_iterate_killed_between_and_inside_rounds_resumes(tmp_path, tiny_tokenizer, capsys):
    from conftest import build_model

    for name, seed in (("init", 0), ("seed", 1)):
        build_model(tiny_tokenizer, seed=seed).save_pretrained(tmp_path / name)
        tiny_tokenizer.save_pretrained(tmp_path / name)
    questions = ["Write a poem about the sea.", "What is the capital of France?", "Give me a list.", "Say hi.",
                 "Name a colour.", "Count to three."]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": q}) + "\n"
                                                    for i, q in enumerate(questions)))

    (tmp_path / "iterate.yaml").write_text("train: {threads: 1, tensorboard: false, save_every: 1}\n")

    def args(out: str) -> list[str]:  # the flat names of before the train block, beside its YAML mapping
        return ["iterate", str(tmp_path / "iterate.yaml"), f"prompts={tmp_path / 'prompts.jsonl'}",
                f"policy={tmp_path / 'seed'}", f"init_model={tmp_path / 'init'}", f"output_dir={tmp_path / out}",
                "rounds=2", "k=3", "temperature=1.0", "max_new_tokens=6", "batch_size=2", "micro_batch_size=2",
                "lr=1e-3", "precision=float32", "progress=false"]

    ref = frugalign(args("ref"), tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]
    points = ["iterate:round-1:sampled", "write:annotations.jsonl", "iterate:round-1:judged",
              "train:checkpoint:1",  # inside round 1's training
              "iterate:round-1:done", "iterate:round-2:judged"]
    t0 = time.time()
    run_chain(lambda: args("spa"), tmp_path, points)
    with capsys.disabled():
        print(f"\n[crash safety] iterate rounds: {len(points)} kill points, {time.time() - t0:.0f} s")
    for r in ("round-1", "round-2"):
        for name in ("pool.jsonl", "judged_pairs.jsonl", "annotations.jsonl", "pairs.jsonl"):
            assert (tmp_path / "ref" / r / name).read_bytes() == (tmp_path / "spa" / r / name).read_bytes(), (r, name)
    same_weights(tmp_path / "ref" / "round-2" / "train" / "final" / "model.safetensors",
                 tmp_path / "spa" / "round-2" / "train" / "final" / "model.safetensors")


@pytest.mark.slow  # a kill chain of subprocesses
def test_label_server_killed_while_writing_a_label_keeps_the_file_whole(tmp_path):
    import urllib.request

    from frugalign.labeling.export import make_batch, write_batch
    from frugalign.records import PreferencePair

    pairs = [PreferencePair(f"p{i}", f"Question {i}?", f"answer A{i}", f"answer B{i}") for i in range(4)]
    key, _ = write_batch(make_batch(pairs, "b1", seed=1), tmp_path / "b1")
    labels = tmp_path / "b1.labels.jsonl"

    def serve_and_label(index: int, kill: str | None):
        env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
        env.pop("FRUGALIGN_KILL_AT", None)
        if kill:
            env["FRUGALIGN_KILL_AT"] = kill
        proc = subprocess.Popen([sys.executable, "-m", "frugalign", "label", "serve", str(key), "port=0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        url = proc.stdout.readline().strip().split()[-1]
        req = urllib.request.Request(url + "api/label", json.dumps({"index": index, "label": "A"}).encode(),
                                     {"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=30).read()
            ok = True
        except OSError:  # the server died mid-request
            ok = False
        proc.terminate() if proc.poll() is None else None
        proc.wait(timeout=30)
        return ok, proc.returncode

    assert serve_and_label(0, None)[0]
    before = labels.read_bytes()
    ok, rc = serve_and_label(1, f"write:{labels.name}")     # killed after writing the temp file, before the rename
    assert not ok and rc == KILLED and labels.read_bytes() == before and len(jsonl(labels)) == 1
    assert serve_and_label(1, None)[0] and len(jsonl(labels)) == 2


# ---------------------------------------------------------------- one writer, Ctrl-C, storage errors


def test_one_writer_per_run_directory(tmp_path):
    (tmp_path / "run").mkdir()
    with RunLock(tmp_path / "run"):
        with pytest.raises(ConfigError, match=rf"in use by process {os.getpid()}"):
            with RunLock(tmp_path / "run"):
                pass
    # a lock file left by a process that no longer runs is taken over, with a notice
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "run" / ".lock").write_text(dead.stdout)
    notes = []
    with RunLock(tmp_path / "run", log=notes.append):
        pass
    assert len(notes) == 1 and dead.stdout.strip() in notes[0] and "taking over" in notes[0]


def test_a_second_process_on_a_busy_run_directory_is_a_one_line_error(tmp_path, tiny_dir, capsys):
    from frugalign.cli import main

    out = tmp_path / "run"
    with RunLock(out):
        rc = main(recipe_args(out, tiny_dir))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"in use by process {os.getpid()}" in err[0]


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path, tiny_dir, capsys, monkeypatch):
    import frugalign.recipe as recipe
    from frugalign.cli import main

    real = recipe.stage_train

    def interrupted(ctx, cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "stage_train", interrupted)
    out = tmp_path / "run"
    assert main(recipe_args(out, tiny_dir)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and "rerun the same command" in err[0]
    monkeypatch.setattr(recipe, "stage_train", real)
    assert main(recipe_args(out, tiny_dir)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["pool"]["status"] == "done" and manifest["stages"]["evaluate"]["status"] == "done"


def test_a_full_disk_during_a_stage_is_one_line_and_the_rerun_resumes(tmp_path, tiny_dir, capsys, monkeypatch):
    import frugalign.recipe as recipe
    from frugalign.cli import main

    real = recipe.write_records

    def disk_full(path, records):
        if Path(path).name == "human_pairs.jsonl":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, records)

    monkeypatch.setattr(recipe, "write_records", disk_full)
    out = tmp_path / "run"
    assert main(recipe_args(out, tiny_dir)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "human_pairs.jsonl" in err[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["pool"]["status"] == "done" and manifest["stages"]["select"]["status"] == "failed"
    assert not (out / "select").exists() and not list(out.glob(".select.tmp*"))
    monkeypatch.setattr(recipe, "write_records", real)
    capsys.readouterr()
    assert main(recipe_args(out, tiny_dir)) == 0
    assert "[pool] up to date, skipped" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["below a file", "/sys"])
def test_an_unwritable_output_directory_is_one_line(tmp_path, tiny_dir, capsys, where):
    from frugalign.cli import main

    if where == "/sys":
        if not os.path.isdir("/sys/kernel"):
            pytest.skip("no sysfs on this system")  # Linux-only case; the other one runs everywhere
        target = Path("/sys/frugalign-test/run")  # EPERM, even for root
    else:
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "run"
    assert main(recipe_args(target, tiny_dir)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0] and str(target.parent) in err[0]

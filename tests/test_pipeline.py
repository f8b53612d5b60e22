"""Run directories: finished stages are skipped, changed ones redone, killed ones resumed."""

from __future__ import annotations

import json

import pytest

from frugalign.pipeline import RunDir, Stage


def make_stages(calls, n=3, fail_second=False):
    def first(ctx):
        calls.append("first")
        (ctx.out / "numbers.json").write_text(json.dumps(list(range(ctx.settings["n"]))))
        return {"count": ctx.settings["n"]}

    def second(ctx):
        calls.append("second")
        if fail_second:
            (ctx.out / "partial.txt").write_text("half")
            raise KeyboardInterrupt  # a kill in the middle of the stage
        nums = json.loads(ctx.input("first", "numbers.json").read_text())
        (ctx.out / "sum.json").write_text(json.dumps(sum(nums)))
        return {"sum": sum(nums)}

    return [Stage("first", first, {"n": n}), Stage("second", second, {"scale": 1}, inputs=("first",))]


def test_rerun_skips_finished_stages(tmp_path):
    calls = []
    run = RunDir(tmp_path / "run", {"x": 1})
    for s in make_stages(calls):
        run.run(s, log=lambda m: None)
    assert calls == ["first", "second"]
    again = RunDir(tmp_path / "run")
    for s in make_stages(calls):
        again.run(s, log=lambda m: None)
    assert calls == ["first", "second"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["second"]["summary"] == {"sum": 3}
    assert "torch" in manifest["versions"] and manifest["config"] == {"x": 1}


def test_changed_settings_redo_stage_and_downstream(tmp_path):
    calls = []
    run = RunDir(tmp_path / "run")
    for s in make_stages(calls):
        run.run(s, log=lambda m: None)
    for s in make_stages(calls, n=4):
        run.run(s, log=lambda m: None)
    assert calls == ["first", "second", "first", "second"]
    assert json.loads((tmp_path / "run" / "second" / "sum.json").read_text()) == 6


def test_killed_stage_resumes_without_redoing_finished(tmp_path):
    calls = []
    run = RunDir(tmp_path / "run")
    first, second = make_stages(calls, fail_second=True)
    run.run(first, log=lambda m: None)
    with pytest.raises(KeyboardInterrupt):
        run.run(second, log=lambda m: None)
    assert not (tmp_path / "run" / "second").exists()
    assert not list((tmp_path / "run").glob(".second.tmp*"))
    resumed = RunDir(tmp_path / "run")
    for s in make_stages(calls):
        resumed.run(s, log=lambda m: None)
    assert calls == ["first", "second", "second"]
    assert resumed.summary("second") == {"sum": 3}


def test_missing_input_stage_is_an_error(tmp_path):
    from frugalign.errors import ConfigError

    run = RunDir(tmp_path / "run")
    with pytest.raises(ConfigError, match="needs finished stages"):
        run.run(make_stages([])[1], log=lambda m: None)

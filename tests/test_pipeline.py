"""Run directories: finished stages are skipped, changed ones redone, killed ones resumed."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field

import pytest

from frugalign.errors import ConfigError
from frugalign.pipeline import RunDir, Stage
from frugalign.spa import IterateConfig
from frugalign.train import TrainConfig


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


@dataclass
class _NewerTrainConfig(TrainConfig):
    brand_new: int = field(default=7, metadata={"help": "a setting added after the run was made"})


@dataclass
class _NewerIterateConfig(IterateConfig):
    brand_new: int = field(default=7, metadata={"help": "a setting added after the rounds were made"})


def _one_line_refusal(open_dir, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        open_dir()
    message = str(e.value)
    assert len(message.splitlines()) == 1 and "different config" in message and needle in message


def test_a_setting_added_with_its_default_resumes_and_a_changed_value_is_refused(tmp_path):
    """One identity rule for training runs and SPA rounds: RunDir.claim, defaults-aware."""
    from frugalign.spa import open_run_dir as open_rounds
    from frugalign.spa import round_keys
    from frugalign.train import open_run_dir as open_training

    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    train = TrainConfig(data=str(data), output_dir=str(tmp_path / "train"))
    run, resuming = open_training(train)
    run.save()  # what a started run records
    assert not resuming
    newer = _NewerTrainConfig(**asdict(train))
    assert open_training(newer)[1]  # resumes: the new setting is at its default
    _one_line_refusal(lambda: open_training(dataclasses.replace(newer, brand_new=8)), "brand_new: 7 -> 8")
    _one_line_refusal(lambda: open_training(dataclasses.replace(newer, beta=0.2)), "beta: 0.1 -> 0.2")

    rounds = IterateConfig(prompts=str(data), policy="seed", output_dir=str(tmp_path / "spa"))
    open_rounds(rounds, round_keys(2))
    newer_rounds = _NewerIterateConfig(**asdict(rounds))
    assert open_rounds(newer_rounds, round_keys(2)).manifest["identity"]["brand_new"] == 7
    _one_line_refusal(lambda: open_rounds(dataclasses.replace(newer_rounds, brand_new=8), round_keys(2)),
                      "brand_new: 7 -> 8")
    _one_line_refusal(lambda: open_rounds(dataclasses.replace(rounds, train={"lr": 1e-3}), round_keys(2)),
                      "train.lr: None -> 0.001")

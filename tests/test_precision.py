"""precision=auto: bf16 only with native support and a measured speed-up; one notice per process."""

from __future__ import annotations

import json

import pytest

from frugalign import precision as P
from frugalign.errors import ConfigError


@pytest.fixture(autouse=True)
def fresh_decision(monkeypatch, tmp_path):
    monkeypatch.setenv("FRUGALIGN_CACHE", str(tmp_path / "cache"))
    P._decide.cache_clear()
    P._announced.clear()
    yield
    P._decide.cache_clear()
    P._announced.clear()


def test_auto_is_float32_without_native_bf16_and_never_measures(monkeypatch):
    monkeypatch.setattr(P, "native_bf16", lambda device="cpu": False)
    monkeypatch.setattr(P, "measure_bf16_speedup", lambda: pytest.fail("must not measure without native bf16"))
    said = []
    assert P.resolve_precision("auto", "cpu", log=said.append) == "float32"
    assert P.resolve_precision("auto", "cpu", log=said.append) == "float32"
    assert len(said) == 1 and said[0].startswith("precision: float32") and "no native bf16" in said[0]


@pytest.mark.parametrize("speedup, expected", [(2.2, "bf16"), (1.05, "float32")])
def test_auto_with_native_bf16_follows_the_measurement(monkeypatch, speedup, expected):
    monkeypatch.setattr(P, "native_bf16", lambda device="cpu": True)
    monkeypatch.setattr(P, "measure_bf16_speedup", lambda: speedup)
    said = []
    assert P.resolve_precision("auto", "cpu", log=said.append) == expected
    assert len(said) == 1 and said[0].startswith(f"precision: {expected} (native bf16")
    assert (f"{speedup:.1f}x faster" if expected == "bf16" else f"only {speedup:.2f}x") in said[0]


def test_measurement_is_cached_on_disk_per_machine(monkeypatch, tmp_path):
    monkeypatch.setattr(P, "native_bf16", lambda device="cpu": True)
    calls = []
    monkeypatch.setattr(P, "measure_bf16_speedup", lambda: calls.append(1) or 1.8)
    assert P.resolve_precision("auto", "cpu", log=lambda m: None) == "bf16"
    table = json.loads((tmp_path / "cache" / "precision.json").read_text())
    assert list(table.values()) == [1.8] and P._cpu_key() in table
    P._decide.cache_clear()  # a new process: reads the file, does not measure again
    assert P.resolve_precision("auto", "cpu", log=lambda m: None) == "bf16" and calls == [1]


def test_explicit_bf16_without_native_support_warns_once_and_is_honoured(monkeypatch):
    monkeypatch.setattr(P, "native_bf16", lambda device="cpu": False)
    said = []
    assert P.resolve_precision("bf16", "cpu", log=said.append) == "bf16"
    assert P.resolve_precision("bf16", "cpu", log=said.append) == "bf16"
    assert len(said) == 1 and "slower than float32" in said[0]
    assert P.resolve_precision("float32", "cpu", log=said.append) == "float32" and len(said) == 1


def test_explicit_bf16_with_native_support_is_silent(monkeypatch):
    monkeypatch.setattr(P, "native_bf16", lambda device="cpu": True)
    said = []
    assert P.resolve_precision("bf16", "cpu", log=said.append) == "bf16" and said == []


def test_bad_precision_is_a_config_error_everywhere():
    from frugalign.recipe import RunConfig

    with pytest.raises(ConfigError, match="precision='fp16'"):
        P.resolve_precision("fp16")
    with pytest.raises(ConfigError, match="precision='fp16'"):
        RunConfig(train={"precision": "fp16"}).validate()
    with pytest.raises(ValueError, match="resolve"):
        P.autocast("auto", "cpu")


def test_bad_precision_on_the_command_line_exits_2(capsys):
    from frugalign.cli import main

    assert main(["train", "data=x.jsonl", "output_dir=out", "precision=fp16"]) == 2
    assert "precision" in capsys.readouterr().err


def test_dtype_auto_follows_the_decision(monkeypatch):
    import torch

    from frugalign.models import resolve_dtype

    monkeypatch.setattr(P, "native_bf16", lambda device="cpu": False)
    assert resolve_dtype("auto") is torch.float32
    assert P.resolve_dtype_name("bfloat16") == "bfloat16"

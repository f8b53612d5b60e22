"""Every reading command on every file of the bad-input corpus (tests/data/bad/): exit code 2,
one line on stderr naming the file (and the line or row where there is one), nothing written.

A file's name says which readers must refuse it: ``any-`` (every reading command), ``pref-``
(pair and training-table readers), ``pairs-`` (pair readers), ``train-`` (training tables),
``pool-`` (prompt and pool readers).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from frugalign.cli import main

BAD = Path(__file__).parent / "data" / "bad"

# command -> (argument template, the file kinds it must refuse)
COMMANDS = {
    "train": (["train", "data={f}", "model={model}", "output_dir={out}/run", "progress=false",
               "tensorboard=false", "precision=float32"], {"any", "pref", "train"}),
    "annotate": (["annotate", "--method", "llm-judge", "--model", "{model}", "--input", "{f}", "--output",
                  "{out}/ann.jsonl", "progress=false", "cache_path={out}/cache.sqlite"], {"any", "pref", "pairs", "pool"}),
    # the density ratio reads pairs itself before any model loads (a missing side was a KeyError)
    "annotate-density-ratio": (["annotate", "--method", "density-ratio", "--input", "{f}", "--output",
                                "{out}/ann.jsonl", "progress=false"], {"pref", "pairs"}),
    "select": (["select", "input={f}", "output={out}/sel.jsonl", "budget=1", "strategy=random", "embedder=none"],
               {"any", "pref", "pairs", "pool"}),
    "label-export": (["label", "export", "{f}", "output={out}/batch"], {"any", "pref", "pairs"}),
    "score": (["score", "input={f}", "output={out}/scores.jsonl", "model={model}", "progress=false"],
              {"any", "pref", "pairs", "pool"}),
    "generate": (["generate", "input={f}", "output={out}/pool.jsonl", "model={model}", "progress=false"],
                 {"any", "pool"}),
    "eval-annotations": (["eval", "annotations", "annotations={f}", "reference={f}"], {"any"}),
    "label-import": (["label", "import", "{f}", "{f}", "output={out}/human.jsonl"], {"any"}),
}
FILES = sorted(p.name for p in BAD.iterdir())
CASES = [(cmd, name) for cmd, (_, kinds) in COMMANDS.items() for name in FILES if name.split("-")[0] in kinds]


def test_the_corpus_is_large_and_every_file_is_used():
    assert len(FILES) >= 30
    assert {name for _, name in CASES} == set(FILES)


@pytest.fixture()
def model_dir(tiny_model_dir):
    return tiny_model_dir


@pytest.mark.parametrize("command,name", CASES)
def test_bad_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, model_dir, command, name):
    out = tmp_path / "out"
    f = BAD / name
    args = [a.format(f=f, out=out, model=model_dir) for a in COMMANDS[command][0]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert name in err, err
    if f.suffix == ".jsonl" and f.read_bytes().strip():
        assert re.search(rf"{re.escape(name)}:\d+", err), err  # the line
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert written == [], written


@pytest.mark.parametrize("name,side", [("pref-rejected-missing.jsonl", "rejected"),
                                       ("pref-chosen-missing.jsonl", "chosen")])
@pytest.mark.parametrize("command", ["annotate-density-ratio", "train"])
def test_a_missing_preference_side_is_named(tmp_path, capsys, model_dir, command, name, side):
    """The density ratio answered a KeyError traceback where train names the row and the field."""
    args = [a.format(f=BAD / name, out=tmp_path, model=model_dir) for a in COMMANDS[command][0]]
    assert main(args) == 2
    assert f"{name}:1: field '{side}': missing" in capsys.readouterr().err

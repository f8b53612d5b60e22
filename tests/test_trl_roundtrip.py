"""A TRL conversational file and an implicit-prompt file go select -> label export/import ->
annotate -> frugalign train -> one TRL DPOTrainer step, keeping their layout throughout."""

from __future__ import annotations

import json
import os

import pytest

from frugalign.cli import main

pytestmark = pytest.mark.slow  # a CLI chain, then TRL in a subprocess

QUESTIONS = ["Write a poem about the sea.", "What is the capital of France?", "Give me a list.",
             "Say something nice.", "Tell me about Berlin.", "Name a colour.", "Count to three.", "Say hi."]
LONG, SHORT = "Paris is the capital of France and a lovely city.", "No."


def conversational(i: int, q: str) -> dict:
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}]
    if i % 2:  # multi-turn prompts keep their turns
        prompt += [{"role": "assistant", "content": "Sure."}, {"role": "user", "content": "Go on."}]
    longer, shorter = (LONG, SHORT) if i % 3 else (SHORT, LONG)  # the length judge disagrees with some files
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": longer + f" {i}"}],
            "rejected": [{"role": "assistant", "content": shorter}]}


def implicit(i: int, q: str) -> dict:
    longer, shorter = (LONG, SHORT) if i % 3 else (SHORT, LONG)
    return {"chosen": f"{q} {longer} {i}", "rejected": f"{q} {shorter}"}


@pytest.fixture()
def model_dir(tiny_model_dir):
    return tiny_model_dir


def run(*args) -> None:
    assert main([str(a) for a in args]) == 0, args


TRL_STEP = """
import json, sys
import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

model_dir, table, out = sys.argv[1:]
data = datasets.load_dataset("json", data_files=table, split="train")
args = DPOConfig(output_dir=out, per_device_train_batch_size=2, max_steps=1, use_cpu=True, report_to="none",
                 save_strategy="no", logging_steps=1, disable_tqdm=True, dataloader_num_workers=0)
trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                     processing_class=AutoTokenizer.from_pretrained(model_dir), train_dataset=data)
trainer.train()
print(json.dumps(trainer.state.log_history[0]))
"""


def trl_dpo_step(model_dir: str, table: str, out: str) -> float:
    """One TRL DPOTrainer step on the file, in its own process (the Trainer changes global torch state)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", TRL_STEP, model_dir, table, out], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["loss"]


@pytest.mark.parametrize("make,layout", [(conversational, "conversational"), (implicit, "standard-implicit")])
def test_trl_file_through_select_label_annotate_train_and_trl(tmp_path, model_dir, make, layout):
    src = tmp_path / "prefs.jsonl"
    src.write_text("".join(json.dumps(make(i, q)) + "\n" for i, q in enumerate(QUESTIONS)))
    d = tmp_path
    run("select", f"input={src}", f"output={d / 'human.jsonl'}", f"rest_output={d / 'rest.jsonl'}", "budget=4",
        "strategy=random", "embedder=none", "per_prompt=0")
    human = [json.loads(line) for line in open(d / "human.jsonl")]
    assert len(human) == 4 and all(r.keys() >= {"id", "chosen", "rejected"} for r in human)
    assert ("prompt" in human[0]) == (layout == "conversational")  # the input's layout, kept
    run("label", "export", d / "human.jsonl", f"output={d / 'batch'}")
    run("label", "gold", d / "batch.jsonl", "judge=length", f"output={d / 'gold.jsonl'}",
        f"labels_output={d / 'labels.jsonl'}")
    run("label", "import", d / "batch.jsonl", d / "labels.jsonl", f"output={d / 'labelled.jsonl'}")
    labelled = {json.loads(line)["pair_id"]: json.loads(line) for line in open(d / "labelled.jsonl")}
    for rec in human:  # un-flipped: the length judge prefers the longer final turn, in file order
        a, b = (rec["chosen"], rec["rejected"]) if layout == "standard-implicit" else (
            rec["chosen"][-1]["content"], rec["rejected"][-1]["content"])
        assert labelled[rec["id"]]["preferred"] == ("A" if len(a.split()) > len(b.split()) else "B")
    run("annotate", "--method", "weak-judge", "--judge-backbone", model_dir, "--labels", d / "labelled.jsonl",
        "--label-pairs", d / "human.jsonl", "--input", d / "rest.jsonl", "--output", d / "ann.jsonl",
        f"training_output={d / 'train.jsonl'}", "judge_epochs=1", "judge_holdout=0", "progress=false",
        f"cache_path={d / 'cache.sqlite'}")
    table = [json.loads(line) for line in open(d / "train.jsonl")]
    assert len(table) == len(QUESTIONS) - sum(a["preferred"] == "tie" for a in labelled.values())
    if layout == "conversational":
        assert all(r["chosen"][-1]["role"] == "assistant" and r["prompt"][0]["role"] == "system" for r in table)
        assert any(len(r["prompt"]) == 4 for r in table)
    else:
        assert all("prompt" not in r and r["chosen"].startswith(r["rejected"].split()[0]) for r in table)
    run("train", f"data={d / 'train.jsonl'}", f"model={model_dir}", f"output_dir={d / 'run'}", "max_steps=1",
        "batch_size=2", "micro_batch_size=2", "precision=float32", "progress=false", "tensorboard=false",
        "weights=confidence", "lr=1e-3")
    assert trl_dpo_step(model_dir, str(d / "train.jsonl"), str(d / "trl")) == pytest.approx(0.693, abs=0.2)

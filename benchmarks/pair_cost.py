"""Seconds per preference pair of a LoRA DPO run, reference pass included, for the study's recipes.

What the label-efficiency study pays is the whole run: one reference pass plus
``epochs`` passes of forward + backward over every pair. This times exactly
that on pairs shaped like the study's (a ~40-token prompt, two ~90-token
responses), for each setting, in one invocation:

* ``all``      LoRA on every layer, backward through the whole model (the old default);
* ``topK``     LoRA on the top K layers only (``lora_layers=K``): backward stops below them;
* ``topK+c``   the same with the frozen lower layers' output cached after the first
               epoch (``trunk_cache_gb``), so later epochs run only the top K layers.

    python benchmarks/pair_cost.py                       # precision auto, 3 epochs
    python benchmarks/pair_cost.py --precisions float32,bf16 --settings all,top8,top8+c

Prints s/pair for the reference pass, epoch 1 and later epochs, the whole run's
s/pair-epoch, and each setting's speed-up over ``all`` in the same precision.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import train_speed  # noqa: E402  (make_rows: exact token budgets)

PROMPT_TOKENS, RESPONSE_TOKENS, PAIRS, BATCH = 40, 90, 32, 8


def time_setting(model, tok, rows_file: str, setting: str, precision: str, epochs: int, out: str) -> dict:
    from frugalign.train import TrainConfig, compute_gradients, optimizer_update, setup

    layers, cached = (0, False) if setting == "all" else (int(setting[3:].split("+")[0]), setting.endswith("+c"))
    cfg = TrainConfig(data=rows_file, output_dir=out, finetune="lora", precision=precision, batch_size=BATCH,
                      micro_batch_size=BATCH, epochs=epochs, lr=1e-4, gradient_checkpointing=False, progress=False,
                      tensorboard=False, lora_layers=layers, trunk_cache_gb=4.0 if cached else 0.0)
    t0 = time.perf_counter()
    run = setup(cfg, copy.deepcopy(model), tok)
    ref = time.perf_counter() - t0
    per_epoch = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for j in range(run.steps_per_epoch):
            step = epoch * run.steps_per_epoch + j
            compute_gradients(run, [run.examples[i] for i in range(j * BATCH, (j + 1) * BATCH)], step)
            optimizer_update(run)
        per_epoch.append(time.perf_counter() - t0)
    n = len(run.examples)
    return {"ref": ref / n, "epoch1": per_epoch[0] / n, "later": sum(per_epoch[1:]) / max(1, epochs - 1) / n,
            "run": (ref + sum(per_epoch)) / n / epochs, "trunk_layer": run.trunk_layer,
            "precision": run.cfg.precision}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="all,top8,top8+c", help="all | topK | topK+c, comma-separated")
    p.add_argument("--precisions", default="auto", help="auto | float32 | bf16, comma-separated")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--model", default="smollm2-135m-instruct")
    args = p.parse_args()
    import torch

    from frugalign.data import write_records
    from frugalign.models import load_model
    from frugalign.precision import cpu_description

    train_speed.PROMPT_TOKENS, train_speed.RESPONSE_TOKENS = PROMPT_TOKENS, RESPONSE_TOKENS
    model, tok = load_model(args.model)
    tmp = tempfile.mkdtemp()
    rows_file = os.path.join(tmp, "pairs.jsonl")
    write_records(rows_file, train_speed.make_rows(tok, PAIRS))
    print(f"{PAIRS} pairs (prompt ≈ {PROMPT_TOKENS}, responses ≈ {RESPONSE_TOKENS} tokens), batch {BATCH}, "
          f"{args.epochs} epochs; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"CPU {cpu_description()}")
    print(f"{'setting':<9} {'precision':<9} {'trunk':>5} {'ref s/pair':>10} {'epoch 1':>8} {'later':>8} "
          f"{'run s/pair-epoch':>16} {'× all':>6}")
    for precision in args.precisions.split(","):
        base = None
        for setting in args.settings.split(","):
            out = os.path.join(tmp, f"run-{setting}-{precision}")
            r = time_setting(model, tok, rows_file, setting, precision, args.epochs, out)
            shutil.rmtree(out, ignore_errors=True)
            base = base or (r["run"] if setting == "all" else None)
            ratio = f"{base / r['run']:>6.2f}" if base else f"{'–':>6}"
            print(f"{setting:<9} {r['precision']:<9} {r['trunk_layer']:>5} {r['ref']:>10.3f} {r['epoch1']:>8.3f} "
                  f"{r['later']:>8.3f} {r['run']:>16.3f} {ratio}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

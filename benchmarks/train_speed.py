"""Training speed and peak memory: frugalign's DPO loop vs TRL's DPOTrainer.

Both sides train the embedded default (SmolLM2-135M-Instruct) on the same
synthetic pairs (prompt ≈ 64 tokens with the chat template, each response
≈ 192 tokens, so each prompt+response sequence is ≈ 256 tokens), with the same
batch (4 pairs per step, no accumulation), precision, LoRA/full setting,
β, learning rate and gradient checkpointing (TRL's default: on).

Each side runs in its own subprocess, one after the other, because peak RSS
(``ru_maxrss``) is a process-lifetime maximum. The first step is a warm-up and
is not timed. TRL gets its reference model explicitly for full fine-tuning
(a second copy, as it would load itself) and uses its default for LoRA (the
adapter-disabled base); it runs the reference forward every step. frugalign
precomputes the reference log-probs once before training; that one-off cost is
reported separately (``ref s/pair``), not hidden, and ``1-epoch s ×`` is the
time ratio with that cost charged to the step (each pair seen once; with more
epochs the reference pass is paid once, not every epoch).

    python benchmarks/train_speed.py                      # full+bf16, full+float32, lora+bf16
    python benchmarks/train_speed.py --settings full+bf16 --every 1 --steps 3

frugalign's runs use gradient checkpointing too: on every layer (``--every 1``,
exactly TRL's setting) and on every third layer (``--every 3``, a speed/memory
trade-off the precomputed reference leaves memory for); both are reported.

Measured once (2026-11-22) on an idle 16-core Xeon (AMX) limited to 2 threads, with
a randomly initialised SmolLM2-135M (same architecture, hence the same compute;
the trained weights are too large to copy there), ``--steps 3`` (LoRA: 2):

    setting        TRL s/step  GB   | every 1: s (×)   GB (×)     | every 3: s (×)   GB (×)
    full+bf16      14.04       5.82 |  8.77 (0.62)  3.26 (0.56)   |  8.40 (0.60)  4.17 (0.72)
    full+float32   22.59       5.51 | 15.33 (0.68)  3.12 (0.57)   | 12.27 (0.54)  4.89 (0.89)
    lora+bf16      16.23       3.82 |  9.35 (0.58)  1.97 (0.51)   |  7.85 (0.48)  3.01 (0.79)

One-off reference pass: 0.46-0.96 s per pair.

Measured 2026-11-29 on a 2-core AMD EPYC (avx2 fma avx512f avx512_bf16) with the kernels confined to AVX2
(``MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``), the trained
SmolLM2-135M-Instruct, ``--settings full+float32,lora+float32 --steps 2``:

    setting        TRL s/step  GB   | every 1: s (×)   GB (×)     | every 3: s (×)   GB (×)
    full+float32   26.92       5.53 | 16.44 (0.61)  3.55 (0.64)   | 15.17 (0.56)  4.69 (0.85)
    lora+float32   23.71       4.73 | 13.08 (0.55)  2.74 (0.58)   | 13.22 (0.56)  4.38 (0.92)

One-off reference pass 0.85-0.94 s per pair; charged to one epoch the time ratio is 0.69-0.74
(``1-epoch s ×``); spread over E epochs it adds 4 × ref / E seconds to each step (LoRA, every 1:
0.62× at 2 epochs, 0.60× at 3).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT_TOKENS, RESPONSE_TOKENS, BATCH, BETA, LR = 36, 191, 4, 0.1, 1e-6
WORDS = ("the model answers each question with care and detail while the user reads every line of "
         "text about rivers mountains cities numbers colours music science history and small animals").split()


def make_rows(tokenizer, n: int, seed: int = 0) -> list[dict]:
    """``n`` pairs with exact token budgets for the user prompt and each response."""
    import random

    rng = random.Random(seed)

    def text(k: int) -> str:
        ids = tokenizer(" ".join(rng.choice(WORDS) for _ in range(2 * k)), add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[:k]).strip()

    return [{"id": str(i), "prompt": text(PROMPT_TOKENS), "chosen": text(RESPONSE_TOKENS),
             "rejected": text(RESPONSE_TOKENS)} for i in range(n)]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def run_frugalign(rows, mode: str, precision: str, steps: int, out: str, every: int, model: str) -> dict:
    from frugalign.data import write_records
    from frugalign.train import TrainConfig, compute_gradients, optimizer_update, setup

    write_records(Path(out) / "data.jsonl", rows)
    cfg = TrainConfig(data=str(Path(out) / "data.jsonl"), output_dir=str(Path(out) / "run"), model=model, finetune=mode,
                      precision=precision, batch_size=BATCH, micro_batch_size=BATCH, max_steps=steps + 1,
                      lr=LR, beta=BETA, gradient_checkpointing=True, checkpoint_every=every, progress=False,
                      tensorboard=False)
    run = setup(cfg)
    times, cpu = [], []
    for step in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        batch = [run.examples[i] for i in range(step * BATCH, (step + 1) * BATCH)]
        compute_gradients(run, batch, step)
        optimizer_update(run)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    tokens = sum(len(e.ids) for e in run.examples[:BATCH])
    return {"step_s": times[1:], "step_cpu_s": cpu[1:], "tokens_per_step": tokens,
            "ref_s_per_pair": run.info["reference_seconds"] / len(rows)}


def run_trl(rows, mode: str, precision: str, steps: int, out: str, model_spec: str) -> dict:
    import datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from frugalign.models import EMBEDDED, materialized_dir

    path = str(materialized_dir(model_spec)) if model_spec in EMBEDDED else model_spec
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    ref = AutoModelForCausalLM.from_pretrained(path, dtype="float32") if mode == "full" else None
    conv = [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows]
    args = DPOConfig(output_dir=out, per_device_train_batch_size=BATCH, gradient_accumulation_steps=1,
                     max_steps=steps + 1, learning_rate=LR, beta=BETA, bf16=precision == "bf16",
                     gradient_checkpointing=True, use_cpu=True, save_strategy="no", report_to="none",
                     logging_steps=1, max_length=1024, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    times: list[float] = []
    cpu: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)
            cpu.append(time.process_time() - self.c0)

    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, processing_class=tok,
                         train_dataset=datasets.Dataset.from_list(conv), peft_config=peft if mode == "lora" else None,
                         callbacks=[Timer()])
    # TRL shuffles with its own sampler; the pairs are statistically identical, so order does not matter here.
    trainer.train()
    ds = trainer.train_dataset
    first = ds[0]
    tokens = sum(len(first.get(k, [])) for k in ("prompt_ids", "chosen_ids", "rejected_ids", "input_ids"))
    return {"step_s": times[1:], "step_cpu_s": cpu[1:], "tokens_first_pair": tokens}


def child(args) -> None:
    from frugalign.models import load_tokenizer

    rows = make_rows(load_tokenizer(args.model), BATCH * (args.steps + 1))
    with tempfile.TemporaryDirectory() as out:
        if args.child == "trl":
            res = run_trl(rows, args.modes, args.precisions, args.steps, out, args.model)
        else:
            res = run_frugalign(rows, args.modes, args.precisions, args.steps, out, args.every, args.model)
    res["peak_rss_gb"] = peak_rss_gb()
    print("RESULT " + json.dumps(res), flush=True)


def launch(side: str, mode: str, precision: str, steps: int, model: str, every: int = 1) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--modes", mode, "--precisions", precision,
           "--steps", str(steps), "--every", str(every), "--model", model]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{side} {mode} {precision} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(lines[-1][len("RESULT "):])
    res["wall"], res["cpu"] = (sum(res[k]) / len(res[k]) for k in ("step_s", "step_cpu_s"))
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="full+bf16,full+float32,lora+bf16", help="MODE+PRECISION list")
    p.add_argument("--every", default="1,3", help="frugalign runs: checkpoint every N-th layer (1 = as TRL)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per side (after one warm-up step)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="embedded name or model dir (smoke tests)")
    p.add_argument("--child", choices=["frugalign", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--modes", help=argparse.SUPPRESS)
    p.add_argument("--precisions", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.every = int(args.every)
        return child(args)
    import torch

    print(f"batch {BATCH} pairs; each sequence ≈ 64 prompt + {RESPONSE_TOKENS + 1} response tokens; TRL: gradient "
          f"checkpointing on every layer; {args.steps} timed steps after 1 warm-up; torch threads "
          f"{torch.get_num_threads()}. s = wall seconds/step, cpu = process CPU seconds/step (less sensitive "
          "to other load on the machine).")
    print(f"{'setting':<13} {'ours ckpt':>9} {'TRL s':>7} {'ours s':>7} {'s ×':>5} {'TRL cpu':>8} {'ours cpu':>8} "
          f"{'cpu ×':>6} {'TRL GB':>7} {'ours GB':>7} {'mem ×':>6} {'ref s/pair':>10} {'1-epoch s ×':>11}")
    for setting in args.settings.split(","):
        mode, precision = setting.split("+")
        trl = launch("trl", mode, precision, args.steps, args.model)
        for every in (int(e) for e in args.every.split(",")):
            ours = launch("frugalign", mode, precision, args.steps, args.model, every)
            print(f"{setting:<13} {every:>9} {trl['wall']:>7.2f} {ours['wall']:>7.2f} {ours['wall'] / trl['wall']:>5.2f} "
                  f"{trl['cpu']:>8.2f} {ours['cpu']:>8.2f} {ours['cpu'] / trl['cpu']:>6.2f} "
                  f"{trl['peak_rss_gb']:>7.2f} {ours['peak_rss_gb']:>7.2f} "
                  f"{ours['peak_rss_gb'] / trl['peak_rss_gb']:>6.2f} {ours['ref_s_per_pair']:>10.2f} "
                  f"{(ours['wall'] + BATCH * ours['ref_s_per_pair']) / trl['wall']:>11.2f}", flush=True)
            print(f"    raw ours: {json.dumps(ours)}", flush=True)
        print(f"    raw TRL:  {json.dumps(trl)}", flush=True)


if __name__ == "__main__":
    main()

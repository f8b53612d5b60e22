"""The annotator benchmark: which annotator, budget and selection deliver the most gold signal, no training.

For a gold task it builds (once, resumably) a pool of ``--prompts`` training
prompts × ``--n`` samples with every candidate pair gold-labelled (the recipe's
own prompts → pool → select → label stages, in ``--dir``), optionally Dr.SoW's
margin for every pair (``--drsow``: two model passes per response, cached), and
then, for each annotator × budget × selection × seed, spends the budget on
simulated human labels and measures what the recipe's labels deliver
(:func:`frugalign.annotate.planning.benchmark_recipe`): agreement with gold on
the automatic labels kept (95 % interval clustered by prompt), kappa, coverage
after the gate, and ``gold_gap_ratio``.

    python benchmarks/annotators.py --task house-style --prompts 600 --out docs/results/annotators.json
    python benchmarks/annotators.py --task ifeval --prompts 600 --drsow --out docs/results/annotators.json

Rows for other tasks already in ``--out`` are kept, so one file holds both tasks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np


def build_pool(args) -> Path:
    """The recipe's first stages with every candidate pair gold-labelled; returns the run directory."""
    from frugalign.pipeline import RunDir, RunLock
    from frugalign.recipe import RunConfig, build_stages

    cfg = RunConfig(output_dir=args.dir, task=args.task, train_prompts=args.prompts, test_prompts=1, n=args.n,
                    pairs_per_prompt=args.n * (args.n - 1) // 2, max_new_tokens=args.max_new_tokens,
                    gen_batch_size=64, annotator="gold", embedder="sentence", strategy="random", seed=args.seed,
                    budget=1.0, train={"precision": args.precision}).resolved()
    with RunLock(cfg.output_dir, print):
        run = RunDir(cfg.output_dir, dataclasses.asdict(cfg))
        for stage in build_stages(cfg)[:5]:  # prompts, pool, embed, select, label
            run.run(stage, log=print)
    return Path(cfg.output_dir)


def drsow_margins(run: Path, pairs, precision: str) -> dict[str, float]:
    """Dr.SoW's margin per pair (SmolLM2 over Gemma-3-270M, the study's pair), kept in ``drsow.json``."""
    from frugalign.annotate.factory import AnnotatorSettings, build_annotator
    from frugalign.data import write_json
    from frugalign.precision import resolve_dtype_name

    path = run / "drsow.json"
    if path.exists():
        return json.loads(path.read_text())
    s = AnnotatorSettings(method="density-ratio", ref_model="gemma3-270m", overflow="truncate",
                          dtype=resolve_dtype_name("auto", precision))
    margins = {a.pair_id: a.details["margin"] for a in build_annotator(s).annotate(pairs)}
    write_json(path, margins)
    return margins


def similarities(run: Path, pairs) -> dict[str, float]:
    from frugalign.data import read_pool
    from frugalign.selection import candidates_from_pool, precomputed_embedder

    pool = read_pool(run / "pool" / "pool.jsonl")
    cands = candidates_from_pool(pool, precomputed_embedder(pool, np.load(run / "embed" / "embeddings.npy")))
    return {p.id: float(s) for p, s in zip(cands.pairs, cands.similarity)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="house-style")
    ap.add_argument("--prompts", type=int, default=600)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--dir", default=None, help="pool directory (default runs/annotator-bench-TASK)")
    ap.add_argument("--drsow", action="store_true", help="also benchmark the annotators that use Dr.SoW's margin")
    ap.add_argument("--budgets", default="0.01,0.03,0.1,0.3")
    ap.add_argument("--selections", default="random,dissimilar,routed")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="pool seed")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--out", default="docs/results/annotators.json")
    args = ap.parse_args()
    args.dir = args.dir or f"runs/annotator-bench-{args.task}"

    from frugalign.annotate.planning import Pool, benchmark_recipe
    from frugalign.data import read_annotations, read_pairs, write_json
    from frugalign.precision import cpu_description, resolve_precision

    t0 = time.time()
    run = build_pool(args)
    pairs = read_pairs(run / "select" / "human_pairs.jsonl")
    gold_ann = read_annotations(run / "label" / "human.jsonl")
    gold = {a.pair_id: a.preferred for a in gold_ann}
    gold_diff = {a.pair_id: a.details["score_a"] - a.details["score_b"] for a in gold_ann}
    annotators = ["hybrid", "hybrid-strict"] + (["hybrid+drsow", "drsow"] if args.drsow else [])
    pool = Pool(pairs, drsow_margins(run, pairs, resolve_precision(args.precision)) if args.drsow else None,
                similarities(run, pairs))
    pool_seconds = time.time() - t0
    rows = []
    for name in annotators:
        for budget in [float(b) for b in args.budgets.split(",")]:
            for selection in args.selections.split(","):
                for seed in range(args.seeds):
                    rows.append({"task": args.task, **benchmark_recipe(pool, gold_diff, gold, name, budget, selection,
                                                                         seed)})
                    r = rows[-1]
                    print(f"{args.task} {name:13s} {budget:<5} {selection:10s} s{seed}: agreement "
                          f"{r['agreement']:.3f} [{r['agreement_ci_low']:.3f}, {r['agreement_ci_high']:.3f}] "
                          f"coverage {r['coverage']:.2f} gold_gap_ratio {r['gold_gap_ratio']:.3f}", flush=True)
    out = Path(args.out)
    old = json.loads(out.read_text()) if out.exists() else {"rows": [], "runs": []}
    doc = {"rows": [r for r in old["rows"] if r["task"] != args.task] + rows,
           "runs": [r for r in old.get("runs", []) if r["task"] != args.task] + [{
               "task": args.task, "prompts": args.prompts, "n": args.n, "pairs": len(pairs),
               "gold_ties": sum(v == "tie" for v in gold.values()), "max_new_tokens": args.max_new_tokens,
               "pool_seconds": round(pool_seconds), "cpu": cpu_description(),
               "command": "python benchmarks/annotators.py " + " ".join(
                   f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("dir", "drsow"))
               + (" --drsow" if args.drsow else "")}]}
    write_json(out, doc)
    print(f"wrote {out} ({len(rows)} rows for {args.task}; {len(pairs)} pairs; {time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()

"""Paired differences between the cells of two study summaries made on the same shared pool.

Two summaries of one study differ in one setting (docs/results.md section 2: steps fixed at 32 against
steps chosen on validation prompts). Each cell of the second is compared with the same cell of the first
(seeds both have) and with the first's DPO-100, paired on the same test prompts and initial samples,
intervals over base questions:

    python benchmarks/compare_summaries.py docs/results/study-fair-ifeval.json \\
        docs/results/study-fair-ifeval-validated.json
"""

from __future__ import annotations

import argparse
import json

from frugalign.paired import paired_difference, pool_seeds
from frugalign.study_summary import FULL, cell_name


def cells(path: str) -> tuple[dict[str, dict[int, dict]], str]:
    """Cell name -> seed -> per-prompt win rates; and the summary's shared-pool fingerprint."""
    doc = json.loads(open(path, encoding="utf-8").read())
    out: dict[str, dict[int, dict]] = {}
    for row in doc["arms"]:
        name = cell_name(row["method"], row["budget"], row["strategy"], row.get("variant", ""))
        out.setdefault(name, {})[row["seed"]] = row["prompt_win_rates"]
    return out, doc["study"].get("shared_fingerprint")


def compare(first: str, second: str, seed: int = 0) -> list[dict]:
    a, fa = cells(first)
    b, fb = cells(second)
    if fa is None or fa != fb:
        raise SystemExit(f"{first} and {second} were made on different shared pools: nothing pairs")
    rows = []
    for name, by_seed in b.items():
        baselines = {name: a.get(name), FULL: a.get(FULL)}  # one row when the cell is DPO-100 itself
        for label, base in ((f"{key} of the first", value) for key, value in baselines.items()):
            seeds = sorted(set(by_seed) & set(base or {}))
            if not seeds:
                continue
            d = paired_difference(pool_seeds([by_seed[s] for s in seeds]), pool_seeds([base[s] for s in seeds]),
                                  seed=seed)
            rows.append({"cell": name, "vs": label, "seeds": seeds, "diff": d.value, "low": d.low, "high": d.high})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first")
    ap.add_argument("second")
    args = ap.parse_args()
    print(f"| cell of {args.second} | vs | seeds | paired difference [95% CI] |\n|---|---|---|---|")
    for r in compare(args.first, args.second):
        print(f"| {r['cell']} | {r['vs']} | {len(r['seeds'])} | {r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] |")


if __name__ == "__main__":
    main()

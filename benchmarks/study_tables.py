"""Print a committed study summary's tables (arms, seed-pooled cells, paired comparisons, SPA rounds) as Markdown.

    python benchmarks/study_tables.py docs/results/study-fair-house-style.json docs/results/study-fair-ifeval.json

Everything comes from the summary file, so the tables in docs/results.md can be
regenerated without the run directories.
"""

from __future__ import annotations

import argparse
import json

from frugalign.report import CELL_COLUMNS, PAIRED_COLUMNS, STUDY_COLUMNS, study_table_markdown


def spa_rounds(arms: list[dict]) -> list[dict]:
    """One row per evaluated SPA round (the last round is the arm's own win rate)."""
    out = []
    for arm in arms:
        spa = arm.get("spa")
        if not spa:
            continue
        for r in spa.get("round_win_rates", []):
            out.append({"arm": f"{arm['arm']} round {r['round']}", "win_rate": r["win_rate"], "ci_low": r["ci_low"],
                        "ci_high": r["ci_high"]})
        out.append({"arm": f"{arm['arm']} round {spa['rounds']} (final)", "win_rate": arm["win_rate"],
                    "ci_low": arm["ci_low"], "ci_high": arm["ci_high"],
                    "agreement_with_gold": spa.get("agreement_with_gold"), "spa_pairs": spa.get("spa_pairs")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summaries", nargs="+")
    args = ap.parse_args()
    for path in args.summaries:
        doc = json.loads(open(path, encoding="utf-8").read())
        arms = doc["arms"]
        for row in arms:  # the interval sits in the win-rate column
            row.setdefault("task", doc["study"]["settings"].get("task"))
        print(f"## {path} (task {arms[0]['task'] if arms else '?'}; CPU {doc['study'].get('cpu')})\n")
        print("baselines: " + ", ".join(f"{k} {v:.3f}" for k, v in doc.get("baselines", {}).items()) + "\n")
        print(study_table_markdown(arms, STUDY_COLUMNS) + "\n")
        print(study_table_markdown(doc["cells"], CELL_COLUMNS) + "\n")
        print(study_table_markdown(doc["paired"], PAIRED_COLUMNS) + "\n")
        rounds = spa_rounds(arms)
        if rounds:
            print(study_table_markdown(rounds, [("arm", "SPA round", "{}"),
                                                ("win_rate", "win rate vs initial [95% CI]", "{:.3f}"),
                                                ("agreement_with_gold", "self-annotation agreement", "{:.3f}"),
                                                ("spa_pairs", "SPA pairs", "{}")]) + "\n")


if __name__ == "__main__":
    main()

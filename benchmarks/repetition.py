"""Share of sampled test responses that repeat a line three or more times, per arm of a study run.

A diagnostic for the fair study (docs/results.md section 2): DPO on a handful of pairs, cycled for the
matched step budget, learns to stack a constraint's marker (a title, "P.S.") instead of answering, and the
gold judge's relevance gate scores such answers 0.

    python benchmarks/repetition.py runs/study-fair-ifeval
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def repeats_a_line(text: str, times: int = 3) -> bool:
    """Whether some non-empty line occurs at least ``times`` times."""
    counts = Counter(line.strip() for line in text.splitlines() if line.strip())
    return bool(counts) and max(counts.values()) >= times


def repetition_rate(responses_jsonl: Path) -> tuple[float, int]:
    """(share of responses that repeat a line, number of responses) in an eval stage's responses.jsonl."""
    texts = [t for line in responses_jsonl.read_text().splitlines() if line.strip()
             for t in json.loads(line)["responses"]]
    return (sum(map(repeats_a_line, texts)) / len(texts) if texts else 0.0), len(texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_dir", type=Path, help="a study's output_dir (runs/study-fair-ifeval)")
    args = ap.parse_args()
    files = [("initial policy", args.study_dir / "shared/eval_initial/responses.jsonl")]
    files += [(p.parent.parent.name, p) for p in sorted(args.study_dir.glob("arms/*/eval_trained/responses.jsonl"))]
    print("| arm | responses repeating a line >= 3 times | responses |\n|---|---|---|")
    for name, path in files:
        if path.exists():
            rate, n = repetition_rate(path)
            print(f"| {name} | {rate:.3f} | {n} |")


if __name__ == "__main__":
    main()

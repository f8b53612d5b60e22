"""The study's numbers: per-arm rows, seed-pooled cells, paired comparisons and ``summary.json``.

An *arm* is one training run (method, budget, strategy, seed, variant); a *cell*
pools an arm's seeds. Every number comes from per-prompt win rates against the
one shared initial-policy evaluation (:mod:`frugalign.paired`), so cells compare
**paired** on the same test prompts and samples:

* each cell: win rate with a bootstrap interval over test base questions (seeds pooled);
* each cell against ``dpo-100`` (DPO on every gold label), against ``dpo-seed``
  at the same budget and strategy (DPO on the same human labels and nothing else),
  and, when its arms trained for another number of steps than ``dpo-100`` (SPA's
  rounds), against a ``dpo-100`` variant trained for exactly as many steps
  (``"baseline": "dpo-100 (same steps)"``): the win-rate difference with a paired
  bootstrap interval;
* each cell: the fraction of DPO-100 %'s gain over ½ that it recovers.

``summary.json`` holds the rows (with their per-prompt win rates), so a study
can be re-analysed, or completed on another machine, without its run
directories; :func:`load_rows` refuses a summary made with other settings or
another shared pool.
"""

from __future__ import annotations

import json
from pathlib import Path

from .data import file_digest, write_json
from .errors import ConfigError
from .paired import base_question, mean_ci, paired_difference, pool_seeds, recovered_fraction
from .pipeline import config_difference

SUMMARY_VERSION = 1
FULL, SEED = "dpo-100", "dpo-seed"


def cell_name(method: str, budget: float, strategy: str, variant: str = "") -> str:
    name = method if method == FULL else f"{method}-b{budget:g}" + (f"-{strategy}" if strategy != "none" else "")
    return name + (f"-{variant}" if variant else "")


def _cell_of(row: dict) -> str:
    return cell_name(row["method"], row["budget"], row["strategy"], row.get("variant", ""))


def shared_fingerprint(shared_dir: Path) -> str:
    """A hash of the shared pool and the initial policy's gold-scored test samples."""
    return file_digest(Path(shared_dir) / "pool" / "pool.jsonl", Path(shared_dir) / "eval_initial" / "responses.jsonl")


def analyse(rows: list[dict], *, seed: int = 0) -> dict:
    """Seed-pooled cells and paired comparisons from arm rows (each with ``prompt_win_rates``)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_cell_of(r), []).append(r)
    prompts = {frozenset(r["prompt_win_rates"]) for r in rows}
    if len(prompts) > 1:  # every arm must be evaluated on the same test prompts, or nothing pairs
        a, b = sorted(prompts, key=len)[:2]
        raise ConfigError(f"the study's arms were evaluated on different test prompts ({len(a ^ b)} differ, e.g. "
                          f"{sorted(a ^ b)[0]!r}): they cannot be compared paired")
    pooled = {name: pool_seeds([r["prompt_win_rates"] for r in members]) for name, members in groups.items()}
    same_steps = _full_cells_by_steps(groups)
    cells, paired = [], []
    for name, members in groups.items():
        first = members[0]
        est = mean_ci(pooled[name], seed=seed)
        cell = {"cell": name, "method": first["method"], "budget": first["budget"], "strategy": first["strategy"],
                "variant": first.get("variant", ""), "seeds": sorted(r["seed"] for r in members),
                "human_labels": sum(r["human_labels"] for r in members) / len(members),
                "win_rate": est.value, "ci_low": est.low, "ci_high": est.high,
                "seed_win_rates": [round(r["win_rate"], 4) for r in sorted(members, key=lambda r: r["seed"])]}
        full = FULL if name != FULL else None
        if full in pooled:
            rec = recovered_fraction(pooled[name], pooled[full], seed=seed)
            cell.update(recovered=rec.value, recovered_ci_low=rec.low, recovered_ci_high=rec.high)
        cells.append(cell)
        steps = {r.get("steps") for r in members}
        matched = same_steps.get(steps.pop()) if len(steps) == 1 else None  # DPO-100 at this cell's steps
        # Baselines, each with its label: DPO-100, DPO on the same labels, DPO-100 at this cell's steps, and for
        # a variant the same method without it. Later keys win where two are one cell (DPO-100 keeps its name).
        seed_cell = cell_name(SEED, first["budget"], first["strategy"])
        plain = cell_name(first["method"], first["budget"], first["strategy"]) if first.get("variant") else None
        baselines = {plain: f"{first['method']} without {first.get('variant')}", matched: f"{FULL} (same steps)",
                     seed_cell: SEED, full: FULL}
        for baseline in dict.fromkeys((full, seed_cell, matched, plain)):
            if baseline in pooled and baseline != name:
                d = paired_difference(pooled[name], pooled[baseline], seed=seed)
                label = baselines[baseline]
                paired.append({"arm": name, "baseline": label, "baseline_cell": baseline,
                               "diff": d.value, "diff_ci_low": d.low, "diff_ci_high": d.high,
                               "seeds": len(members), "prompts": len(pooled[name]),
                               "clusters": len({base_question(k) for k in pooled[name]})})
    return {"cells": cells, "paired": paired}


def _full_cells_by_steps(groups: dict[str, list[dict]]) -> dict[int, str]:
    """Optimizer steps -> a DPO-100 cell (any variant) trained for exactly that many steps in every seed.

    The plain ``dpo-100`` cell wins a tie, so an arm that trains longer than the matched budget (SPA's
    rounds) is also compared with DPO-100 given the same number of steps."""
    out: dict[int, str] = {}
    for name, members in sorted(groups.items(), key=lambda kv: kv[0] != FULL):
        steps = {r.get("steps") for r in members}
        if members[0]["method"] == FULL and len(steps) == 1 and None not in steps:
            out.setdefault(steps.pop(), name)
    return out


def _json_safe(x):
    """NaN (an undefined ratio or interval) becomes null: summary.json stays standard JSON."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def summary_document(meta: dict, rows: list[dict], baselines: dict, *, seed: int = 0) -> dict:
    """The whole ``summary.json``: settings and provenance, arms, cells, paired comparisons."""
    return _json_safe({"version": SUMMARY_VERSION, "study": meta, "baselines": baselines, "arms": rows,
                       **analyse(rows, seed=seed)})


def write_summary(path: str | Path, document: dict) -> Path:
    return write_json(path, document)


def load_rows(path: str | Path, meta: dict, defaults: dict | None = None) -> list[dict]:
    """Arm rows of an earlier summary made with the same settings; [] when there is none yet.

    ``defaults``: the settings' defaults, for settings the summary predates.
    """
    p = Path(path)
    if not p.exists():
        return []
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p}: not a readable study summary ({e})") from None
    if not isinstance(doc, dict) or doc.get("version") != SUMMARY_VERSION or not isinstance(doc.get("arms"), list):
        raise ConfigError(f"{p}: not a frugalign study summary (version {SUMMARY_VERSION})")
    diff = config_difference(doc.get("study", {}).get("settings", {}), meta["settings"], defaults=defaults)
    if diff:
        raise ConfigError(f"{p} was made with other settings ({diff}); use another summary file")
    return doc["arms"]


def merged_grid(path: str | Path, grid: dict) -> dict:
    """This call's grid joined with the grid an existing summary at ``path`` recorded (lists: union in order)."""
    p = Path(path)
    old = json.loads(p.read_text(encoding="utf-8")).get("study", {}).get("grid", {}) if p.exists() else {}
    out = {}
    for key in dict.fromkeys([*old, *grid]):
        a, b = old.get(key), grid.get(key)
        if isinstance(a, dict) or isinstance(b, dict):
            out[key] = {**(a or {}), **(b or {})}
        else:
            out[key] = list(dict.fromkeys([*(a or []), *(b or [])]))
    return out


def check_fingerprint(path: str | Path, rows: list[dict], fingerprint: str) -> None:
    """Arms carried over from a summary must have been evaluated against this very shared pool."""
    if not rows:
        return
    old = json.loads(Path(path).read_text(encoding="utf-8"))["study"].get("shared_fingerprint")
    if old != fingerprint:
        raise ConfigError(f"{path}: its arms used another shared pool (fingerprint {old} vs {fingerprint} here, e.g. "
                          "another precision or CPU); they cannot be paired with new arms: use another summary file")

"""One self-contained HTML report per run: results table, annotator reliability diagram, settings."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from .data import atomic_path
from .plots import rule_rates_png

ROWS = [
    ("task", "task (gold judge)", "{}"),
    ("recipe", "recipe", "{}"),
    ("human_labels", "human labels used", "{:.0f}"),
    ("auto_labels", "automatic labels added (kept by the gate)", "{:.0f}"),
    ("kept_fraction", "share of automatic labels kept by the gate", "{:.3f}"),
    ("agreement_with_gold", "annotator agreement with gold (non-tied pairs)", "{:.3f}"),
    ("kappa", "annotator Cohen's kappa vs gold", "{:.3f}"),
    ("ece", "annotator expected calibration error", "{:.3f}"),
    ("gold_initial", "mean gold score, initial policy", "{:.3f}"),
    ("gold_trained", "mean gold score, trained policy", "{:.3f}"),
    ("win_rate", "gold win rate, trained vs initial (ties ½)", "{:.3f}"),
    ("chosen_step", "optimizer steps kept (chosen on validation)", "{}"),
    ("test_questions", "test base questions (the interval's clusters)", "{:.0f}"),
    ("canned_reply_baseline", "canned format-stuffed reply (gated)", "{:.3f}"),
    ("canned_reply_ungated", "canned reply without the relevance gate", "{:.3f}"),
    ("unrequested_format_initial", "unrequested-format rate, initial", "{:.3f}"),
    ("unrequested_format_trained", "unrequested-format rate, trained", "{:.3f}"),
    ("precision", "training precision", "{}"),
    ("wall_seconds", "wall time (s)", "{:.0f}"),
    ("cpu", "CPU", "{}"),
]


# the interval that goes with a value: run results use win_rate_low/high, study rows ci_low/high
_INTERVALS = {"win_rate": (("win_rate_low", "win_rate_high"), ("ci_low", "ci_high")),
              "diff": (("diff_ci_low", "diff_ci_high"),), "recovered": (("recovered_ci_low", "recovered_ci_high"),)}


def _fmt(result: dict, key: str, pattern: str) -> str:
    value = result.get(key)
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    text = pattern.format(value)
    for low, high in _INTERVALS.get(key, ()):
        if result.get(low) is not None and result[low] == result[low]:
            text += f" [{result[low]:.3f}, {result[high]:.3f}]"
            break
    return text


def results_table_text(result: dict) -> str:
    """The result as aligned text (what `frugalign run` / `demo` print)."""
    lines = [f"{label:48s} {_fmt(result, key, pat)}" for key, label, pat in ROWS if key in result]
    return "\n".join(lines)


def _img(path: Path, alt: str) -> str:
    if not path.exists():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def write_run_report(run_dir: str | Path, result: dict) -> Path:
    """``<run>/report.html`` with the table, the reliability diagram and the settings (atomic write)."""
    run_dir = Path(run_dir)
    if result.get("rules_initial") and result.get("rules_trained"):
        rule_rates_png(result["rules_initial"], result["rules_trained"], run_dir / "rules.png",
                       f"{result.get('task', 'gold')} rules met on the test split")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{html.escape(_fmt(result, key, pat))}</td></tr>"
                   for key, label, pat in ROWS if key in result)
    timings = "".join(f"<tr><td>{html.escape(name)}</td><td>{rec.get('seconds', '–')}</td></tr>"
                      for name, rec in manifest.get("stages", {}).items())
    settings = html.escape(json.dumps(manifest.get("config", {}), indent=2))
    versions = html.escape(json.dumps(manifest.get("versions", {}), indent=2))
    calibration = (_img(run_dir / "annotate" / "reliability.png", "reliability diagram: annotator vs gold")
                   or "<p>no automatic annotator in this run</p>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>frugalign run report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}
img{{max-width:420px}}pre{{background:#f5f5f5;padding:1em;overflow:auto}}</style></head><body>
<h1>frugalign run report</h1><p>run directory: <code>{html.escape(str(run_dir))}</code></p>
<h2>Results</h2><table><tr><th>measure</th><th>value</th></tr>{rows}</table>
<p>Win rate: paired by test prompt and sample, ties count half; the interval is a 95% bootstrap over base
questions (each with all its prompts and samples).</p>
{_img(run_dir / "rules.png", "share of test responses meeting each gold rule, before and after training")}
<h2>Annotator calibration</h2>{calibration}
<h2>Stage timings (seconds)</h2><table>{timings}</table>
<h2>Settings</h2><pre>{settings}</pre><h2>Versions</h2><pre>{versions}</pre></body></html>"""
    out = run_dir / "report.html"
    with atomic_path(out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return out


# ---------------------------------------------------------------- the label-efficiency study
STUDY_COLUMNS = [
    ("arm", "arm", "{}"), ("human_labels", "human labels", "{:.0f}"), ("human_ties", "of them ties", "{:.0f}"),
    ("win_rate", "gold win rate vs initial [95% CI]", "{:.3f}"), ("gold_trained", "mean gold (trained)", "{:.3f}"),
    ("agreement_with_gold", "annotator agreement", "{:.3f}"), ("kept_fraction", "kept by the gate", "{:.2f}"),
    ("steps", "optimizer steps", "{:.0f}"), ("steps_trained", "steps trained (validation chose)", "{:.0f}"),
    ("seconds", "seconds", "{:.0f}"),
]
CELL_COLUMNS = [
    ("cell", "method, budget, strategy", "{}"), ("human_labels", "human labels", "{:.0f}"),
    ("seeds", "seeds", "{}"), ("win_rate", "win rate, seeds pooled [95% CI]", "{:.3f}"),
    ("recovered", "share of DPO-100 %'s gain [95% CI]", "{:.2f}"),
]
PAIRED_COLUMNS = [
    ("arm", "cell", "{}"), ("baseline", "vs", "{}"), ("diff", "win-rate difference, paired [95% CI]", "{:+.3f}"),
    ("seeds", "seeds", "{}"), ("prompts", "test prompts", "{}"), ("clusters", "base questions", "{}"),
]
BASELINE_ROWS = [
    ("gold_initial", "mean gold score, initial policy"),
    ("canned_reply_baseline", "canned format-stuffed reply (gated)"),
    ("canned_reply_ungated", "canned reply without the relevance gate"),
    ("unrequested_format_initial", "unrequested-format rate, initial policy"),
]


def _cell(row: dict, key: str, pattern: str) -> str:
    value = row.get(key)
    if isinstance(value, list):
        return str(len(value))
    return _fmt(row, key, pattern) if pattern != "{}" else ("–" if value is None else str(value))


def study_table_markdown(rows: list[dict], columns=None) -> str:
    """A Markdown table of study rows (arms, cells or paired comparisons)."""
    columns = columns or STUDY_COLUMNS
    head = "| " + " | ".join(label for _, label, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(r, k, p) for k, _, p in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def _html_table(rows: list[dict], columns) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r, k, p))}</td>" for k, _, p in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


STUDY_NOTE = ("Win rate: trained policy vs the initial policy on the held-out test split, over every pair of their "
              "samples of a prompt (ties ½); intervals are 95% bootstrap intervals over test base questions (each "
              "with all its prompts and samples), seeds pooled "
              "by averaging each prompt's win rate. Differences are paired: the same prompts and initial samples, "
              "resampled together. Agreement: the automatic annotator against gold on the non-tied pairs it labelled.")


def write_study_report(study_dir: str | Path, summary: dict) -> tuple[Path, Path]:
    """``report.html`` (tables, curve, settings) and ``results.md`` in the study dir (atomic writes)."""
    study_dir = Path(study_dir)
    arms, cells, paired, base = summary["arms"], summary["cells"], summary["paired"], summary.get("baselines", {})
    base_rows = [(label, base.get(key)) for key, label in BASELINE_ROWS if base.get(key) is not None]
    settings = json.dumps(summary.get("study", {}), indent=2)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>frugalign label-efficiency study</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}
img{{max-width:640px}}figure{{display:inline-block}}pre{{background:#f5f5f5;padding:1em;overflow:auto}}</style></head><body>
<h1>frugalign label-efficiency study</h1><p>study directory: <code>{html.escape(str(study_dir))}</code></p>
<h2>Methods (seeds pooled)</h2>{_html_table(cells, CELL_COLUMNS)}
<h2>Paired comparisons</h2>{_html_table(paired, PAIRED_COLUMNS)}<p>{html.escape(STUDY_NOTE)}</p>
<h2>Label-efficiency curve</h2>{_img(study_dir / "curve.png", "gold win rate vs human labels, one line per method")}
<h2>Results per arm</h2>{_html_table(arms, STUDY_COLUMNS)}
<h2>Baselines (shared test split)</h2><table>{"".join(f"<tr><td>{html.escape(name)}</td><td>{v:.3f}</td></tr>" for name, v in base_rows)}</table>
<h2>Settings</h2><pre>{html.escape(settings)}</pre></body></html>"""
    out = study_dir / "report.html"
    with atomic_path(out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    md = ["# frugalign label-efficiency study", "", f"Study directory: `{study_dir}`", "",
          "## Methods (seeds pooled)", "", study_table_markdown(cells, CELL_COLUMNS), "",
          "## Paired comparisons", "", study_table_markdown(paired, PAIRED_COLUMNS), "", STUDY_NOTE, "",
          "## Label-efficiency curve", "", "![label-efficiency curve](curve.png)", "",
          "## Results per arm", "", study_table_markdown(arms), "",
          "## Baselines", "", *[f"- {label}: {v:.3f}" for label, v in base_rows], ""]
    md_path = study_dir / "results.md"
    with atomic_path(md_path) as tmp:
        Path(tmp).write_text("\n".join(md), encoding="utf-8")
    return out, md_path

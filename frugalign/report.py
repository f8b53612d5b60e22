"""One self-contained HTML report per run: results table, annotator reliability diagram, settings."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from .data import atomic_path

ROWS = [
    ("human_labels", "human labels used", "{:.0f}"),
    ("agreement_with_gold", "annotator agreement with gold (non-tied pairs)", "{:.3f}"),
    ("kappa", "annotator Cohen's kappa vs gold", "{:.3f}"),
    ("ece", "annotator expected calibration error", "{:.3f}"),
    ("gold_initial", "mean gold score, initial policy", "{:.3f}"),
    ("gold_trained", "mean gold score, trained policy", "{:.3f}"),
    ("win_rate", "gold win rate, trained vs initial (ties ½)", "{:.3f}"),
    ("canned_reply_baseline", "canned format-stuffed reply (gated)", "{:.3f}"),
    ("canned_reply_ungated", "canned reply without the relevance gate", "{:.3f}"),
    ("unrequested_format_initial", "unrequested-format rate, initial", "{:.3f}"),
    ("unrequested_format_trained", "unrequested-format rate, trained", "{:.3f}"),
]


def _fmt(result: dict, key: str, pattern: str) -> str:
    value = result.get(key)
    if value is None:
        return "–"
    text = pattern.format(value)
    if key == "win_rate" and "win_rate_low" in result:
        text += f" [{result['win_rate_low']:.3f}, {result['win_rate_high']:.3f}]"
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
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{html.escape(_fmt(result, key, pat))}</td></tr>"
                   for key, label, pat in ROWS if key in result)
    timings = "".join(f"<tr><td>{html.escape(name)}</td><td>{rec.get('seconds', '–')}</td></tr>"
                      for name, rec in manifest.get("stages", {}).items())
    settings = html.escape(json.dumps(manifest.get("config", {}), indent=2))
    versions = html.escape(json.dumps(manifest.get("versions", {}), indent=2))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>frugalign run report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}
img{{max-width:420px}}pre{{background:#f5f5f5;padding:1em;overflow:auto}}</style></head><body>
<h1>frugalign run report</h1><p>run directory: <code>{html.escape(str(run_dir))}</code></p>
<h2>Results</h2><table><tr><th>measure</th><th>value</th></tr>{rows}</table>
<p>Win rate: paired by test prompt and sample, ties count half; the interval is a 95% bootstrap over prompts.</p>
<h2>Annotator calibration</h2>{_img(run_dir / "annotate" / "reliability.png", "reliability diagram: annotator vs gold") or "<p>no automatic annotator in this run</p>"}
<h2>Stage timings (seconds)</h2><table>{timings}</table>
<h2>Settings</h2><pre>{settings}</pre><h2>Versions</h2><pre>{versions}</pre></body></html>"""
    out = run_dir / "report.html"
    with atomic_path(out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return out

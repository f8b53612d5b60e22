"""Figures, written atomically as PNG with matplotlib's Agg canvas (no pyplot global state).

Kept apart from the numbers they draw (:mod:`frugalign.metrics`, :mod:`frugalign.paired`): a reliability
diagram of an annotator, a run's gold rules before and after training, a study's label-efficiency curve.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .metrics import ReliabilityBin


def reliability_diagram_png(
    bins: Sequence[ReliabilityBin], path: str | os.PathLike[str], title: str = ""
) -> str:
    """Write a reliability diagram (accuracy per confidence bin) as a PNG.

    Uses the Agg canvas directly (no pyplot global state) and writes to a
    temporary file in the target directory, then ``os.replace``s it, so a
    reader never sees a half-written image. Returns the final path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = os.fspath(path)
    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    full = [b for b in bins if b.count > 0]
    width = [b.upper - b.lower for b in full]
    ax.bar([b.lower for b in full], [b.accuracy for b in full], width=width,
           align="edge", edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.plot([b.mean_confidence for b in full], [b.accuracy for b in full], "o",
            color="crimson", label="(mean confidence, accuracy)")
    for b in full:  # counts show which bars rest on few examples
        ax.annotate(str(b.count), (b.lower + (b.upper - b.lower) / 2, b.accuracy),
                    ha="center", va="bottom", fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="confidence", ylabel="accuracy",
           title=title)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    target_dir = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=target_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def rule_rates_png(before: dict, after: dict, path: str | Path, title: str = "gold rules met") -> Path:
    """Grouped bars: share of test responses meeting each rule, initial vs trained policy (atomic write)."""
    import os

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = sorted(before, key=lambda k: (-abs(after.get(k, 0) - before[k]), k))[:12]
    fig = Figure(figsize=(max(4.5, 1.1 * len(names) + 2), 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [before[n] for n in names], width=0.4, label="initial policy", color="#999")
    ax.bar([i + 0.2 for i in x], [after.get(n, 0) for n in names], width=0.4, label="trained policy", color="#2a7")
    ax.set_xticks(list(x), [n.split(":")[-1] for n in names], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of test responses")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    return path


def _series_label(cell: dict) -> str:
    label = cell["method"] if cell["strategy"] in ("all", "none") else f"{cell['method']} ({cell['strategy']})"
    return label + (f" [{cell['variant']}]" if cell.get("variant") else "")


def label_efficiency_curve_png(cells: list[dict], path: str | Path, *, total_labels: int | None = None,
                               title: str = "label efficiency") -> Path:
    """Win rate vs human labels, one line per method (and strategy), 95% intervals as error bars."""
    import os

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, list[dict]] = {}
    for c in cells:
        series.setdefault(_series_label(c), []).append(c)
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, pts in sorted(series.items()):
        pts = sorted(pts, key=lambda c: c["human_labels"])
        x = [c["human_labels"] for c in pts]
        y = [c["win_rate"] for c in pts]
        err = [[max(0.0, c["win_rate"] - c["ci_low"]) for c in pts], [max(0.0, c["ci_high"] - c["win_rate"]) for c in pts]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label, linestyle="-" if len(pts) > 1 else "none")
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("human labels (labelled pairs)" + (f", of {total_labels} candidate pairs" if total_labels else ""))
    ax.set_ylabel("gold win rate vs initial policy")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path



"""The evaluation report's charts: before/after bars of the [0, 1] scores and the latency histogram.

Drawn on a bare matplotlib ``Figure`` with the Agg canvas (no pyplot global state), as the
training plots in ``observe/plots.py`` are. Each function returns None and writes nothing when it
has nothing to draw, so the report simply leaves the image out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tuneforge.evaluate.report_tables import PerModel, fmt, is_number

# Metrics with these names are not scores in [0, 1] even when a value happens to fall there (a loss
# of 0.8); charting them beside accuracies would suggest a comparison that means nothing.
_UNBOUNDED_NAME = re.compile(r"(loss|perplexity|ppl|_s$|seconds|tokens_per|latency|memory|bytes)", re.IGNORECASE)


def bounded_metrics(models: PerModel) -> list[str]:
    """Metrics that are scores in [0, 1] for every model that reports them."""
    names: list[str] = []
    for values in models.values():
        names += [m for m in values if m not in names]
    bounded = []
    for name in names:
        present = [v[name] for v in models.values() if name in v]
        if _UNBOUNDED_NAME.search(name):
            continue
        if all(is_number(x) and math.isfinite(x) and 0.0 <= x <= 1.0 for x in present):
            bounded.append(name)
    return bounded


def plot_bounded_metrics(models: PerModel, out_png: Path) -> Path | None:
    """Grouped bars, one group per [0, 1] metric, one bar per model; None when there is nothing to draw."""
    metrics = bounded_metrics(models)
    if not metrics:
        return None
    figure = Figure(figsize=(max(5.0, 1.2 * len(metrics) * max(1, len(models)) + 2), 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(models)
    for index, (name, values) in enumerate(models.items()):
        positions = [i + (index - (len(models) - 1) / 2) * width for i in range(len(metrics))]
        heights = [float(values.get(m, math.nan)) for m in metrics]
        bars = axes.bar(positions, heights, width=width, label=name)
        axes.bar_label(bars, labels=[fmt(h) if math.isfinite(h) else "" for h in heights], fontsize=8, padding=2)
    axes.set_xticks(range(len(metrics)), metrics, rotation=20 if len(metrics) > 4 else 0)
    axes.set_ylim(0, 1.12)
    axes.set_ylabel("score")
    axes.grid(True, axis="y", alpha=0.3)
    figure.legend(loc="outside upper center", ncols=len(models), frameon=False)  # never covers a bar
    figure.savefig(out_png, format="png")
    return out_png


def plot_latency_histogram(latencies: Mapping[str, Sequence[Any]], out_png: Path) -> Path | None:
    """Per-request latency, one translucent histogram per model on shared bins; None without data."""
    series = {
        str(name): [float(x) for x in values if is_number(x) and math.isfinite(x)]
        for name, values in latencies.items()
        if isinstance(values, Sequence) and not isinstance(values, str)
    }
    series = {name: values for name, values in series.items() if values}
    if not series:
        return None
    low = min(min(v) for v in series.values())
    high = max(max(v) for v in series.values())
    n_bins = max(5, min(40, int(math.sqrt(max(len(v) for v in series.values()))) * 2))
    if high <= low:  # every request took the same time (one batch): a narrow bin around it, not a 1 s axis
        low, high = low - max(abs(low) * 0.05, 1e-3), high + max(abs(high) * 0.05, 1e-3)
    step = (high - low) / n_bins
    bins = [low + i * step for i in range(n_bins + 1)]
    figure = Figure(figsize=(7, 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, values in series.items():
        axes.hist(values, bins=bins, alpha=0.5, label=f"{name} ({len(values)} requests)")
    axes.set_xlabel("latency per request (s)")
    axes.set_ylabel("requests")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # requests are counted, not measured
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend()
    figure.savefig(out_png, format="png")
    return out_png

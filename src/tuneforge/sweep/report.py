"""The sweep's summary: ``trials.md`` (one row per trial) and ``trials.png`` (value per trial, best so far).

Drawn on a bare matplotlib Figure with the Agg canvas, as observe/plots.py does, so it works without a
display and off the main thread.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

TABLE_FILE = "trials.md"
PLOT_FILE = "trials.png"


def _value(row: dict) -> str:
    return f"{row['value']:.6g}" if "value" in row else "-"


def trials_table(rows: list[dict], metric: str, best_trial: int | None) -> str:
    """A Markdown table: trial, state, the metric, every searched key; the best trial marked."""
    keys = list(dict.fromkeys(k for row in rows for k in row.get("params", {})))
    lines = [f"| trial | state | {metric} | " + " | ".join(keys) + " |", "| ---: | --- | ---: |" + " --- |" * len(keys)]
    for row in rows:
        params = row.get("params", {})
        mark = " (best)" if row["trial"] == best_trial else ""
        cells = [f"{params[k]:.4g}" if isinstance(params.get(k), float) else str(params.get(k, "")) for k in keys]
        lines.append(f"| {row['trial']}{mark} | {row.get('state', '?')} | {_value(row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_trials(rows: list[dict], metric: str, minimise: bool, path: Path) -> None:
    """Each completed trial's value and the best value so far, by trial number."""
    done = [(row["trial"], row["value"]) for row in rows if row.get("state") == "complete" and "value" in row]
    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if done:
        xs, ys = zip(*done)
        best, running = [], None
        for y in ys:
            running = y if running is None else (min(running, y) if minimise else max(running, y))
            best.append(running)
        ax.plot(xs, ys, "o", label=metric)
        ax.step(xs, best, where="post", label="best so far")
        ax.legend()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers, not 0.5 steps
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(f"sweep: {len(done)} completed of {len(rows)} trials")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_report(out: Path, rows: list[dict], metric: str, minimise: bool, best_trial: int | None) -> None:
    (out / TABLE_FILE).write_text(trials_table(rows, metric, best_trial), encoding="utf-8")
    plot_trials(rows, metric, minimise, out / PLOT_FILE)

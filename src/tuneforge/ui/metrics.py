"""Live training curves for the Train tab, read from the run's ``metrics.jsonl`` (the run dir contract).

The UI never talks to the training process: it reads the file the run appends one JSON row to at
every logging step (train/callbacks.py ``MetricsLogger``), so a run started from a terminal shows
the same way as one started from the browser, and reading a half-written last line is harmless.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: figures are rendered to PNG by gradio
import matplotlib.pyplot as plt  # noqa: E402 - after the backend choice
from matplotlib.figure import Figure  # noqa: E402

from tuneforge.runs import METRICS_FILE  # noqa: E402

# The plain progress line train/callbacks.py RichProgress prints when stderr is not a terminal.
_STEP_LINE = re.compile(r"step (\d+)/(\d+) loss")


@dataclass
class Curves:
    """The series the Train tab plots, by optimizer step."""

    loss: list[tuple[int, float]] = field(default_factory=list)
    eval_loss: list[tuple[int, float]] = field(default_factory=list)
    learning_rate: list[tuple[int, float]] = field(default_factory=list)
    tokens_per_s: list[tuple[int, float]] = field(default_factory=list)
    last_step: int = 0
    last_epoch: float = 0.0
    events: list[str] = field(default_factory=list)  # nonfinite rows, shown as text


def read_curves(run_dir: str | Path) -> Curves:
    """Parse ``RUN/metrics.jsonl``; a missing file is an empty run, an unparsable line is skipped."""
    curves = Curves()
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return curves
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the line the run is writing right now
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            continue
        step = row["step"]
        curves.last_step = max(curves.last_step, step)
        curves.last_epoch = max(curves.last_epoch, float(row.get("epoch") or 0.0))
        if "nonfinite" in row:
            curves.events.append(f"step {step}: non-finite {row['nonfinite']} ({row.get('action')})")
            continue
        for key, series in (("loss", curves.loss), ("eval_loss", curves.eval_loss), ("learning_rate", curves.learning_rate), ("tokens_per_s", curves.tokens_per_s)):
            value = row.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                series.append((step, float(value)))
    return curves


def total_steps(log_text: str, curves: Curves, max_steps: int | None, epochs: float | None) -> int | None:
    """How many steps the run will take: from its progress line, else the recipe, else the epoch rate.

    The progress line (``step 4/12 loss ...``) carries the Trainer's own count; before the first one is
    logged, a recipe's ``training.max_steps`` is exact, and with epochs the steps-per-epoch seen so far
    gives an estimate.
    """
    found = _STEP_LINE.findall(log_text or "")
    if found:
        return int(found[-1][1])
    if max_steps:
        return max_steps
    if epochs and curves.last_epoch > 0 and curves.last_step > 0:
        return max(curves.last_step, round(curves.last_step * epochs / curves.last_epoch))
    return None


def progress_text(curves: Curves, total: int | None, status: str) -> str:
    """One Markdown line: status, step count, a text progress bar, the latest loss."""
    step = curves.last_step
    if total:
        done = min(1.0, step / total)
        bar = "█" * round(20 * done) + "░" * (20 - round(20 * done))
        where = f"step {step}/{total} `{bar}` {100 * done:.0f}%"
    else:
        where = f"step {step}"
    loss = f", loss {curves.loss[-1][1]:.4f}" if curves.loss else ""
    tps = f", {curves.tokens_per_s[-1][1]:,.0f} tokens/s" if curves.tokens_per_s else ""
    events = "".join(f"\n\n⚠ {e}" for e in curves.events)
    return f"**{status}**: {where}{loss}{tps}{events}"


def curves_figure(curves: Curves) -> Figure:
    """Loss (train and validation), learning rate and tokens/s against the step, side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), layout="constrained")
    panels = (
        ("loss", [(curves.loss, "train"), (curves.eval_loss, "validation")]),
        ("learning rate", [(curves.learning_rate, "lr")]),
        ("tokens / s", [(curves.tokens_per_s, "tokens/s")]),
    )
    for ax, (title, series) in zip(axes, panels, strict=True):
        for points, label in series:
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if title == "loss" and curves.eval_loss:
            ax.legend()
    plt.close(fig)  # gradio renders the figure object; pyplot must not keep it alive
    return fig

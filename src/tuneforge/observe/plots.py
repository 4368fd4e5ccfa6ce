"""Loss and reward curves from a run's ``metrics.jsonl``.

The plot is drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas rather than through
``pyplot``: pyplot keeps global state and picks a GUI backend, which breaks in threads (a
training callback, any caller that is not the main thread) and on machines without a display.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tuneforge.errors import DataError


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read ``metrics.jsonl``: one JSON object per line, blank lines ignored.

    A last line without a newline that does not parse is skipped, not an error: it is the line the
    trainer is writing right now, and plotting a live run must not fail because of it. Any other bad
    line is reported with its line number.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataError(f"metrics file {path} does not exist", "point to the metrics.jsonl inside a run directory") from exc
    lines = text.split("\n")
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            is_partial_tail = number == len(lines) and not text.endswith("\n")
            if is_partial_tail:
                continue
            raise DataError(
                f"{path}:{number}: not valid JSON ({exc.msg})", "each line of metrics.jsonl must be one JSON object"
            ) from exc
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def plot_loss(metrics_jsonl: Path, out_png: Path) -> Path | None:
    """Plot training and validation loss against step into ``out_png``.

    Training loss comes from rows with ``loss`` and ``step``, validation loss from rows with
    ``eval_loss`` and ``step``. Returns None and writes nothing when there is no loss to show, so a
    report can simply leave the section out.
    """
    rows = read_metrics(metrics_jsonl)
    train = _series(rows, "loss")
    valid = _series(rows, "eval_loss")
    if not train and not valid:
        return None

    figure = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train), label="train loss", linewidth=1.2)
    if valid:
        # Evaluations are sparse, so markers make single points visible.
        axes.plot(*zip(*valid), label="validation loss", marker="o", linewidth=1.2)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(True, alpha=0.3)
    axes.legend()

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, format="png")
    return out_png


def plot_rewards(metrics_jsonl: Path, out_png: Path) -> Path | None:
    """Plot an online-RL run's mean reward per step (each named reward's mean beside it) into ``out_png``;
    with a ``kl`` series (ppo, grpo with beta > 0) a second panel shows the KL to the reference.

    Returns None and writes nothing when the run logged no ``reward/mean`` (an sft run, say).
    """
    rows = read_metrics(metrics_jsonl)
    total = _series(rows, "reward/mean")
    if not total:
        return None
    named = sorted({k for row in rows for k in row if k.startswith("reward/") and k.endswith("/mean") and k != "reward/mean"})
    kl = _series(rows, "kl")
    figure = Figure(figsize=(11 if kl else 7, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 2 if kl else 1, 1)
    axes.plot(*zip(*total), label="total (weighted, penalties included)", linewidth=1.8)
    for key in named:
        points = _series(rows, key)
        if points:
            axes.plot(*zip(*points), label=key.removeprefix("reward/").removesuffix("/mean"), linewidth=1.0, alpha=0.8)
    axes.set_xlabel("step")
    axes.set_ylabel("mean reward of the step's samples")
    axes.grid(True, alpha=0.3)
    axes.legend()
    if kl:
        right = figure.add_subplot(1, 2, 2)
        right.plot(*zip(*kl), color="tab:orange", linewidth=1.2)
        right.set_xlabel("step")
        right.set_ylabel("KL to the reference")
        right.grid(True, alpha=0.3)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, format="png")
    return out_png


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(step, value) pairs for rows that have both as finite numbers, sorted by step.

    Non-finite losses (a diverged step logs NaN) cannot be drawn; they are left out rather than
    breaking the axis scale, and divergence is reported by the training monitor, not by this plot.
    """
    points = [
        (float(row["step"]), float(row[key]))
        for row in rows
        if _is_number(row.get("step")) and _is_number(row.get(key))
    ]
    return sorted(points)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

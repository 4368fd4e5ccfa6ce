"""Before/after evaluation report: ``report.md`` for the repository, ``report.html`` to share.

The HTML file is self-contained (images as base64 data URIs, inline CSS, no scripts, no network)
so it can be mailed, attached to a ticket or opened from an air-gapped machine and look the same.
Every piece of model output is HTML-escaped: generations are untrusted text and a model that
learned to write ``<script>`` must not be able to run it in the reader's browser.

The report is plain string building on purpose; a template engine would be one more dependency for
two short documents.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tuneforge.errors import DataError
from tuneforge.observe.plots import plot_loss

# Metrics with these names are not scores in [0, 1] even when a value happens to fall there (a loss
# of 0.8); charting them beside accuracies would suggest a comparison that means nothing.
_UNBOUNDED_NAME = re.compile(r"(loss|perplexity|ppl|_s$|seconds|tokens_per|latency|memory|bytes)", re.IGNORECASE)


@dataclass(frozen=True)
class _Table:
    """A rendered-to-strings table, shared by the Markdown and HTML writers."""

    header: list[str]
    rows: list[list[str]]
    numeric: bool = True  # right-align every column after the first, as numbers are read


@dataclass(frozen=True)
class _Sample:
    """One prompt and the texts shown side by side under it: (column title, text)."""

    prompt: str
    columns: list[tuple[str, str]]


@dataclass(frozen=True)
class _ReportParts:
    """Everything a report shows, computed once and rendered twice (Markdown and HTML)."""

    headline: str | None
    facts: list[tuple[str, str]]
    metrics: _Table
    timings: _Table | None
    images: list[tuple[str, Path]]
    samples: list[_Sample]


def write_report(out_dir: Path, results: dict[str, Any], *, metrics_jsonl: Path | None = None) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and their PNGs into ``out_dir``; return (md, html) paths.

    The first model in ``results["models"]`` is read as "before" and the second as "after", which is
    how the evaluation code orders them (base first); with exactly two models the report shows the
    change, with any other number it lists the values side by side.
    """
    out_dir = Path(out_dir)
    models = _models(results)
    out_dir.mkdir(parents=True, exist_ok=True)

    images: list[tuple[str, Path]] = []
    metrics_png = _plot_bounded_metrics(models, out_dir / "metrics.png")
    if metrics_png is not None:
        images.append(("Scores in [0, 1] per model", metrics_png))
    if metrics_jsonl is not None:
        loss_png = plot_loss(Path(metrics_jsonl), out_dir / "loss.png")
        if loss_png is not None:
            images.append(("Training and validation loss", loss_png))

    timings = _timings(results)
    parts = _ReportParts(
        headline=_headline(results.get("task_metric"), models),
        facts=_facts(results, models),
        metrics=_metric_table(models),
        timings=_metric_table(timings) if timings else None,
        images=images,
        samples=_samples(results, list(models)),
    )
    md_path = out_dir / "report.md"
    html_path = out_dir / "report.html"
    md_path.write_text(_render_markdown(parts, out_dir), encoding="utf-8")
    html_path.write_text(_render_html(parts), encoding="utf-8")
    return md_path, html_path


# ---------------------------------------------------------------------------------------------------
# Reading the results


def _models(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-model metric dicts, checked, because a hand-edited results file is common."""
    models = results.get("models")
    if not isinstance(models, Mapping) or not models:
        raise DataError(
            "evaluation results have no 'models' section",
            "expected {'models': {'base': {...metrics}, 'tuned': {...}}}, as written by the evaluation step",
        )
    for name, metrics in models.items():
        if not isinstance(metrics, Mapping):
            raise DataError(f"evaluation results: metrics of model {name!r} are not a mapping of name -> value")
    return {str(name): dict(metrics) for name, metrics in models.items()}


def _timings(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    timings = results.get("timings") or {}
    return {str(name): dict(values) for name, values in timings.items() if isinstance(values, Mapping)}


def _facts(results: Mapping[str, Any], models: Mapping[str, Any]) -> list[tuple[str, str]]:
    facts = [("models", ", ".join(models))]
    if results.get("data") is not None:
        facts.append(("data", str(results["data"])))
    if results.get("n_examples") is not None:
        facts.append(("examples", str(results["n_examples"])))
    if results.get("task_metric"):
        facts.append(("task metric", str(results["task_metric"])))
    return facts


def _samples(results: Mapping[str, Any], model_names: list[str]) -> list[_Sample]:
    """Samples with the reference first and then each model's output, in the metrics' model order."""
    samples = []
    for sample in results.get("samples") or []:
        outputs = sample.get("outputs") or {}
        names = model_names + [str(n) for n in outputs if n not in model_names]
        columns = [("reference", str(sample.get("reference", "")))]
        columns += [(name, str(outputs.get(name, ""))) for name in names]
        samples.append(_Sample(prompt=str(sample.get("prompt", "")), columns=columns))
    return samples


# ---------------------------------------------------------------------------------------------------
# Numbers


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value: Any) -> str:
    """Four significant digits: enough to see a change, short enough to read in a table."""
    if value is None:
        return "n/a"
    if not _is_number(value):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def _fmt_change(before: Any, after: Any) -> str:
    """Signed difference, blank when either side is missing or not a number."""
    if not (_is_number(before) and _is_number(after)):
        return ""
    change = after - before
    if isinstance(change, int):
        return f"{change:+,}"
    if not math.isfinite(change):
        return str(change)
    return f"{change:+,.1f}" if abs(change) >= 1000 else f"{change:+.4g}"


def _headline(task_metric: str | None, models: Mapping[str, Mapping[str, Any]]) -> str | None:
    """E.g. ``json_fields: 0.04 -> 0.93`` for a before/after pair: the one number a reader wants."""
    if not task_metric:
        return None
    values = [metrics.get(task_metric) for metrics in models.values()]
    if len(values) == 1:
        return f"{task_metric}: {_fmt(values[0])} ({next(iter(models))})"
    if len(values) == 2:
        return f"{task_metric}: {_fmt(values[0])} -> {_fmt(values[1])}"
    return f"{task_metric}: " + ", ".join(f"{name} {_fmt(v)}" for name, v in zip(models, values))


def _metric_table(models: Mapping[str, Mapping[str, Any]]) -> _Table:
    """One row per metric (in first-seen order), one column per model, plus the change for a pair."""
    names = list(models)
    metrics: list[str] = []
    for values in models.values():
        metrics += [m for m in values if m not in metrics]
    with_change = len(names) == 2
    header = ["metric", *names] + ([f"change ({names[1]} - {names[0]})"] if with_change else [])
    rows = []
    for metric in metrics:
        row = [metric] + [_fmt(models[n].get(metric)) for n in names]
        if with_change:
            row.append(_fmt_change(models[names[0]].get(metric), models[names[1]].get(metric)))
        rows.append(row)
    return _Table(header, rows)


# ---------------------------------------------------------------------------------------------------
# Chart


def _bounded_metrics(models: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Metrics that are scores in [0, 1] for every model that reports them."""
    names: list[str] = []
    for values in models.values():
        names += [m for m in values if m not in names]
    bounded = []
    for name in names:
        present = [v[name] for v in models.values() if name in v]
        if _UNBOUNDED_NAME.search(name):
            continue
        if all(_is_number(x) and math.isfinite(x) and 0.0 <= x <= 1.0 for x in present):
            bounded.append(name)
    return bounded


def _plot_bounded_metrics(models: Mapping[str, Mapping[str, Any]], out_png: Path) -> Path | None:
    """Grouped bars, one group per [0, 1] metric, one bar per model; None when there is nothing to draw."""
    metrics = _bounded_metrics(models)
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
        axes.bar_label(bars, labels=[_fmt(h) if math.isfinite(h) else "" for h in heights], fontsize=8, padding=2)
    axes.set_xticks(range(len(metrics)), metrics, rotation=20 if len(metrics) > 4 else 0)
    axes.set_ylim(0, 1.12)
    axes.set_ylabel("score")
    axes.grid(True, axis="y", alpha=0.3)
    figure.legend(loc="outside upper center", ncols=len(models), frameon=False)  # never covers a bar
    figure.savefig(out_png, format="png")
    return out_png


# ---------------------------------------------------------------------------------------------------
# Markdown


def _md_text(text: str) -> str:
    """Neutralise HTML in Markdown (renderers pass raw HTML through); ``&`` and ``<`` are enough."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _md_cell(text: str) -> str:
    """Escape for a Markdown table cell: HTML, the column separator, and line breaks."""
    return _md_text(text).replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")


def _md_table(table: _Table) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in table.header) + " |"]
    align = "---:" if table.numeric else "---"
    lines.append("|" + "|".join(["---"] + [align] * (len(table.header) - 1)) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return lines


def _md_fenced(text: str) -> list[str]:
    """A code block whose fence is longer than any backtick run inside, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", text, fence]


def _render_markdown(parts: _ReportParts, out_dir: Path) -> str:
    lines = ["# Evaluation report", ""]
    if parts.headline:
        lines += [f"**{_md_cell(parts.headline)}**", ""]
    lines += [f"- {name}: {_md_cell(value)}" for name, value in parts.facts] + [""]
    lines += ["## Metrics", "", *_md_table(parts.metrics), ""]
    if parts.timings is not None:
        lines += ["## Timings", "", *_md_table(parts.timings), ""]
    for caption, path in parts.images:
        lines += [f"## {caption}", "", f"![{caption}]({path.relative_to(out_dir).as_posix()})", ""]
    if parts.samples:
        lines += ["## Sample generations", ""]
    for number, sample in enumerate(parts.samples, start=1):
        table = _Table([title for title, _ in sample.columns], [[text for _, text in sample.columns]], numeric=False)
        lines += [f"### Sample {number}", "", "Prompt:", "", *_md_fenced(sample.prompt), ""]
        lines += _md_table(table) + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 70rem;
       padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
.headline { font-size: 1.6rem; font-weight: 600; margin: 0.5rem 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.7rem; vertical-align: top; }
th { background: #f6f8fa; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.samples { width: 100%; table-layout: fixed; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; font-size: 0.85rem; }
pre.prompt { background: #f6f8fa; padding: 0.6rem; border-radius: 6px; }
img { max-width: 100%; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.1rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; }
"""


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _html_table(table: _Table) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + f"<td>{_esc(row[0])}</td>" + "".join(f'<td class="num">{_esc(c)}</td>' for c in row[1:]) + "</tr>"
        for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _html_sample(number: int, sample: _Sample) -> str:
    head = "".join(f"<th>{_esc(title)}</th>" for title, _ in sample.columns)
    cells = "".join(f"<td><pre>{_esc(text)}</pre></td>" for _, text in sample.columns)
    return (
        f"<section><h3>Sample {number}</h3>"
        f'<pre class="prompt">{_esc(sample.prompt)}</pre>'
        f'<table class="samples"><thead><tr>{head}</tr></thead><tbody><tr>{cells}</tr></tbody></table></section>'
    )


def _render_html(parts: _ReportParts) -> str:
    body = ["<h1>Evaluation report</h1>"]
    if parts.headline:
        body.append(f'<p class="headline">{_esc(parts.headline)}</p>')
    body.append("<dl>" + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in parts.facts) + "</dl>")
    body += ["<h2>Metrics</h2>", _html_table(parts.metrics)]
    if parts.timings is not None:
        body += ["<h2>Timings</h2>", _html_table(parts.timings)]
    for caption, path in parts.images:
        body += [f"<h2>{_esc(caption)}</h2>", f'<img alt="{_esc(caption)}" src="{_data_uri(path)}">']
    if parts.samples:
        body.append("<h2>Sample generations</h2>")
        body += [_html_sample(n, s) for n, s in enumerate(parts.samples, start=1)]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>Evaluation report</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )

"""The data report: Markdown + HTML with PNG plots of lengths and category balance before/after.

Plots use a bare matplotlib ``Figure`` with the Agg canvas (no pyplot global state), as the
training plots do.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tuneforge.datatools.stats import Stats
from tuneforge.datatools.trace import Trace


def plot_lengths(before: Stats, after: Stats, path: Path) -> Path:
    fig = Figure(figsize=(7, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    values = [v for v in before.lengths + after.lengths]
    top = max(values) if values else 1
    bins = list(range(0, top + max(1, top // 40) + 1, max(1, top // 40)))
    ax.hist(before.lengths, bins=bins, alpha=0.5, label=f"before ({before.rows} rows)")
    ax.hist(after.lengths, bins=bins, alpha=0.5, label=f"after ({after.rows} rows)")
    ax.set_xlabel("characters per example")
    ax.set_ylabel(
        "rows" + (" (sample)" if max(before.rows, after.rows) > before.keep else "")
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_balance(before: Stats, after: Stats, path: Path) -> Path:
    cats = sorted(set(before.categories) | set(after.categories))
    fig = Figure(figsize=(max(5, 0.8 * len(cats) + 2), 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = range(len(cats))
    ax.bar(
        [i - 0.2 for i in x],
        [before.categories[c] for c in cats],
        width=0.4,
        label="before",
    )
    ax.bar(
        [i + 0.2 for i in x],
        [after.categories[c] for c in cats],
        width=0.4,
        label="after",
    )
    ax.set_xticks(list(x))
    ax.set_xticklabels(cats, rotation=30, ha="right")
    ax.set_ylabel(f"rows per {before.category_field}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def default_report_dir(output: str | Path) -> Path:
    """``OUT-report/`` next to ``OUT``: where a command's report and trace go without ``--report``."""
    output = Path(output)
    return output.with_name(output.stem + "-report")


def write_report(
    out_dir: str | Path,
    title: str,
    before: Stats,
    after: Stats,
    trace: Trace,
    info: dict | None = None,
) -> dict[str, Path]:
    """Write report.md, report.html, report.json, lengths.png (and balance.png with a category field).

    Returns their paths. The Markdown and the HTML say the same in the same order; the JSON is the
    machine-readable summary (stats before/after, every step's counts per reason).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"lengths": plot_lengths(before, after, out / "lengths.png")}
    if before.category_field:
        files["balance"] = plot_balance(before, after, out / "balance.png")
    page = _Page(
        title,
        info or {},
        str(trace.path) if trace.path else None,
        before_after_table(before, after),
        steps_table(trace),
        "balance" in files,
    )
    files["md"] = _write(out / "report.md", _markdown(page))
    files["html"] = _write(out / "report.html", _html(page))
    summary = summary_json(title, page.info, before, after, trace)
    files["json"] = _write(
        out / "report.json", json.dumps(summary, indent=2, ensure_ascii=False)
    )
    return files


@dataclass
class _Page:
    """What report.md and report.html both show."""

    title: str
    info: dict
    trace_file: str | None
    before_after: list[tuple]
    steps: list[tuple]
    has_balance: bool


def before_after_table(before: Stats, after: Stats) -> list[tuple]:
    """Header row, then rows, lengths and one row per category, before against after."""
    rows: list[tuple] = [
        ("", "before", "after"),
        ("rows", before.rows, after.rows),
        ("mean characters", f"{before.chars_mean:.1f}", f"{after.chars_mean:.1f}"),
        ("min characters", before.chars_min or 0, after.chars_min or 0),
        ("max characters", before.chars_max, after.chars_max),
    ]
    for c in sorted(set(before.categories) | set(after.categories)):
        rows.append(
            (f"{before.category_field} = {c}", before.categories[c], after.categories[c])
        )
    return rows


def steps_table(trace: Trace) -> list[tuple]:
    """Header row, then (step, action, reason, rows); the most frequent reason first within an action."""
    ordered = sorted(
        trace.reasons.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[1])
    )
    return [("step", "action", "reason", "rows")] + [
        (s, a, k, n) for (s, a, k), n in ordered
    ]


def summary_json(
    title: str, info: dict, before: Stats, after: Stats, trace: Trace
) -> dict:
    return {
        "title": title,
        **info,
        "before": before.as_json(),
        "after": after.as_json(),
        "steps": [
            {"step": s, "action": a, "reason": k, "rows": n}
            for (s, a, k), n in sorted(trace.reasons.items())
        ],
    }


_NOTHING_DONE = "No row was removed, changed, added or flagged."


def _markdown(page: _Page) -> str:
    md = [f"# {page.title}", ""]
    md += [f"- {k}: `{v}`" for k, v in page.info.items()]
    if page.trace_file:
        md.append(
            f"- every removed / changed / added / flagged row with its reason: `{page.trace_file}`"
        )
    md += ["", "## Before and after", "", *_md_table(page.before_after), ""]
    md += ["## What each step did", ""]
    md += _md_table(page.steps) if len(page.steps) > 1 else [_NOTHING_DONE]
    md += ["", "## Plots", "", "![lengths](lengths.png)"]
    if page.has_balance:
        md.append("![balance](balance.png)")
    return "\n".join(md) + "\n"


_STYLE = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}"


def _html(page: _Page) -> str:
    esc = html.escape
    body = [f"<h1>{esc(page.title)}</h1>", "<ul>"]
    body += [
        f"<li>{esc(str(k))}: <code>{esc(str(v))}</code></li>"
        for k, v in page.info.items()
    ]
    if page.trace_file:
        body.append(
            f"<li>trace of every removed / changed / added / flagged row: <code>{esc(page.trace_file)}</code></li>"
        )
    body += ["</ul>", "<h2>Before and after</h2>", _html_table(page.before_after)]
    body.append("<h2>What each step did</h2>")
    body.append(
        _html_table(page.steps) if len(page.steps) > 1 else f"<p>{_NOTHING_DONE}</p>"
    )
    body += ["<h2>Plots</h2>", '<img src="lengths.png" alt="lengths">']
    if page.has_balance:
        body.append('<img src="balance.png" alt="balance">')
    head = f"<meta charset='utf-8'><title>{esc(page.title)}</title><style>{_STYLE}</style>"
    return (
        f"<!doctype html><html><head>{head}</head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _md_table(rows: list[tuple]) -> list[str]:
    head, *rest = rows
    out = ["| " + " | ".join(map(str, head)) + " |", "|" + " --- |" * len(head)]
    return out + [
        "| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rest
    ]


def _html_table(rows: list[tuple]) -> str:
    head, *rest = rows
    th = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    trs = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
        for r in rest
    )
    return f"<table><tr>{th}</tr>{trs}</table>"

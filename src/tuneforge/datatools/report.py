"""The data report: Markdown + HTML with PNG plots of lengths and category balance before/after.

Plots use a bare matplotlib ``Figure`` with the Agg canvas (no pyplot global state), as the
training plots do.
"""

from __future__ import annotations

import html
import json
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


def write_report(
    out_dir: str | Path,
    title: str,
    before: Stats,
    after: Stats,
    trace: Trace,
    info: dict | None = None,
    trace_file: str | None = None,
) -> dict[str, Path]:
    """Write report.md, report.html, lengths.png (and balance.png with a category field); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"lengths": plot_lengths(before, after, out / "lengths.png")}
    if before.category_field:
        files["balance"] = plot_balance(before, after, out / "balance.png")
    rows_tbl = [("", "before", "after")] + [
        ("rows", before.rows, after.rows),
        ("mean characters", f"{before.chars_mean:.1f}", f"{after.chars_mean:.1f}"),
        ("min characters", before.chars_min or 0, after.chars_min or 0),
        ("max characters", before.chars_max, after.chars_max),
    ]
    for c in sorted(set(before.categories) | set(after.categories)):
        rows_tbl.append(
            (
                f"{before.category_field} = {c}",
                before.categories[c],
                after.categories[c],
            )
        )
    steps_tbl = [("step", "action", "reason", "rows")] + [
        (s, a, k, n)
        for (s, a, k), n in sorted(
            trace.reasons.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[1])
        )
    ]
    info = info or {}
    md = [f"# {title}", ""]
    md += [f"- {k}: `{v}`" for k, v in info.items()]
    if trace_file:
        md.append(
            f"- every removed / changed / added / flagged row with its reason: `{trace_file}`"
        )
    md += [
        "",
        "## Before and after",
        "",
        *_md_table(rows_tbl),
        "",
        "## What each step did",
        "",
    ]
    md += (
        _md_table(steps_tbl)
        if len(steps_tbl) > 1
        else ["No row was removed, changed, added or flagged."]
    )
    md += ["", "## Plots", "", "![lengths](lengths.png)"]
    if "balance" in files:
        md.append("![balance](balance.png)")
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    body = [f"<h1>{html.escape(title)}</h1>", "<ul>"]
    body += [
        f"<li>{html.escape(str(k))}: <code>{html.escape(str(v))}</code></li>"
        for k, v in info.items()
    ]
    if trace_file:
        body.append(
            f"<li>trace of every removed / changed / added / flagged row: <code>{html.escape(trace_file)}</code></li>"
        )
    body += [
        "</ul>",
        "<h2>Before and after</h2>",
        _html_table(rows_tbl),
        "<h2>What each step did</h2>",
    ]
    body.append(
        _html_table(steps_tbl)
        if len(steps_tbl) > 1
        else "<p>No row was removed, changed, added or flagged.</p>"
    )
    body += ["<h2>Plots</h2>", '<img src="lengths.png" alt="lengths">']
    if "balance" in files:
        body.append('<img src="balance.png" alt="balance">')
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}"
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n",
        encoding="utf-8",
    )
    summary = {
        "title": title,
        **info,
        "before": before.as_json(),
        "after": after.as_json(),
        "steps": [
            {"step": s, "action": a, "reason": k, "rows": n}
            for (s, a, k), n in sorted(trace.reasons.items())
        ],
    }
    (out / "report.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    files.update(
        {
            "md": out / "report.md",
            "html": out / "report.html",
            "json": out / "report.json",
        }
    )
    return files


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

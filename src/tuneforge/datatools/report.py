"""The data report: Markdown + HTML with PNG plots of lengths and category balance before/after.

The page is drawn by the one report renderer (``observe/render.py``) that the evaluation report
uses too.

Plots use a bare matplotlib ``Figure`` with the Agg canvas (no pyplot global state), as the
training plots do.
"""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tuneforge.datatools.stats import Stats
from tuneforge.datatools.trace import Trace
from tuneforge.observe.render import Fact, Image, Page, Paragraph, Section, Table, write_page


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

    Returns their paths. The Markdown and the HTML say the same in the same order (one renderer,
    ``observe/render.py``; the HTML embeds the plots, so it is one self-contained file); the JSON
    is the machine-readable summary (stats before/after, every step's counts per reason).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"lengths": plot_lengths(before, after, out / "lengths.png")}
    if before.category_field:
        files["balance"] = plot_balance(before, after, out / "balance.png")
    page = report_page(title, info or {}, before, after, trace, [files[k] for k in ("lengths", "balance") if k in files])
    files["md"], files["html"] = write_page(page, out)
    summary = summary_json(title, info or {}, before, after, trace)
    files["json"] = out / "report.json"
    files["json"].write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return files


def report_page(title: str, info: dict, before: Stats, after: Stats, trace: Trace, plots: list[Path]) -> Page:
    """What report.md and report.html both show: the facts, before/after, each step, the plots."""
    facts = [Fact(str(k), str(v), code=True) for k, v in info.items()]
    if trace.path:
        facts.append(Fact("every removed / changed / added / flagged row with its reason", str(trace.path), code=True))
    steps = steps_table(trace)
    return Page(
        title=title,
        facts=facts,
        sections=[
            Section("Before and after", [_table(before_after_table(before, after))]),
            Section("What each step did", [_table(steps, text_columns=3) if len(steps) > 1 else Paragraph(_NOTHING_DONE)]),
            Section("Plots", [Image(path.stem, path) for path in plots]),
        ],
    )


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


def _table(rows: list[tuple], text_columns: int = 1) -> Table:
    """A header-first list of tuples (the shape the summary helpers return) as a page table."""
    head, *rest = rows
    return Table([str(c) for c in head], [[str(c) for c in row] for row in rest], text_columns=text_columns)

"""The one renderer: the same page in Markdown and self-contained HTML, with untrusted text escaped."""

from __future__ import annotations

import base64
import html
import re
from collections import Counter
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tuneforge.datatools.report import write_report as write_data_report
from tuneforge.datatools.stats import Stats
from tuneforge.datatools.trace import Trace
from tuneforge.observe.render import (
    Fact,
    Flag,
    Image,
    Page,
    Paragraph,
    Sample,
    Section,
    Table,
    md_code,
    md_fenced,
    write_page,
)

EVIL = '<img src=x onerror="fetch(\'https://evil.example/\')"><script>alert(1)</script>'


def _png(path: Path) -> Path:
    figure = Figure(figsize=(2, 2), dpi=50)
    FigureCanvasAgg(figure)
    figure.add_subplot().plot([0, 1], [1, 0])
    figure.savefig(path, format="png")
    return path


@pytest.fixture()
def rendered(tmp_path: Path) -> tuple[str, str, Path]:
    png = _png(tmp_path / "chart.png")
    page = Page(
        title="A <report>",
        headline="score: 0.25 -> 0.75",
        flags=[Flag("error", "refusals dropped " + EVIL), Flag("warning", "forgetting 0.1")],
        facts=[Fact("data", "data/te`st.jsonl", code=True), Fact("models", "base, tuned")],
        sections=[
            Section("Numbers", [Table(["metric", "a", "b"], [["acc|x", "0.5", "0.7"], ["line\nbreak", "1", "2"]]), Paragraph("a note & more")]),
            Section("Chart", [Image("the chart", png)]),
            Section("Samples", [Sample("Sample 1", "prompt ``` with fence", [("reference", "ref"), ("tuned", EVIL)])]),
        ],
    )
    md_path, html_path = write_page(page, tmp_path)
    return md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8"), png


def test_markdown_has_every_part_in_order(rendered) -> None:
    md, _, _ = rendered
    order = ["# A &lt;report>", "> **ERROR:** refusals dropped", "> **WARNING:** forgetting 0.1", "**score: 0.25 -> 0.75**",
             "- data: ``data/te`st.jsonl``", "## Numbers", "| metric | a | b |", "|---|---:|---:|", "| acc\\|x | 0.5 | 0.7 |",
             "| line<br>break | 1 | 2 |", "a note &amp; more", "## Chart", "![the chart](chart.png)", "## Samples", "### Sample 1",
             "````text\nprompt ``` with fence\n````", "| reference | tuned |", "|---|---|"]
    positions = [md.index(part) for part in order]
    assert positions == sorted(positions)
    assert "<script" not in md and "<img" not in md


def test_html_escapes_untrusted_text_and_embeds_images(rendered) -> None:
    _, raw_html, png = rendered
    assert "<script" not in raw_html and "<img src=x" not in raw_html
    visible = html.unescape(re.sub(r"<[^>]+>", " ", raw_html))
    assert EVIL in visible, "escaped, not dropped"
    srcs = re.findall(r'src="([^"]*)"', raw_html)
    assert srcs == ["data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")]
    # the only URLs in the file are inside the escaped user text (the flag and the sample)
    assert re.findall(r"(.{5})https?://", raw_html) == ["&#39;", "&#39;"]
    assert "<td>acc|x</td><td class=\"num\">0.5</td><td class=\"num\">0.7</td>" in raw_html
    assert '<div class="flag flag-error"><strong>ERROR:</strong>' in raw_html
    assert "<title>A &lt;report&gt;</title>" in raw_html and "<code>data/te`st.jsonl</code>" in raw_html


def test_fences_and_inline_code_survive_backticks() -> None:
    assert md_fenced("a ```` b") == "`````text\na ```` b\n`````"
    assert md_fenced("plain") == "```text\nplain\n```"
    assert md_code("a`b") == "``a`b``" and md_code("`x") == "`` `x ``" and md_code("x") == "`x`"


def test_empty_page_renders(tmp_path: Path) -> None:
    md_path, html_path = write_page(Page(title="Nothing"), tmp_path, stem="empty")
    assert md_path.name == "empty.md" and md_path.read_text().startswith("# Nothing\n")
    assert "<h1>Nothing</h1>" in html_path.read_text()


def test_data_report_shows_before_after_and_steps_through_the_same_renderer(tmp_path: Path) -> None:
    before = Stats(category_field="topic", rows=3, chars_total=30, chars_min=5, chars_max=15, lengths=[5, 10, 15],
                   categories=Counter({"a": 2, "<b>": 1}))
    after = Stats(category_field="topic", rows=2, chars_total=15, chars_min=5, chars_max=10, lengths=[5, 10],
                  categories=Counter({"a": 1, "<b>": 1}))
    trace = Trace(None)
    trace.log("dedup", "removed", None, "exact duplicate")
    files = write_data_report(tmp_path / "rep", "tuneforge data clean", before, after, trace, {"input": "in|put.jsonl"})
    md, raw_html = files["md"].read_text(), files["html"].read_text()
    assert set(files) == {"lengths", "balance", "md", "html", "json"}
    for line in ("|  | before | after |", "| rows | 3 | 2 |", "| mean characters | 10.0 | 7.5 |", "| topic = a | 2 | 1 |",
                 "| topic = &lt;b> | 1 | 1 |", "| step | action | reason | rows |", "| dedup | removed | exact duplicate | 1 |",
                 "- input: `in|put.jsonl`", "![lengths](lengths.png)", "![balance](balance.png)"):
        assert line in md, line
    assert "<td>dedup</td><td>removed</td><td>exact duplicate</td><td class=\"num\">1</td>" in raw_html
    assert "<td>topic = &lt;b&gt;</td>" in raw_html and "<script" not in raw_html
    assert re.findall(r'src="([^"]*)"', raw_html) == [data_uri_of(files["lengths"]), data_uri_of(files["balance"])]


def test_data_report_without_steps_says_so(tmp_path: Path) -> None:
    stats = Stats(rows=1, chars_total=4, chars_min=4, chars_max=4, lengths=[4])
    files = write_data_report(tmp_path, "t", stats, stats, Trace(None))
    assert "No row was removed, changed, added or flagged." in files["md"].read_text()
    assert "balance" not in files and "balance" not in files["md"].read_text()


def data_uri_of(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")

"""The one report renderer: a small page model turned into Markdown and self-contained HTML.

Every report tuneforge writes (the evaluation report, the comparison of runs, the data report)
builds a :class:`Page` and calls :func:`write_page`, so they look alike and share one set of
escaping rules. The templates live in ``observe/templates/`` (Jinja2).

Why these rules:

- HTML is rendered with autoescape on. Model outputs, prompts and file names are untrusted text: a
  model that learned to write ``<script>`` must not run it in the reader's browser.
- The HTML is self-contained (inline CSS, images as base64 data URIs, no scripts, no network) so it
  can be mailed, attached to a ticket or opened on an air-gapped machine and look the same.
- Markdown renderers pass raw HTML through, so ``&`` and ``<`` are neutralised there too, table
  cells escape ``|`` and line breaks, and code blocks get a fence longer than any backtick run
  inside, so user text can never close it.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from jinja2 import Environment, PackageLoader, StrictUndefined


@dataclass(frozen=True)
class Flag:
    """A line at the top of the page that the reader must not miss (a safety regression)."""

    level: str  # "warning" or "error"
    text: str


@dataclass(frozen=True)
class Fact:
    """One ``name: value`` line under the title; ``code`` shows the value as a literal (a path)."""

    name: str
    value: str
    code: bool = False


@dataclass(frozen=True)
class Table:
    """Cells already formatted as strings; the first ``text_columns`` columns are read as text,
    the others are right-aligned, as numbers are read."""

    header: list[str]
    rows: list[list[str]]
    text_columns: int = 1
    kind: ClassVar[str] = "table"

    @property
    def md_alignment(self) -> str:
        """The Markdown separator row: ``---`` for text columns, ``---:`` for numbers."""
        return "|".join("---" if i < self.text_columns else "---:" for i in range(len(self.header)))


@dataclass(frozen=True)
class Image:
    """A PNG written next to the report: linked from the Markdown, embedded in the HTML."""

    caption: str
    path: Path
    kind: ClassVar[str] = "image"


@dataclass(frozen=True)
class Sample:
    """One prompt with the texts shown side by side under it: (column title, text)."""

    title: str
    prompt: str
    columns: list[tuple[str, str]]
    kind: ClassVar[str] = "sample"

    @property
    def table(self) -> Table:
        return Table([t for t, _ in self.columns], [[text for _, text in self.columns]], text_columns=len(self.columns))


@dataclass(frozen=True)
class Paragraph:
    """Free text (a note under a table, "nothing to show")."""

    text: str
    kind: ClassVar[str] = "paragraph"


Block = Table | Image | Sample | Paragraph


@dataclass(frozen=True)
class Section:
    """A titled part of the page; ``level`` 2 is a main heading, 3 a sub-heading."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


@dataclass(frozen=True)
class Page:
    """Everything one report shows, in reading order."""

    title: str
    headline: str | None = None
    flags: list[Flag] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


def write_page(page: Page, out_dir: Path, stem: str = "report") -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.html`` into ``out_dir`` (where the page's images are); return both."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
    md_path.write_text(render_markdown(page, out_dir), encoding="utf-8")
    html_path.write_text(render_html(page), encoding="utf-8")
    return md_path, html_path


def render_markdown(page: Page, out_dir: Path) -> str:
    """The page as Markdown; images are linked relative to ``out_dir``."""
    return _markdown_env().get_template("page.md.j2").render(page=page, out_dir=Path(out_dir))


def render_html(page: Page) -> str:
    """The page as one self-contained HTML document."""
    return _html_env().get_template("page.html.j2").render(page=page)


# ---------------------------------------------------------------------------------------------------
# Filters


def md_text(text: object) -> str:
    """Neutralise HTML in Markdown text (renderers pass raw HTML through); ``&`` and ``<`` are enough."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;")


def md_cell(text: object) -> str:
    """Escape for a Markdown table cell: HTML, the column separator, and line breaks."""
    return md_text(text).replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")


def md_fenced(text: object) -> str:
    """A code block whose fence is longer than any backtick run inside, so the text cannot close it."""
    text = str(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def md_code(text: object) -> str:
    """Inline code that survives backticks inside (CommonMark: a longer backtick string as delimiter)."""
    text = str(text).replace("\r\n", " ").replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def data_uri(png: Path) -> str:
    """The PNG's bytes inline, so the HTML needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def _relative(path: Path, out_dir: Path) -> str:
    path = Path(path)
    try:
        return path.relative_to(out_dir).as_posix()
    except ValueError:
        return path.as_posix()


def _environment(autoescape: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("tuneforge.observe", "templates"),
        autoescape=autoescape,
        undefined=StrictUndefined,  # a typo in a template is an error, not a silently empty cell
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(md_text=md_text, md_cell=md_cell, md_fenced=md_fenced, md_code=md_code, data_uri=data_uri)
    env.filters["relative"] = _relative
    return env


_ENVS: dict[bool, Environment] = {}


def _markdown_env() -> Environment:
    """Markdown is not HTML: no autoescape, the md_* filters escape instead."""
    if False not in _ENVS:
        _ENVS[False] = _environment(autoescape=False)
    return _ENVS[False]


def _html_env() -> Environment:
    if True not in _ENVS:
        _ENVS[True] = _environment(autoescape=True)
    return _ENVS[True]

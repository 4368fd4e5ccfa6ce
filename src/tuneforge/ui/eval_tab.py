"""The Evaluate tab: ``tuneforge eval`` on a run or a model, and its report (before/after, samples).

The callback calls :func:`~tuneforge.evaluate.command.evaluate_target`, the function behind
``tuneforge eval``, in the UI process (an evaluation is minutes, not hours, and its console output
goes to the page's log), and shows the report.md it writes; report.html is offered as a download.
The report's plots are PNG files beside report.md, linked by relative paths the browser cannot reach
through the page, so they are inlined as data URIs (as report.html does) before the Markdown is shown.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import gradio as gr
from rich.console import Console

from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.command import evaluate_target, probe_flags
from tuneforge.observe.render import data_uri
from tuneforge.runs import is_run_dir
from tuneforge.ui.data_tab import error_text
from tuneforge.ui.process import shown_command


_IMAGE = re.compile(r"!\[(.*?)\]\(([^)\s]+\.png)\)")  # captions may hold brackets: "Scores in [0, 1]"


def inline_images(markdown: str, folder: Path) -> str:
    """``markdown`` with each image that names a PNG file under ``folder`` embedded as a data URI."""

    def embed(match: re.Match[str]) -> str:
        png = folder / match.group(2)
        return f"![{match.group(1)}]({data_uri(png)})" if png.is_file() else match.group(0)

    return _IMAGE.sub(embed, markdown)


PROBES = ("safety", "forgetting", "judge")  # the probe checkboxes, by their flag names


def eval_command(
    target: str, data: str, with_base: bool, metrics: str, limit: int | None, out: str, probes: list[str] | None = None
) -> list[str]:
    """The ``tuneforge eval`` arguments the form describes (shown on the page)."""
    args = ["eval", target, "--data", data, "--base" if with_base else "--no-base"]
    args += [f"--{name}" for name in PROBES if name in (probes or [])]
    if metrics.strip():
        args += ["--metrics", metrics.strip()]
    if limit:
        args += ["--limit", str(int(limit))]
    if out.strip():
        args += ["--out", out.strip()]
    return args


def run_eval(
    target: str, data: str, with_base: bool, metrics: str, limit: float | None, out: str, probes: list[str] | None = None
) -> tuple[str, str, str | None]:
    """Evaluate; returns the status (with the command and the console output), report.md, report.html.

    ``probes`` names the probes to run (safety, forgetting, judge); unchecked ones keep the run's own setting.
    """
    if not target.strip() or not data.strip():
        return "Enter a run (or model) and a held-out data file.", "", None
    chosen = set(probes or [])
    command = shown_command(eval_command(target, data, with_base, metrics, limit, out, sorted(chosen)))
    buffer = io.StringIO()
    console = Console(file=buffer, width=10_000, force_terminal=False)  # wide: a long report path stays one line
    try:
        evaluate_target(
            target.strip(),
            Path(data.strip()),
            with_base=with_base and is_run_dir(target.strip()),
            metrics=[m.strip() for m in metrics.split(",") if m.strip()] or None,
            out=Path(out.strip()) if out.strip() else None,
            limit=int(limit) if limit else None,
            options=probe_flags(**{name: (True if name in chosen else None) for name in PROBES}, pairwise=None, judge_limit=None),
            console=console,
        )
    except TuneforgeError as exc:
        return f"{error_text(exc)}\n\n`{command}`", "", None
    printed = buffer.getvalue()
    report_line = [line for line in printed.splitlines() if line.startswith("report: ")]
    html = Path(report_line[-1].removeprefix("report: ").strip()) if report_line else None
    report_md = html.with_name("report.md") if html else None
    markdown = inline_images(report_md.read_text(encoding="utf-8"), report_md.parent) if report_md and report_md.is_file() else ""
    status = f"`{command}`\n\n```\n{printed.strip()}\n```"
    return status, markdown, str(html) if html and html.is_file() else None


def build(run: gr.Textbox) -> dict[str, Any]:
    """The tab; ``run`` is the Train tab's run directory (the Use-run button copies it)."""
    with gr.Row():
        target = gr.Textbox(label="Run or model", info="A run directory, an adapter bundle, or a model name/dir/.gguf.", elem_id="eval-target", scale=3)
        use_run = gr.Button("Use the Train tab's run", scale=1, elem_id="eval-use-run")
    data = gr.Textbox(label="Held-out data file", info="alpaca or messages rows; the last assistant turn is the reference.", elem_id="eval-data")
    with gr.Row():
        with_base = gr.Checkbox(True, label="Also evaluate the base model (before/after)", info="For a run only.")
        metrics = gr.Textbox("", label="Metrics", info="Comma-separated (default: the run's recipe eval.metrics, else exact_match).")
        limit = gr.Number(0, label="Limit", info="Evaluate only the first N examples (0 = all).", precision=0)
        out = gr.Textbox("", label="Output directory", info="Default: RUN/eval.")
    probes = gr.CheckboxGroup(
        list(PROBES), value=[], label="Probes", elem_id="eval-probes",
        info="safety: the bundled red-team set; forgetting: the general-capability probe; judge: rubric scores by the built-in model (slow).",
    )  # fmt: skip
    run_btn = gr.Button("Evaluate", variant="primary", elem_id="eval-run")
    status = gr.Markdown(elem_id="eval-status")
    report_file = gr.File(label="report.html", interactive=False)
    report = gr.Markdown(elem_id="eval-report")
    use_run.click(lambda r: r, run, target)
    run_btn.click(run_eval, [target, data, with_base, metrics, limit, out, probes], [status, report, report_file])
    return {"target": target, "data": data}

"""The Data tab: upload or pick a file, validate it row by row, inspect it, clean it.

The callbacks call the functions behind ``tuneforge data validate / inspect / clean``
(:func:`~tuneforge.datatools.validate.validate_file`, :func:`~tuneforge.datatools.inspect.inspect_file`,
:func:`~tuneforge.datatools.pipeline.run_pipeline` with the step models of ``config/pipeline.py``)
and only format their results for the page.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from tuneforge.config import pipeline as steps_config
from tuneforge.datatools.inspect import inspect_file
from tuneforge.datatools.pipeline import run_pipeline
from tuneforge.datatools.validate import validate_file
from tuneforge.errors import TuneforgeError
from tuneforge.models.load import load_tokenizer
from tuneforge.ui.process import shown_command

FORMATS = ["auto", "alpaca", "messages", "prompt_completion", "text", "preference", "kto", "prompt"]
CLEAN_STEPS = ["normalize", "dedup", "near_dedup", "safety", "pii", "refusals"]
ERROR_HEADERS = ["file:line", "field", "reason"]


def error_text(exc: TuneforgeError) -> str:
    """A user error as the CLI prints it: the message and the hint."""
    return f"**error:** {exc.message}" + (f"\n\n**hint:** {exc.hint}" if exc.hint else "")


def store_upload(upload: str | None, workdir: str | Path) -> str:
    """Copy an uploaded file into ``WORKDIR/data/`` (gradio's upload folder is temporary) and return its path."""
    if not upload:
        return ""
    target = Path(workdir) / "data" / Path(upload).name
    target.parent.mkdir(parents=True, exist_ok=True)
    if Path(upload).resolve() != target.resolve():
        shutil.copyfile(upload, target)
    return str(target)


def validate_data(path: str, fmt: str = "auto") -> tuple[str, list[list[str]]]:
    """The summary line and one table row per bad row (file:line, field, reason), as ``tuneforge data validate``."""
    if not path:
        return "Upload or enter a data file first.", []
    try:
        result = validate_file(path, fmt)
    except TuneforgeError as exc:
        return error_text(exc), []
    rows = [[b.source, b.field or "", b.reason] for b in result.bad]
    rows += [[w.source, getattr(w, "field", "") or "", f"warning: {w.describe()}"] for w in result.warnings]
    mark = "❌" if result.bad else "✅"
    summary = f"{mark} {result.good} good, {len(result.bad)} bad of {result.rows} rows ({result.format})"
    if result.warnings:
        summary += f", {len(result.warnings)} warning(s)"
    command = shown_command(["data", "validate", path, "--format", fmt])
    return f"{summary}\n\n`{command}`", rows


def inspect_data(path: str, fmt: str = "auto", tokenizer: str = "none", max_length: float | None = None, category: str = "") -> str:
    """``tuneforge data inspect`` as Markdown: counts, length histogram, duplicates, completeness, balance."""
    if not path:
        return "Upload or enter a data file first."
    tok_spec = (tokenizer or "none").strip()
    try:
        tok = None if tok_spec.lower() == "none" else load_tokenizer(tok_spec)
        limit = int(max_length) if max_length else None
        stats = inspect_file(path, fmt, tok, limit, category.strip() or None)
    except TuneforgeError as exc:
        return error_text(exc)
    lines = [f"### {path} ({stats['format']})", "", "| | |", "| --- | --- |"]
    for key in ("rows", "bad_rows", "exact_duplicates"):
        lines.append(f"| {key} | {stats[key]} |")
    lines.append(f"| warnings | {stats['warnings']['count']} |")
    lines.append(f"| length ({stats['length_unit']}) | " + ", ".join(f"{k} {v}" for k, v in stats["length"].items()) + " |")
    lines.append("| field completeness | " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in stats["field_completeness"].items()) + " |")
    lines.append(f"| languages (first {stats['languages_sampled']}) | " + ", ".join(f"{k} {v}" for k, v in stats["languages"].items()) + " |")
    if "categories" in stats:
        lines.append(f"| {category} | " + ", ".join(f"{k} {v}" for k, v in stats["categories"].items()) + " |")
    if "overlong" in stats:
        lines.append(f"| over {limit} tokens | {stats['overlong']['count']} |")
    lines += ["", "**length histogram**", "", "| length | rows |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in stats["length_histogram"].items()]
    args = ["data", "inspect", path, "--format", fmt, "--tokenizer", tok_spec]
    if limit:
        args += ["--max-length", str(limit)]
    if category.strip():
        args += ["--category", category.strip()]
    lines += ["", f"`{shown_command(args)}`"]
    return "\n".join(lines)


def clean_steps(chosen: list[str], balance: str = "") -> tuple[list, list[str]]:
    """The pipeline step models for the chosen cleaning steps, and the matching ``tuneforge data clean`` flags."""
    chosen = set(chosen or [])
    steps: list = []
    flags: list[str] = []
    if "normalize" in chosen:
        steps.append(steps_config.NormalizeStep())
    else:
        flags.append("--no-normalize")
    if "dedup" in chosen or "near_dedup" in chosen:
        steps.append(steps_config.DedupStep(exact="dedup" in chosen, near="near_dedup" in chosen))
    if "dedup" not in chosen:
        flags.append("--no-dedup")
    if "near_dedup" in chosen:
        flags.append("--near-dedup")
    if "safety" in chosen:
        steps.append(steps_config.SafetyStep())
    else:
        flags.append("--no-safety")
    if "pii" in chosen:
        steps.append(steps_config.PiiStep())
        flags.append("--pii")
    if "refusals" in chosen:
        steps.append(steps_config.RefusalsStep())
        flags.append("--refusals")
    if balance.strip():
        steps.append(steps_config.BalanceStep(field=balance.strip()))
        flags += ["--balance", balance.strip()]
    return steps, flags


def clean_data(path: str, fmt: str, chosen: list[str], balance: str, output: str, skip_bad: bool) -> tuple[str, str | None, str]:
    """Run the cleaning pipeline; returns the summary, the before/after length plot and the report (Markdown)."""
    if not path:
        return "Upload or enter a data file first.", None, ""
    out = output.strip() or str(Path(path).with_name(Path(path).stem + ".clean.jsonl"))
    try:
        steps, flags = clean_steps(chosen, balance)
        result = run_pipeline(path, out, steps, fmt=fmt, on_bad_rows="skip" if skip_bad else "error", title="tuneforge data clean")
    except TuneforgeError as exc:
        return error_text(exc), None, ""
    except ValueError as exc:  # a step model refused an option (pydantic)
        return f"**error:** {exc}", None, ""
    args = ["data", "clean", path, "-o", out, "--format", fmt, *flags, *(["--skip-bad"] if skip_bad else [])]
    summary = f"wrote `{result.output}`: {result.summary()}\n\n`{shown_command(args)}`"
    report = Path(result.report["md"]).read_text(encoding="utf-8")
    return summary, str(result.report["lengths"]), report


def build(workdir: Path) -> dict[str, Any]:
    """The tab's widgets and events; returns the widgets other tabs use (the data file path)."""
    with gr.Row():
        upload = gr.File(label="Upload a data file (.jsonl, .json, .csv, .parquet)", type="filepath", elem_id="data-upload")
        with gr.Column():
            path = gr.Textbox(label="Data file", info="A path on this machine; an upload is copied to the UI's work directory.", elem_id="data-path")
            fmt = gr.Dropdown(FORMATS, value="auto", label="Format", info="auto infers it from the first row.")
            use = gr.Button("Use as training data (data.train)", elem_id="data-use")
    with gr.Row():
        validate_btn = gr.Button("Validate", variant="primary", elem_id="data-validate")
        inspect_btn = gr.Button("Inspect", elem_id="data-inspect")
    summary = gr.Markdown(elem_id="data-summary")
    errors = gr.Dataframe(headers=ERROR_HEADERS, label="Bad rows", interactive=False, wrap=True, elem_id="data-errors")
    with gr.Accordion("Inspect options", open=False):
        tokenizer = gr.Textbox("none", label="Tokenizer", info="Model whose tokenizer counts tokens (a built-in name or a local dir); none counts words.")
        max_length = gr.Number(None, label="Max length", info="Report examples longer than this many tokens.", precision=0)
        category = gr.Textbox("", label="Category field", info="Field holding a category, for the balance table.")
    report = gr.Markdown(elem_id="data-report")
    with gr.Accordion("Clean", open=False):
        chosen = gr.CheckboxGroup(CLEAN_STEPS, value=["normalize", "dedup", "safety"], label="Steps", info="As tuneforge data clean: NFKC/whitespace, exact and MinHash dedup, block list, PII scrub, refusals.")
        balance = gr.Textbox("", label="Balance field", info="Balance the categories of this field (uniform).")
        output = gr.Textbox("", label="Output file", info="Default: FILE.clean.jsonl next to the input.")
        skip_bad = gr.Checkbox(False, label="Skip bad rows (traced) instead of stopping at the first")
        clean_btn = gr.Button("Clean", elem_id="data-clean")
        clean_summary = gr.Markdown(elem_id="data-clean-summary")
        lengths = gr.Image(label="Lengths before/after", type="filepath", interactive=False)
        clean_report = gr.Markdown()
    upload.upload(lambda f: store_upload(f, workdir), upload, path).then(validate_data, [path, fmt], [summary, errors])
    validate_btn.click(validate_data, [path, fmt], [summary, errors])
    inspect_btn.click(inspect_data, [path, fmt, tokenizer, max_length, category], report)
    clean_btn.click(clean_data, [path, fmt, chosen, balance, output, skip_bad], [clean_summary, lengths, clean_report])
    return {"path": path, "use": use, "format": fmt}

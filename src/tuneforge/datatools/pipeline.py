"""Running a list of steps over a file, streaming, with a trace and a report.

``run_pipeline`` is what ``tuneforge data clean`` / ``augment`` / ``convert`` / ``chunk`` call and what
the recipes call for a recipe's ``data.pipeline`` (and ``data.replay``). Steps are chained
generators, so a row flows through every step before the next is read; steps that need two passes
(balance, augment) spill to a temporary file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.config.pipeline import (
    AugmentStep,
    BalanceStep,
    ChunkStep,
    ConvertStep,
    DedupStep,
    JudgeStep,
    NormalizeStep,
    PiiStep,
    RefusalsStep,
    ReplayOptions,
    SafetyStep,
    TemplatesStep,
)
from tuneforge.data.records import BadRow
from tuneforge.datatools.augment import Augment
from tuneforge.datatools.balance import Balance
from tuneforge.datatools.chunk import Chunk
from tuneforge.datatools.convert import Convert
from tuneforge.datatools.dedup import Dedup
from tuneforge.datatools.judge import Judge
from tuneforge.datatools.mix import replay_rows
from tuneforge.datatools.normalize import Normalize
from tuneforge.datatools.refusals import Refusals
from tuneforge.datatools.report import default_report_dir, write_report
from tuneforge.datatools.rows import JsonlWriter, Row, read_dataset
from tuneforge.datatools.safety import Pii, Safety
from tuneforge.datatools.stats import Stats
from tuneforge.datatools.templates import Templates
from tuneforge.datatools.trace import TRACE_FILE, Trace
from tuneforge.errors import DataError

# The step object each step model builds: a plain table, no registry (the ``step`` key of a
# recipe already picked the model, see config/pipeline.py).
STEPS: dict[type, type] = {
    NormalizeStep: Normalize,
    DedupStep: Dedup,
    SafetyStep: Safety,
    PiiStep: Pii,
    RefusalsStep: Refusals,
    BalanceStep: Balance,
    JudgeStep: Judge,
    AugmentStep: Augment,
    TemplatesStep: Templates,
    ConvertStep: Convert,
    ChunkStep: Chunk,
}


def build_step(cfg):
    """The step object for a step model; a ready step object (anything with ``run``) is used as is."""
    if hasattr(cfg, "run"):
        return cfg
    for model, step in STEPS.items():
        if isinstance(cfg, model):
            return step(cfg)
    raise TypeError(f"unknown pipeline step {cfg!r}")


@dataclass
class PipelineResult:
    output: Path
    rows_in: int
    rows_out: int
    bad_rows: int
    seconds: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    report: dict[str, Path] = field(default_factory=dict)
    trace: Path | None = None

    def summary(self) -> str:
        parts = [f"{self.rows_in} rows in, {self.rows_out} out"]
        for step, acts in self.counts.items():
            parts.append(f"{step}: " + ", ".join(f"{n} {a}" for a, n in acts.items()))
        if self.bad_rows:
            parts.append(f"{self.bad_rows} bad row(s) skipped")
        return "; ".join(parts)


def _tap(rows: Iterator[Row], stats: Stats, progress=None) -> Iterator[Row]:
    for row in rows:
        stats.add(row)
        if progress is not None:
            progress(stats.rows)
        yield row


def run_pipeline(
    input_path: str | Path,
    output_path: str | Path,
    steps: Sequence,
    *,
    fmt: str = "auto",
    report_dir: str | Path | None = None,
    on_bad_rows: str = "error",
    category_field: str | None = None,
    replay: ReplayOptions | None = None,
    title: str = "tuneforge data clean",
    progress=None,
) -> PipelineResult:
    """Clean ``input_path`` into ``output_path`` (JSONL); the trace and report go to ``report_dir``.

    ``steps`` are config models (or ready step objects). With ``on_bad_rows='error'`` the first bad
    input row stops the run with the foundation's file:line message; with 'skip' bad rows are traced.
    """
    t0 = time.perf_counter()
    if Path(output_path).resolve() == Path(input_path).resolve():
        raise DataError(
            f"output {output_path} is the input file",
            hint="write the cleaned data to a new file (-o clean.jsonl)",
        )
    out_dir = Path(report_dir) if report_dir else default_report_dir(output_path)
    trace = Trace(out_dir / TRACE_FILE)
    bad: list[BadRow] = []

    def on_bad(b: BadRow) -> None:
        if on_bad_rows == "error":
            raise DataError(
                f"bad row: {b.describe()}",
                hint="fix the row, run `tuneforge data validate FILE` to list all, or skip bad rows (--skip-bad / data.on_bad_rows=skip)",
            )
        bad.append(b)
        trace.log(
            "read",
            "removed",
            Row(b.source, b.row, "unknown"),
            b.describe(),
            kind="bad row",
            field=b.field,
        )

    if category_field is None:
        category_field = next(
            (getattr(s, "field", None) for s in steps if isinstance(s, BalanceStep)),
            None,
        )
    before, after = Stats(category_field), Stats(category_field)
    stream: Iterator[Row] = _tap(
        read_dataset(input_path, fmt, on_bad=on_bad), before, progress
    )
    for cfg in steps:
        stream = build_step(cfg).run(stream, trace)
    try:
        with JsonlWriter(output_path) as writer:
            for row in _tap(stream, after):
                writer.write(row.data)
            if replay is not None:
                for row in replay_rows(replay, after.rows, after.last_format, trace):
                    after.add(row)
                    writer.write(row.data)
    finally:
        trace.close()
    counts: dict[str, dict[str, int]] = {}
    for (s, a), n in trace.counts.items():
        counts.setdefault(s, {})[a] = n
    result = PipelineResult(
        Path(output_path),
        before.rows,
        after.rows,
        len(bad),
        time.perf_counter() - t0,
        counts,
        trace=trace.path,
    )
    info = {
        "input": str(input_path),
        "output": str(output_path),
        "seconds": round(result.seconds, 2),
    }
    result.report = write_report(out_dir, title, before, after, trace, info)
    return result


PIPELINE_DIR = "data_pipeline"


def training_file_path(recipe, run_dir: str | Path) -> str:
    """The file training reads: ``data.train``, or the pipeline's output when a pipeline/replay is set.

    Lets processes other than the one that ran :func:`prepare_training_file` (DDP ranks > 0) find it.
    """
    if not recipe.data.pipeline and recipe.data.replay is None:
        return recipe.data.train
    return str(Path(run_dir) / PIPELINE_DIR / "train.jsonl")


def prepare_training_file(
    recipe, run_dir: str | Path, console=None, preference: bool = False
) -> str:
    """Run the recipe's ``data.pipeline`` and ``data.replay`` on ``data.train`` inside the run directory.

    Returns the file training should read: ``data.train`` itself when neither is set, else
    ``RUN/data_pipeline/train.jsonl``, with the report and the trace beside it.
    """
    data = recipe.data
    if not data.pipeline and data.replay is None:
        return data.train
    if preference:
        raise DataError(
            "data.pipeline / data.replay work on alpaca, messages, prompt_completion and text data, not on preference data",
            hint="clean the preference file's prompts with `tuneforge data` beforehand, or remove data.pipeline",
        )
    out_dir = Path(run_dir) / PIPELINE_DIR
    result = run_pipeline(
        data.train,
        out_dir / "train.jsonl",
        list(data.pipeline),
        fmt=data.format,
        report_dir=out_dir,
        on_bad_rows=data.on_bad_rows,
        replay=data.replay,
        title=f"data pipeline of {data.train}",
    )
    if console is not None:
        console.print(
            f"[bold]data pipeline[/]: {result.summary()}; report {result.report['html']}"
        )
    return str(result.output)

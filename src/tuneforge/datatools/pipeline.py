"""Running a list of steps over a file, streaming, with a trace and a report.

``run_pipeline`` is what ``tuneforge data clean`` / ``augment`` / ``convert`` / ``chunk`` call and what
the training runner calls for a recipe's ``data.pipeline`` (and ``data.replay``). Steps are chained
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
)
from tuneforge.data.records import BadRow
from tuneforge.datatools.rows import JsonlWriter, Row, read_dataset
from tuneforge.datatools.stats import Stats
from tuneforge.datatools.trace import Trace
from tuneforge.errors import DataError

TRACE_FILE = "trace.jsonl"


def build_step(cfg):
    """The step object for a config model (imports are local so light steps stay light)."""
    if isinstance(cfg, NormalizeStep):
        from tuneforge.datatools.normalize import Normalize

        return Normalize(cfg)
    if isinstance(cfg, DedupStep):
        from tuneforge.datatools.dedup import Dedup

        return Dedup(cfg)
    if isinstance(cfg, SafetyStep):
        from tuneforge.datatools.safety import Safety

        return Safety(cfg)
    if isinstance(cfg, PiiStep):
        from tuneforge.datatools.safety import Pii

        return Pii(cfg)
    if isinstance(cfg, RefusalsStep):
        from tuneforge.datatools.refusals import Refusals

        return Refusals(cfg)
    if isinstance(cfg, BalanceStep):
        from tuneforge.datatools.balance import Balance

        return Balance(cfg)
    if isinstance(cfg, JudgeStep):
        from tuneforge.datatools.judge import Judge

        return Judge(cfg)
    if isinstance(cfg, AugmentStep):
        from tuneforge.datatools.augment import Augment

        return Augment(cfg)
    if isinstance(cfg, ConvertStep):
        from tuneforge.datatools.convert import Convert

        return Convert(cfg)
    if isinstance(cfg, ChunkStep):
        from tuneforge.datatools.chunk import Chunk

        return Chunk(cfg)
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
    out_dir = (
        Path(report_dir)
        if report_dir
        else Path(output_path)
        .with_suffix("")
        .with_name(Path(output_path).stem + "-report")
    )
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
        step = build_step(cfg) if not hasattr(cfg, "run") else cfg
        stream = step.run(stream, trace)
    try:
        with JsonlWriter(output_path) as writer:
            for row in _tap(stream, after):
                writer.write(row.data)
            if replay is not None:
                for row in replay_rows(
                    replay, after.rows, writer_format(output_path, after), trace
                ):
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
    result.report = write_report_for(out_dir, title, before, after, trace, info)
    return result


def write_report_for(out_dir, title, before, after, trace, info):
    from tuneforge.datatools.report import write_report

    return write_report(
        out_dir,
        title,
        before,
        after,
        trace,
        info,
        trace_file=str(trace.path) if trace.path else None,
    )


def writer_format(output_path: str | Path, after: Stats) -> str | None:
    return after.last_format


def replay_rows(
    replay: ReplayOptions, n_task: int, task_fmt: str | None, trace: Trace
) -> Iterator[Row]:
    """Replay rows so they make up ``replay.ratio`` of the training file, converted to its format."""
    import random

    from tuneforge.datatools.convert import convert_data
    from tuneforge.datatools.mix import choose, replay_count
    from tuneforge.datatools.rows import detect_file_format

    replay_fmt = detect_file_format(replay.file)
    task_fmt = task_fmt or replay_fmt
    n_replay = sum(1 for _ in read_dataset(replay.file, replay_fmt))
    picks = choose(
        n_replay, replay_count(n_task, replay.ratio), random.Random(replay.seed)
    )
    for i, row in enumerate(read_dataset(replay.file, replay_fmt)):
        for j in range(picks.get(i, 0)):
            data = row.data
            if replay_fmt != task_fmt:
                data, why = convert_data(row.data, replay_fmt, task_fmt, row.source)
                if data is None:
                    raise DataError(
                        f"{row.source}: replay row cannot join {task_fmt} data: {why}",
                        hint="convert the replay file first (tuneforge data convert)",
                    )
            new = Row(
                row.source if j == 0 else f"{row.source} (copy {j + 1})", data, task_fmt
            )
            trace.log(
                "replay",
                "added",
                new,
                f"replay row at ratio {replay.ratio}",
                kind="replay",
            )
            yield new


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
            "data.pipeline / data.replay work on alpaca, messages and text data, not on preference pairs",
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

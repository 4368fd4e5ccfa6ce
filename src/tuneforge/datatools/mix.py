"""Mixing data sets at given proportions, and the recipe's replay buffer.

Two passes per file (count, then write the sampled rows), so nothing is held in memory but row
indices. Without ``total`` the mix is the largest one that needs no repeated row; with a bigger
``total`` small sources are repeated (whole copies, then a seeded sample). Sources in different
formats are converted to one (see :func:`common_format`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tuneforge.config.pipeline import ReplayOptions
from tuneforge.datatools.convert import convert_data
from tuneforge.datatools.report import default_report_dir, write_report
from tuneforge.datatools.rows import JsonlWriter, Row, detect_file_format, read_dataset
from tuneforge.datatools.stats import Stats
from tuneforge.datatools.trace import TRACE_FILE, Trace
from tuneforge.errors import DataError


def parse_spec(spec: str) -> tuple[str, float]:
    """'path.jsonl:0.7' -> (path, 0.7)."""
    path, sep, weight = spec.rpartition(":")
    try:
        w = float(weight)
    except ValueError:
        w = -1.0
    if not sep or not path or w <= 0:
        raise DataError(
            f"mix source {spec!r} must be PATH:WEIGHT with a positive weight",
            hint="e.g. task.jsonl:0.7 general.jsonl:0.3",
        )
    return path, w


def _count(path: str, fmt: str) -> int:
    n = 0
    for _ in read_dataset(path, fmt):
        n += 1
    return n


def choose(n: int, k: int, rng: random.Random) -> Counter:
    """How many times each of n rows is taken to get k rows: whole copies first, then a sample."""
    if n == 0:
        raise DataError("cannot sample from an empty source")
    picks: Counter = Counter({i: k // n for i in range(n)} if k >= n else {})
    for i in rng.sample(range(n), k % n if k >= n else k):
        picks[i] += 1
    return picks


def plan_mix(counts: list[int], weights: list[float], total: int | None) -> list[int]:
    share = [w / sum(weights) for w in weights]
    if total is None:
        total = int(min(n / s for n, s in zip(counts, share)))
    return [round(s * total) for s in share]


def common_format(formats: list[str]) -> str:
    """The format a mix is written in: the sources' own when they agree, else one they convert to.

    Alpaca and prompt-completion sources meet as prompt-completion, since every alpaca row is a
    prompt and its completion; any other mix becomes messages, the most general chat format (a row
    that cannot be written in it, such as a prompt with assistant turns, stops the mix naming it).
    """
    kinds = set(formats)
    if len(kinds) == 1:
        return formats[0]
    return "prompt_completion" if kinds == {"alpaca", "prompt_completion"} else "messages"


def mix_rows(
    sources: list[tuple[str, float]],
    total: int | None = None,
    seed: int = 0,
    fmt: str = "auto",
    trace: Trace | None = None,
    before: Stats | None = None,
) -> Iterator[Row]:
    """Rows of the mix, source by source (the trainer shuffles); converted to one format if formats differ.

    With a trace, rows left out of the mix and repeated rows are written to it.
    """
    formats = [detect_file_format(p, fmt) for p, _ in sources]
    common = common_format(formats)
    counts = [_count(p, f) for (p, _), f in zip(sources, formats)]
    takes = plan_mix(counts, [w for _, w in sources], total)
    rng = random.Random(seed)
    for (path, _), f, n, k in zip(sources, formats, counts, takes):
        picks = choose(n, k, rng)
        for i, row in enumerate(read_dataset(path, f)):
            if before is not None:
                before.add(row)
            if trace is not None and i not in picks:
                trace.log(
                    "mix",
                    "removed",
                    row,
                    f"not sampled ({path} gives {k} of its {n} rows)",
                    kind="not sampled",
                )
            for j in range(picks.get(i, 0)):
                data = row.data
                if f != common:
                    data, why = convert_data(row.data, f, common, row.source)
                    if data is None:
                        raise DataError(f"{row.source}: cannot mix: {why}")
                new = Row(
                    row.source if j == 0 else f"{row.source} (copy {j + 1})",
                    data,
                    common,
                )
                if trace is not None and j > 0:
                    trace.log(
                        "mix",
                        "added",
                        new,
                        f"repeated ({path} gives {k} rows from {n})",
                        kind="repeated",
                    )
                yield new


def replay_count(n_task: int, ratio: float) -> int:
    """Replay rows so that they make up ``ratio`` of task + replay."""
    return round(n_task * ratio / (1 - ratio))


def replay_rows(
    replay: ReplayOptions, n_task: int, task_fmt: str | None, trace: Trace
) -> Iterator[Row]:
    """Replay rows so they make up ``replay.ratio`` of the training file, converted to its format."""
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


def write_mix(
    sources: list[tuple[str, float]],
    out: str | Path,
    total: int | None = None,
    seed: int = 0,
    report_dir: str | Path | None = None,
) -> dict:
    """Write the mix plus its report and trace (rows left out, rows repeated) to ``OUT-report/``."""
    out = Path(out)
    if any(Path(p).resolve() == out.resolve() for p, _ in sources):
        raise DataError(
            f"output {out} is one of the inputs", hint="write the mix to a new file"
        )
    rep = Path(report_dir) if report_dir else default_report_dir(out)
    trace = Trace(rep / TRACE_FILE)
    before, after = Stats(), Stats()
    per_source: Counter = Counter()
    try:
        with JsonlWriter(out) as w:
            for row in mix_rows(sources, total, seed, trace=trace, before=before):
                w.write(row.data)
                after.add(row)
                per_source[row.source.rsplit(":", 1)[0]] += 1
    finally:
        trace.close()
    info = {
        "sources": ", ".join(f"{p}:{wt}" for p, wt in sources),
        "output": str(out),
        "seed": seed,
    }
    report = write_report(rep, "tuneforge data mix", before, after, trace, info)
    return {
        "rows": w.count,
        "per_source": dict(per_source),
        "report": str(report["html"]),
        "trace": str(trace.path),
    }

"""``tuneforge compare RUN_A RUN_B [...]``: several runs side by side, on the same data.

Each run's ``eval/results.json`` (written by ``tuneforge train`` or ``tuneforge eval``) is read and
the evaluated model of each run (``tuned``, else the last one evaluated, which is how the runner
orders them) becomes one column. Runs evaluated on different files are refused: their numbers
would sit side by side and mean nothing together. With ``data`` every run is first evaluated on
that one file, into the comparison's own directory (the runs' own eval/ stays as it was).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError
from tuneforge.evaluate import report_sections as sections
from tuneforge.evaluate.report import headline
from tuneforge.evaluate.report_charts import plot_bounded_metrics
from tuneforge.evaluate.report_tables import mappings, model_table
from tuneforge.observe.render import Fact, Flag, Page, Paragraph, Section, write_page

RESULTS_FILE = "results.json"
# evaluate(run, data, out_dir) -> results dict; tuneforge.evaluate.command.evaluate_target by default
Evaluate = Callable[[Path, Path, Path], dict]


@dataclass(frozen=True)
class RunResults:
    """One column of the comparison: a run's label, its results file and the model shown."""

    label: str
    path: Path
    results: dict[str, Any]
    model: str

    def section(self, key: str) -> Any:
        """This run's entry of a per-model results key (``business``, ``safety``, ...), or None."""
        value = self.results.get(key)
        return value.get(self.model) if isinstance(value, Mapping) else None


def compare_runs(
    runs: Sequence[Path],
    *,
    out: Path | None = None,
    data: Path | None = None,
    limit: int | None = None,
    evaluate: Evaluate | None = None,
) -> tuple[Path, Path]:
    """Write the comparison report (``report.md`` + ``report.html``) and return both paths.

    ``runs`` are run directories (with ``eval/results.json``), eval directories or results files.
    Without ``data`` they must have been evaluated on the same data file; with it, each run is
    evaluated on ``data`` first (``evaluate``, the library's evaluation by default, on the first
    ``limit`` examples when given).
    """
    if len(runs) < 2:
        raise DataError("compare needs at least two runs", "e.g. tuneforge compare runs/a runs/b")
    labels = _labels([Path(r) for r in runs])
    out_dir = Path(out) if out else Path("compare-" + "-vs-".join(labels))
    if data is not None:
        evaluate = evaluate or _evaluate_target(limit)
        loaded = [_from_results(label, out_dir / f"eval-{label}" / RESULTS_FILE, evaluate(Path(run), Path(data), out_dir / f"eval-{label}"))
                  for label, run in zip(labels, runs)]
    else:
        loaded = [load_run_results(label, Path(run)) for label, run in zip(labels, runs)]
        check_same_data(loaded)
    return write_page(comparison_page(loaded, out_dir), out_dir)


def results_path(run: Path) -> Path:
    """RUN/eval/results.json, DIR/results.json or the file itself, whichever exists first."""
    for candidate in (run / "eval" / RESULTS_FILE, run / RESULTS_FILE, run):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{run}: no evaluation results ({run / 'eval' / RESULTS_FILE} does not exist)",
        f"evaluate it first (tuneforge eval {run} --data FILE), or pass --data FILE to compare to evaluate every run",
    )


def load_run_results(label: str, run: Path) -> RunResults:
    path = results_path(run)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})", "re-run tuneforge eval to rewrite it") from exc
    return _from_results(label, path, results)


def _from_results(label: str, path: Path, results: Any) -> RunResults:
    models = mappings(results.get("models")) if isinstance(results, Mapping) else {}
    if not models:
        raise DataError(f"{path}: no 'models' section", "this is not an evaluation results file written by tuneforge eval")
    model = "tuned" if "tuned" in models else list(models)[-1]
    return RunResults(label, path, dict(results), model)


def check_same_data(runs: Sequence[RunResults]) -> None:
    """Refuse runs evaluated on different files, naming both results files and both data files."""
    first = runs[0]
    for other in runs[1:]:
        if not _same_file(first.results.get("data"), other.results.get("data")):
            raise DataError(
                f"{first.path} was evaluated on {first.results.get('data')!r} but {other.path} on "
                f"{other.results.get('data')!r}: their numbers are not comparable",
                "pass --data FILE to evaluate every run on the same file first",
            )


def _same_file(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if str(a) == str(b):
        return True
    try:
        return Path(a).resolve().samefile(Path(b).resolve())
    except OSError:  # a file that no longer exists: only an equal path can be matched
        return False


def _labels(runs: list[Path]) -> list[str]:
    """Column titles: the directory's name (the run's for RUN/eval or RUN/eval/results.json), made unique."""
    labels = []
    for run in runs:
        path = (run.parent if run.suffix == ".json" else run).resolve()
        if path.name == "eval" and path.parent.name:
            path = path.parent
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name or "run")
        labels.append(name if name not in labels else f"{name}-{len(labels) + 1}")
    return labels


def comparison_page(runs: Sequence[RunResults], out_dir: Path) -> Page:
    """Runs as columns: headline metric, every shared metric, business, safety, forgetting, samples."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {r.label: dict(r.results["models"][r.model]) for r in runs}
    shared = [m for m in metrics[runs[0].label] if all(m in v for v in metrics.values())]
    shared_only = {label: {m: values[m] for m in shared} for label, values in metrics.items()}
    task_metric = runs[0].results.get("task_metric")
    found: list[Section | None] = [
        Section("Metrics shared by every run", [model_table(metrics, keys=shared), *_unshared_note(metrics, shared)]),
        sections.business_section(_column(runs, "business"), _column(runs, "latencies"), out_dir),
        sections.safety_section(_column(runs, "safety")),
        sections.forgetting_section(_column(runs, "forgetting")),
        sections.judge_section(_column(runs, "judge_rubric")),
        sections.lm_eval_section(_column(runs, "lm_eval")),
        *sections.image_sections([("Scores in [0, 1] per run", plot_bounded_metrics(shared_only, out_dir / "metrics.png"))]),
        sections.samples_section(_samples(runs), [r.label for r in runs], title="Sample outputs side by side"),
    ]
    return Page(
        title="Comparison of runs",
        headline=headline(task_metric, metrics, arrow="") if task_metric in shared else None,
        flags=_flags(runs),
        facts=_facts(runs),
        sections=[s for s in found if s is not None],
    )


def _column(runs: Sequence[RunResults], key: str) -> dict[str, Any]:
    return {r.label: r.section(key) for r in runs if r.section(key) is not None}


def _unshared_note(metrics: Mapping[str, Mapping[str, Any]], shared: list[str]) -> list[Paragraph]:
    others = {m for v in metrics.values() for m in v} - set(shared)
    return [Paragraph("Not reported by every run, so not compared: " + ", ".join(sorted(others)) + ".")] if others else []


def _facts(runs: Sequence[RunResults]) -> list[Fact]:
    facts = [Fact(f"run {r.label} (model {r.model})", str(r.path), code=True) for r in runs]
    facts.append(Fact("data", str(runs[0].results.get("data")), code=True))
    counts = list(dict.fromkeys(str(r.results.get("n_examples")) for r in runs))  # run order, each once
    facts.append(Fact("examples", ", ".join(counts)))
    return facts


def _flags(runs: Sequence[RunResults]) -> list[Flag]:
    found = [flag for r in runs for flag in sections.flags(r.results, prefix=f"{r.label}: ")]
    if len({r.results.get("n_examples") for r in runs}) > 1:
        counts = ", ".join(f"{r.label} {r.results.get('n_examples')}" for r in runs)
        found.insert(0, Flag("warning", f"the runs were scored on different numbers of examples ({counts}): a --limit differed"))
    return found


def _samples(runs: Sequence[RunResults]) -> list[dict[str, Any]]:
    """The first run's samples with every run's output for the same prompt (matched by prompt text)."""
    by_prompt = [
        {str(s.get("prompt")): s for s in r.results.get("samples") or [] if isinstance(s, Mapping)} for r in runs
    ]
    merged = []
    for sample in runs[0].results.get("samples") or []:
        if not isinstance(sample, Mapping):
            continue
        prompt = str(sample.get("prompt"))
        outputs = {
            r.label: str((found[prompt].get("outputs") or {}).get(r.model, ""))
            for r, found in zip(runs, by_prompt)
            if prompt in found
        }
        merged.append({"prompt": prompt, "reference": sample.get("reference", ""), "outputs": outputs})
    return merged


def _evaluate_target(limit: int | None) -> Evaluate:
    """The library's evaluation of one run on the comparison's data file, into the comparison's directory."""

    def evaluate(run: Path, data: Path, out_dir: Path) -> dict:
        # lazy: evaluate.command imports torch and transformers (45 s measured on a busy 2-core EPYC); comparing existing results needs neither
        from tuneforge.evaluate.command import evaluate_target

        return evaluate_target(str(run), data, out=out_dir, limit=limit)

    return evaluate

"""Before/after evaluation report: ``report.md`` for the repository, ``report.html`` to share.

This module only decides what the report shows, from results.json (docs/EVALUATION.md lists its
keys); ``observe/render.py`` draws it (Jinja2 templates, escaping, self-contained HTML). Every
section of results.json that is present is shown, and an absent one is skipped: the report never
invents a number.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError
from tuneforge.evaluate import report_sections as sections
from tuneforge.evaluate.report_charts import plot_bounded_metrics
from tuneforge.evaluate.report_tables import fmt
from tuneforge.observe.plots import plot_loss
from tuneforge.observe.render import Fact, Page, Section, write_page


def write_report(out_dir: Path, results: dict[str, Any], *, metrics_jsonl: Path | None = None) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and their PNGs into ``out_dir``; return (md, html) paths.

    The first model in ``results["models"]`` is read as "before" and the second as "after", which is
    how the evaluation code orders them (base first); with exactly two models the report shows the
    change, with any other number it lists the values side by side.
    """
    out_dir = Path(out_dir)
    models = _models(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = Page(
        title="Evaluation report",
        headline=headline(results.get("task_metric"), models),
        flags=sections.flags(results),
        facts=_facts(results, models),
        sections=_sections(results, models, out_dir, metrics_jsonl),
    )
    return write_page(page, out_dir)


def _sections(
    results: Mapping[str, Any], models: dict[str, dict[str, Any]], out_dir: Path, metrics_jsonl: Path | None
) -> list[Section]:
    """The contract's sections in reading order: the numbers first, the charts, then the samples."""
    found: list[Section | None] = [
        *sections.metric_tables(models, results.get("timings")),
        sections.per_category_section(results.get("per_category")),
        *sections.confusion_sections(results.get("confusion")),
        sections.business_section(results.get("business"), results.get("latencies"), out_dir),
        sections.safety_section(results.get("safety")),
        sections.forgetting_section(results.get("forgetting")),
        sections.judge_section(results.get("judge_rubric")),
        sections.pairwise_section(results.get("pairwise")),
        sections.lm_eval_section(results.get("lm_eval")),
        *sections.image_sections(
            [
                ("Scores in [0, 1] per model", plot_bounded_metrics(models, out_dir / "metrics.png")),
                ("Training and validation loss", plot_loss(Path(metrics_jsonl), out_dir / "loss.png") if metrics_jsonl else None),
            ]
        ),
        sections.samples_section(results.get("samples"), list(models)),
    ]
    return [s for s in found if s is not None]


def _models(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-model metric dicts, checked, because a hand-edited results file is common."""
    models = results.get("models")
    if not isinstance(models, Mapping) or not models:
        raise DataError(
            "evaluation results have no 'models' section",
            "expected {'models': {'base': {...metrics}, 'tuned': {...}}}, as written by the evaluation step",
        )
    for name, metrics in models.items():
        if not isinstance(metrics, Mapping):
            raise DataError(f"evaluation results: metrics of model {name!r} are not a mapping of name -> value")
    return {str(name): dict(metrics) for name, metrics in models.items()}


def _facts(results: Mapping[str, Any], models: Mapping[str, Any]) -> list[Fact]:
    facts = [Fact("models", ", ".join(models))]
    if results.get("data") is not None:
        facts.append(Fact("data", str(results["data"])))
    if results.get("n_examples") is not None:
        facts.append(Fact("examples", str(results["n_examples"])))
    if results.get("task_metric"):
        facts.append(Fact("task metric", str(results["task_metric"])))
    return facts


def headline(task_metric: str | None, models: Mapping[str, Mapping[str, Any]], arrow: str = " -> ") -> str | None:
    """E.g. ``json_fields: 0.04 -> 0.93`` for a before/after pair: the one number a reader wants."""
    if not task_metric:
        return None
    values = [metrics.get(task_metric) for metrics in models.values()]
    if len(values) == 1:
        return f"{task_metric}: {fmt(values[0])} ({next(iter(models))})"
    if len(values) == 2 and arrow:
        return f"{task_metric}: {fmt(values[0])}{arrow}{fmt(values[1])}"
    return f"{task_metric}: " + ", ".join(f"{name} {fmt(v)}" for name, v in zip(models, values))

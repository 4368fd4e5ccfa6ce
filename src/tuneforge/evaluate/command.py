"""``tuneforge eval``: evaluate a run (optionally with its base, for before/after) or any model."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from tuneforge.data.formats import load_records
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.runner import (
    EvalSettings,
    ModelEval,
    eval_records_from,
    evaluate_model,
    write_results,
)
from tuneforge.models.load import load_model
from tuneforge.runs import METRICS_FILE, LoadedRun
from tuneforge.targets import load_target
from tuneforge.models.precision import choose_precision


def evaluate_target(
    target: str,
    data: Path,
    *,
    with_base: bool = False,
    metrics: list[str] | None = None,
    out: Path | None = None,
    limit: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 16,
    precision: str = "auto",
    adapter: str | None = None,
    weights: dict[str, float] | None = None,
    console: Console | None = None,
) -> dict:
    """Score a run or model on ``data`` and write eval/*.json and the report; returns the results dict.

    For an adapter bundle, ``adapter`` (or ``weights``, a weighted mix) picks what is evaluated, and
    the results go to BUNDLE/eval-<adapter> so each adapter keeps its own report.
    """
    console = console or Console(stderr=True)
    if precision not in ("auto", "fp32", "bf16"):
        raise TuneforgeError(f"--precision {precision!r} is not one of auto, fp32, bf16")
    records = eval_records_from(load_records(data).records, str(data))[: limit or None]
    loaded = load_target(target, adapter=adapter, weights=weights)
    prec = choose_precision(precision)
    if isinstance(loaded, LoadedRun):
        model, tokenizer, recipe = loaded.model, loaded.tokenizer, loaded.recipe
        metric_names = metrics or recipe.eval.metrics
        settings = EvalSettings(
            metrics=metric_names,
            max_new_tokens=max_new_tokens or recipe.eval.max_new_tokens,
            batch_size=batch_size,
            max_length=recipe.data.max_length,
            num_samples=recipe.eval.num_samples,
            task_metric=recipe.headline_metric if recipe.headline_metric in metric_names else None,
            autocast_dtype=prec.autocast_dtype,
        )
        out_dir = out or loaded.path / (f"eval-{loaded.adapter}" if loaded.adapters else "eval")
        metrics_jsonl: Path | None = loaded.path / METRICS_FILE if (loaded.path / METRICS_FILE).is_file() else None
    else:
        if with_base:
            raise TuneforgeError("--base compares a run with its base model; the target is a model, not a run directory")
        model, tokenizer = loaded
        settings = EvalSettings(
            metrics=metrics or ["exact_match"], max_new_tokens=max_new_tokens or 128, batch_size=batch_size, autocast_dtype=prec.autocast_dtype
        )
        out_dir = out or Path("eval-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(target).name or target))
        metrics_jsonl = None
    console.print(f"evaluating on {len(records)} examples of {data} (precision {prec.name})")
    evals: list[ModelEval] = []
    if with_base and isinstance(loaded, LoadedRun):
        if loaded.is_adapter:
            with model.disable_adapter():  # the base is the same weights with the adapter switched off
                evals.append(evaluate_model("base", model, tokenizer, records, settings, console))
        else:
            base = load_model(loaded.recipe.model.name)
            evals.append(evaluate_model("base", base, tokenizer, records, settings, console))
            del base
    name = "tuned" if isinstance(loaded, LoadedRun) else "model"
    evals.append(evaluate_model(name, model, tokenizer, records, settings, console))
    results = write_results(out_dir, str(data), records, evals, settings, metrics_jsonl=metrics_jsonl)
    for ev in evals:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in ev.scores.items() if not k.startswith("json_field/"))
        console.print(f"[bold]{ev.name}[/]: {shown}", highlight=False)
    console.print(f"report: {out_dir / 'report.html'}")
    return results

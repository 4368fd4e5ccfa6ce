"""``tuneforge eval``: evaluate a run (optionally with its base, for before/after) or any model.

The flags are built into the same :class:`EvalSection` a recipe's ``eval:`` is (over the run's own
section when the target is a run), so a bad flag fails with the recipe's ``eval.<key>`` message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console

from tuneforge.config.eval import EvalSection
from tuneforge.config.load import format_validation_error
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.evaluate.eval_data import load_eval_data
from tuneforge.evaluate.inference_weights import store_linears_for_inference
from tuneforge.evaluate.runner import (
    EvalSettings,
    ModelEval,
    eval_records_from,
    evaluate_model,
    write_results,
)
from tuneforge.models.load import load_model
from tuneforge.models.precision import choose_precision
from tuneforge.runs import METRICS_FILE, LoadedRun
from tuneforge.targets import load_target


class _EvalFlags(BaseModel):
    """``eval:`` alone, so flag errors carry the recipe's key paths (eval.metrics.0, eval.regex...)."""

    model_config = ConfigDict(extra="forbid")
    eval: EvalSection


def eval_options(base: EvalSection, flags: dict[str, Any]) -> EvalSection:
    """``base`` with the given flags (None = not given) set, validated as a recipe's eval section would be.

    A flag may be a nested dict (``{"judge": {"enabled": True}}``): it is merged into the section's
    own sub-section, so ``--judge`` on a run keeps the judge client its recipe chose.
    """
    data = {"eval": _merged(base.model_dump(), flags)}
    try:
        return _EvalFlags.model_validate(data).eval
    except ValidationError as exc:
        raise ConfigError("tuneforge eval flags are not valid:\n" + format_validation_error(exc, _EvalFlags)) from None


def _merged(base: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in flags.items():
        if isinstance(value, dict):
            given = {k: v for k, v in value.items() if v is not None}
            if given:
                out[key] = _merged(out[key], given) if isinstance(out.get(key), dict) else given
        elif value is not None:
            out[key] = value
    return out


def probe_flags(*, safety: bool | None, forgetting: bool | None, judge: bool | None, pairwise: bool | None, judge_limit: int | None) -> dict[str, Any]:
    """The probe flags of ``tuneforge eval`` as nested ``eval:`` keys (None = not given, the run's own setting stays)."""
    return {
        "safety": {"enabled": safety},
        "forgetting": {"enabled": forgetting},
        "judge": {"enabled": judge, "pairwise": pairwise, "limit": judge_limit},
    }


def evaluate_target(
    target: str,
    data: Path,
    *,
    with_base: bool = False,
    metrics: list[str] | None = None,
    out: Path | None = None,
    limit: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    precision: str = "auto",
    adapter: str | None = None,
    weights: dict[str, float] | None = None,
    options: dict[str, Any] | None = None,
    console: Console | None = None,
) -> dict:
    """Score a run or model on ``data`` and write eval/*.json and the report; returns the results dict.

    ``options`` are further ``eval:`` keys from flags (labels, regex, json_schema, price_per_hour,
    lm_eval, ...). For an adapter bundle, ``adapter`` (or ``weights``, a weighted mix) picks what is
    evaluated, and the results go to BUNDLE/eval-<adapter> so each adapter keeps its own report.
    """
    console = console or Console(stderr=True)
    if precision not in ("auto", "fp32", "bf16"):
        raise TuneforgeError(f"--precision {precision!r} is not one of auto, fp32, bf16")
    flags = {**(options or {}), "metrics": metrics, "max_new_tokens": max_new_tokens, "batch_size": batch_size, "data": str(data)}
    records = eval_records_from(load_eval_data(data).records, str(data))[: limit or None]
    loaded = load_target(target, adapter=adapter, weights=weights)
    prec = choose_precision(precision)
    if isinstance(loaded, LoadedRun):
        model, tokenizer, recipe = loaded.model, loaded.tokenizer, loaded.recipe
        # --metrics replaces the recipe's list, so its task_metric may no longer apply: the first metric leads
        section = eval_options(recipe.eval.model_copy(update={"task_metric": None}) if metrics else recipe.eval, flags)
        max_length = recipe.data.max_length
        out_dir = out or loaded.path / (f"eval-{loaded.adapter}" if loaded.adapters else "eval")
        metrics_jsonl: Path | None = loaded.path / METRICS_FILE if (loaded.path / METRICS_FILE).is_file() else None
    else:
        if with_base:
            raise TuneforgeError("--base compares a run with its base model; the target is a model, not a run directory")
        model, tokenizer = loaded
        section = eval_options(EvalSection(), flags)
        max_length = 2048
        out_dir = out or Path("eval-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(target).name or target))
        metrics_jsonl = None
    settings = EvalSettings(
        metrics=section.metrics, max_new_tokens=section.max_new_tokens, batch_size=section.batch_size, max_length=max_length,
        num_samples=section.num_samples, task_metric=section.headline_key(), autocast_dtype=prec.autocast_dtype,
        options=section, out_dir=out_dir,
    )  # fmt: skip
    if store_linears_for_inference(model, prec.autocast_dtype):  # bit-identical under autocast, no per-token casts
        console.print(f"frozen linear weights stored in {str(prec.autocast_dtype).removeprefix('torch.')} for inference")
    console.print(f"evaluating on {len(records)} examples of {data} (precision {prec.name})")
    evals: list[ModelEval] = []
    if with_base and isinstance(loaded, LoadedRun):
        if loaded.is_adapter:
            with model.disable_adapter():  # the base is the same weights with the adapter switched off
                evals.append(evaluate_model("base", model, tokenizer, records, settings, console))
        else:
            base = load_model(loaded.recipe.model.name)
            store_linears_for_inference(base, prec.autocast_dtype)
            evals.append(evaluate_model("base", base, tokenizer, records, settings, console))
            del base
    name = "tuned" if isinstance(loaded, LoadedRun) else "model"
    evals.append(evaluate_model(name, model, tokenizer, records, settings, console))
    results = write_results(out_dir, str(data), records, evals, settings, metrics_jsonl=metrics_jsonl, console=console)
    for ev in evals:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in ev.scores.items() if not k.startswith("json_field/"))
        console.print(f"[bold]{ev.name}[/]: {shown}", highlight=False)
    console.print(f"report: {out_dir / 'report.html'}")
    return results

"""Evaluating one or more models on a held-out file and writing eval/*.json plus the report.

Used by ``tuneforge train`` (base before training, tuned after) and by ``tuneforge eval``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from transformers import PreTrainedTokenizerBase

from tuneforge.config.schema import Recipe
from tuneforge.data.prepare import prepare_chat
from tuneforge.data.records import ChatRecord
from tuneforge.data.render import render_prompt
from tuneforge.errors import DataError
from tuneforge.evaluate.generate import generate_batch
from tuneforge.evaluate.loss import evaluate_loss
from tuneforge.evaluate.metrics import compute_metrics
from tuneforge.evaluate.report import write_report


@dataclass
class EvalSettings:
    metrics: list[str]
    max_new_tokens: int = 128
    batch_size: int = 16
    max_length: int = 2048
    num_samples: int = 5
    task_metric: str | None = None
    autocast_dtype: torch.dtype | None = None


def eval_settings_for(recipe: Recipe, autocast_dtype: torch.dtype | None) -> EvalSettings:
    """The recipe's ``eval`` section, evaluated under the training run's autocast dtype."""
    return EvalSettings(
        metrics=recipe.eval.metrics,
        max_new_tokens=recipe.eval.max_new_tokens,
        batch_size=recipe.eval.batch_size,
        max_length=recipe.data.max_length,
        num_samples=recipe.eval.num_samples,
        task_metric=recipe.headline_metric,
        autocast_dtype=autocast_dtype,
    )


@dataclass
class ModelEval:
    name: str
    scores: dict[str, float]
    predictions: list[str]
    timings: dict[str, float] = field(default_factory=dict)


def evaluate_model(
    name: str,
    model,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[ChatRecord],
    settings: EvalSettings,
    console: Console | None = None,
) -> ModelEval:
    """Loss/perplexity on the reference answers, then greedy generation scored by the chosen metrics."""
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    examples, _ = prepare_chat(records, tokenizer, settings.max_length, "truncate")
    scores = evaluate_loss(model, examples, tokenizer.pad_token_id, batch_size=max(1, settings.batch_size // 2), autocast_dtype=settings.autocast_dtype)
    t1 = time.perf_counter()
    prompts = [render_prompt(tokenizer, r.as_dicts()) for r in records]
    references = [r.messages[-1].content for r in records]
    done = [0]

    def on_batch(n: int) -> None:
        done[0] += n
        console.print(f"  [{name}] generated {done[0]}/{len(prompts)}", highlight=False)

    predictions = generate_batch(
        model,
        tokenizer,
        prompts,
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        autocast_dtype=settings.autocast_dtype,
        on_batch=on_batch,
    )
    t2 = time.perf_counter()
    scores.update(compute_metrics(settings.metrics, predictions, references))
    return ModelEval(name, scores, predictions, {"loss_s": round(t1 - t0, 2), "generate_s": round(t2 - t1, 2)})


def write_results(
    out_dir: Path,
    data_path: str,
    records: Sequence[ChatRecord],
    evals: Sequence[ModelEval],
    settings: EvalSettings,
    *,
    metrics_jsonl: Path | None = None,
) -> dict:
    """eval/<name>.json, eval/predictions-<name>.jsonl, eval/results.json and report.md/.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for ev in evals:
        (out_dir / f"{ev.name}.json").write_text(json.dumps({"model": ev.name, "data": data_path, **ev.scores}, indent=2))
        with (out_dir / f"predictions-{ev.name}.jsonl").open("w", encoding="utf-8") as fh:
            for rec, pred in zip(records, ev.predictions):
                fh.write(json.dumps({"source": rec.source, "reference": rec.messages[-1].content, "prediction": pred}, ensure_ascii=False) + "\n")
    samples = [
        {
            "prompt": next((m.content for m in reversed(rec.messages) if m.role == "user"), ""),
            "reference": rec.messages[-1].content,
            "outputs": {ev.name: ev.predictions[i] for ev in evals},
        }
        for i, rec in enumerate(records[: settings.num_samples])
    ]
    results = {
        "data": data_path,
        "n_examples": len(records),
        "task_metric": settings.task_metric or (settings.metrics[0] if settings.metrics else None),
        "models": {ev.name: ev.scores for ev in evals},
        "samples": samples,
        "timings": {ev.name: ev.timings for ev in evals},
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    write_report(out_dir, results, metrics_jsonl=metrics_jsonl)
    return results


def eval_records_from(records: Sequence, source: str) -> list[ChatRecord]:
    """Generation metrics need chat records whose last turn is the assistant's reference answer."""
    chats = [r for r in records if isinstance(r, ChatRecord)]
    if len(chats) != len(records):
        raise DataError(f"{source}: generation metrics need alpaca or messages data, not raw text")
    bad = [r.source for r in chats if r.messages[-1].role != "assistant"]
    if bad:
        raise DataError(f"{bad[0]}: the last message must be the assistant's reference answer ({len(bad)} such rows)")
    return chats



def print_scores(console: Console, ev: ModelEval, headline: str | None) -> None:
    """One line: loss, perplexity and the headline metric of one evaluated model."""
    keys = [k for k in ("eval_loss", "perplexity", headline) if k and k in ev.scores]
    console.print("  " + ", ".join(f"{k} {ev.scores[k]:.4f}" for k in keys) + f"  ({ev.timings['generate_s']:.0f}s generation)")

"""Evaluating one or more models on a held-out file and writing eval/*.json plus the report.

Used by ``tuneforge train`` (base before training, tuned after) and by ``tuneforge eval``. Per model:
loss and perplexity, greedy generation scored by the string metrics, multiple choice by
log-likelihood, the per-category breakdown, the business figures of the generation pass, the
probes (safety, forgetting, rubric judge: evaluate/probes.py) and lm-eval tasks. Everything that
needs the model runs here, while the model is in the state being evaluated (the base is evaluated
before training changes it); the cross-model parts (pairwise judge, flags) run in write_results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from transformers import PreTrainedTokenizerBase

from tuneforge.config.eval import EvalSection
from tuneforge.config.schema import Recipe
from tuneforge.data.prepare import prepare_chat
from tuneforge.data.records import ChatRecord
from tuneforge.data.render import render_prompt
from tuneforge.errors import DataError
from tuneforge.evaluate.business import business_figures, request_latencies
from tuneforge.evaluate.choice import choice_accuracy, choice_predictions
from tuneforge.evaluate.generate import BatchTiming, generate_batch
from tuneforge.evaluate.lm_eval_run import run_lm_eval
from tuneforge.evaluate.loss import evaluate_loss
from tuneforge.evaluate.merged import merged_for_inference
from tuneforge.evaluate.shared_loss import SharedLoss, combined_loss, remaining_examples, shared_loss_for
from tuneforge.evaluate.metrics import check_metrics, classify, compute_metrics
from tuneforge.evaluate.probes import GenerateFn, probe_flags, run_model_probes, run_pairwise
from tuneforge.evaluate.report import write_report
from tuneforge.observe.memory import peak_rss_mb


@dataclass(frozen=True)
class Probes:
    """The probe entry points (evaluate/probes.py); tests pass stand-ins with the same signatures."""

    model: Callable[..., dict[str, dict]] = run_model_probes
    pairwise: Callable[..., dict | None] = run_pairwise
    flags: Callable[[dict, EvalSection], list[dict]] = probe_flags


@dataclass
class EvalSettings:
    metrics: list[str]
    max_new_tokens: int = 128
    batch_size: int = 16
    max_length: int = 2048
    num_samples: int = 5
    task_metric: str | None = None
    autocast_dtype: torch.dtype | None = None
    options: EvalSection = field(default_factory=EvalSection)  # label set, regex, price, probes, lm-eval...
    out_dir: Path | None = None  # where the probes write their per-item files (the results' folder)
    probes: Probes = field(default_factory=Probes)


def eval_settings_for(recipe: Recipe, autocast_dtype: torch.dtype | None, out_dir: Path | None = None) -> EvalSettings:
    """The recipe's ``eval`` section, evaluated under the training run's autocast dtype."""
    return EvalSettings(
        metrics=recipe.eval.metrics,
        max_new_tokens=recipe.eval.max_new_tokens,
        batch_size=recipe.eval.batch_size,
        max_length=recipe.data.max_length,
        num_samples=recipe.eval.num_samples,
        task_metric=recipe.headline_metric,
        autocast_dtype=autocast_dtype,
        options=recipe.eval,
        out_dir=out_dir,
    )


@dataclass
class ModelEval:
    name: str
    scores: dict[str, float]
    predictions: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    # results.json sections of this model, by key: business, latencies, confusion, per_category,
    # safety, forgetting, judge_rubric, lm_eval (eval_contract; absent when not computed)
    sections: dict[str, Any] = field(default_factory=dict)


def user_prompt(record: ChatRecord) -> str:
    """The last user turn: what a report and a judge show as the request."""
    return next((m.content for m in reversed(record.messages) if m.role == "user"), "")


def chat_generate(model, tokenizer: PreTrainedTokenizerBase, settings: EvalSettings) -> GenerateFn:
    """The probes' generate function: chat messages in, greedy completions out (chat template applied)."""

    def generate(chats: list[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
        prompts = [render_prompt(tokenizer, chat) for chat in chats]
        return generate_batch(
            model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=settings.batch_size, autocast_dtype=settings.autocast_dtype
        )

    return generate


def _peak_memory_mb(model) -> float:
    """CUDA: the peak allocated since the generation pass began; CPU: the process's peak RSS so far."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def _generate(
    name: str, model, tokenizer, prompts: Sequence[str], settings: EvalSettings, console: Console, on_prefill: SharedLoss | None = None
) -> tuple[list[str], list[BatchTiming]]:
    done = [0]

    def on_batch(n: int) -> None:
        done[0] += n
        console.print(f"  [{name}] generated {done[0]}/{len(prompts)}", highlight=False, markup=False)

    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings: list[BatchTiming] = []
    predictions = generate_batch(
        model, tokenizer, prompts, max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
        autocast_dtype=settings.autocast_dtype, on_batch=on_batch, timings=timings, on_prefill=on_prefill,
    )  # fmt: skip
    return predictions, timings


def score_answers(
    settings: EvalSettings, records: Sequence[ChatRecord], predictions: list[str], picks: list[int] | None
) -> dict[str, float]:
    """The string metrics (and choice accuracy when picks are given) of these records' answers."""
    references = [r.messages[-1].content for r in records]
    scores = compute_metrics(settings.metrics, predictions, references, settings.options)
    if picks is not None:
        scores.update(choice_accuracy(picks, records))
    return scores


def per_category(settings: EvalSettings, records: Sequence[ChatRecord], predictions: list[str], picks: list[int] | None) -> dict | None:
    """{category: {metric: value, "n": count}} when rows carry a category (rows without one: '(none)')."""
    categories = [getattr(r, "category", None) for r in records]
    if not any(categories):
        return None
    groups: dict[str, list[int]] = {}
    for i, category in enumerate(categories):
        groups.setdefault(category or "(none)", []).append(i)
    out = {}
    for category, idx in sorted(groups.items()):
        sub = [records[i] for i in idx]
        scores = score_answers(settings, sub, [predictions[i] for i in idx], [picks[i] for i in idx] if picks is not None else None)
        out[category] = {**scores, "n": len(idx)}
    return out


def _model_sections(name: str, model, tokenizer, records: Sequence[ChatRecord], settings: EvalSettings, predictions: list[str], console: Console) -> dict:
    """Probes and lm-eval on the model as it is now; each returned key is a results.json section."""
    options = settings.options
    sections: dict[str, Any] = {}
    if settings.out_dir is not None:
        found = settings.probes.model(
            name, chat_generate(model, tokenizer, settings), options, settings.out_dir, console,
            prompts=[user_prompt(r) for r in records], outputs=predictions,
        )  # fmt: skip
        sections.update(found)
    if options.lm_eval:
        console.print(f"  [{name}] lm-eval: {', '.join(options.lm_eval)}", highlight=False, markup=False)
        sections["lm_eval"] = run_lm_eval(
            model, tokenizer, options.lm_eval, limit=options.lm_eval_limit, batch_size=settings.batch_size, autocast_dtype=settings.autocast_dtype
        )
    return sections


def evaluate_model(
    name: str,
    model,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[ChatRecord],
    settings: EvalSettings,
    console: Console | None = None,
) -> ModelEval:
    """Loss/perplexity on the reference answers, greedy generation scored by the chosen metrics, then the rest.

    A LoRA adapter evaluated in fp32 is merged into (copies of) the base weights for the whole
    evaluation and the model is restored exactly afterwards (:mod:`tuneforge.evaluate.merged`).
    """
    console = console or Console(stderr=True)
    check_metrics(settings.metrics, settings.options)  # a typo or a broken user metric fails before any compute
    was_training = model.training
    model.eval()
    try:
        with merged_for_inference(model, settings.autocast_dtype) as merged:
            if merged:
                console.print(f"  [{name}] adapter merged into the weights for inference (fp32; restored afterwards)", highlight=False, markup=False)
            return _evaluate(name, model, tokenizer, records, settings, console)
    finally:
        model.train(was_training)


def _evaluate(name: str, model, tokenizer: PreTrainedTokenizerBase, records: Sequence[ChatRecord], settings: EvalSettings, console: Console) -> ModelEval:
    t0 = time.perf_counter()
    examples, _ = prepare_chat(records, tokenizer, settings.max_length, "truncate")
    prompts = [render_prompt(tokenizer, r.as_dicts()) for r in records]
    sources = [r.source for r in records]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    shared = shared_loss_for(examples, sources, prompt_ids, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    predictions, batch_timings = _generate(name, model, tokenizer, prompts, settings, console, on_prefill=shared)
    peak = _peak_memory_mb(model)
    t1 = time.perf_counter()
    rest = evaluate_loss(
        model, remaining_examples(examples, sources, shared), tokenizer.pad_token_id, batch_size=max(1, settings.batch_size // 2),
        autocast_dtype=settings.autocast_dtype,
    )  # fmt: skip
    scores = combined_loss(shared, rest)
    t2 = time.perf_counter()
    picks = None
    if "choice" in settings.metrics:
        if not any(getattr(r, "options", ()) for r in records):
            raise DataError("metric 'choice' needs multiple-choice rows (prompt, options, answer) in the eval data", hint="see docs/EVALUATION.md, or drop 'choice'")
        picks = choice_predictions(model, tokenizer, records, settings.options.choice_normalisation, autocast_dtype=settings.autocast_dtype)
    scores.update(score_answers(settings, records, predictions, picks))
    sections: dict[str, Any] = {
        "business": business_figures(batch_timings, price_per_hour=settings.options.price_per_hour, peak_memory_mb=peak),
        "latencies": request_latencies(batch_timings),
    }
    if "classification" in settings.metrics:
        sections["confusion"] = classify(predictions, [r.messages[-1].content for r in records], settings.options).table()
    breakdown = per_category(settings, records, predictions, picks)
    if breakdown is not None:
        sections["per_category"] = breakdown
    t3 = time.perf_counter()
    sections.update(_model_sections(name, model, tokenizer, records, settings, predictions, console))
    timings = {
        "loss_s": round(t2 - t1 + shared.seconds, 2),  # the examples scored on their own + those scored from the generation's prefill
        "generate_s": round(t1 - t0 - shared.seconds, 2),
        "score_s": round(t3 - t2, 2),
        "probes_s": round(time.perf_counter() - t3, 2),
        "loss_examples_from_prefill": len(shared.scored),
    }
    return ModelEval(name, scores, predictions, timings, sections)


def _samples(records: Sequence[ChatRecord], evals: Sequence[ModelEval], n: int) -> list[dict]:
    return [
        {"prompt": user_prompt(rec), "reference": rec.messages[-1].content, "outputs": {ev.name: ev.predictions[i] for ev in evals}}
        for i, rec in enumerate(records[:n])
    ]


def write_results(
    out_dir: Path,
    data_path: str,
    records: Sequence[ChatRecord],
    evals: Sequence[ModelEval],
    settings: EvalSettings,
    *,
    metrics_jsonl: Path | None = None,
    console: Console | None = None,
) -> dict:
    """eval/<name>.json, eval/predictions-<name>.jsonl, eval/results.json and report.md/.html."""
    console = console or Console(stderr=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    for ev in evals:
        (out_dir / f"{ev.name}.json").write_text(json.dumps({"model": ev.name, "data": data_path, **ev.scores}, indent=2))
        with (out_dir / f"predictions-{ev.name}.jsonl").open("w", encoding="utf-8") as fh:
            for rec, pred in zip(records, ev.predictions):
                fh.write(json.dumps({"source": rec.source, "reference": rec.messages[-1].content, "prediction": pred}, ensure_ascii=False) + "\n")
    results: dict[str, Any] = {
        "data": data_path,
        "n_examples": len(records),
        "task_metric": settings.task_metric or settings.options.headline_key(),
        "models": {ev.name: ev.scores for ev in evals},
        "samples": _samples(records, evals, settings.num_samples),
        "timings": {ev.name: ev.timings for ev in evals},
    }
    for ev in evals:
        for key, section in ev.sections.items():
            results.setdefault(key, {})[ev.name] = section
    if len(evals) >= 2:
        pairwise = settings.probes.pairwise(
            [user_prompt(r) for r in records], {ev.name: ev.predictions for ev in evals}, settings.options, out_dir, console
        )
        if pairwise is not None:
            results["pairwise"] = pairwise
    flags = settings.probes.flags(results, settings.options)
    if flags:
        results["flags"] = flags
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

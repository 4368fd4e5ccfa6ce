"""The nlft recipe: critiques of each response, three prompts per row, token-weighted training, top to bottom.

Rows are alpaca / messages data whose final assistant turn is the response y to learn from, with an
optional reference answer (``objective.nlft.reference_column``; without one the response is its own
reference), an optional ready critique and an optional correct flag. Missing critiques come from the
judge (``objective.nlft.judge``: local model or OpenAI-compatible endpoint), asked to critique y given
the reference and to end with a verdict line; every critique is cached in RUN/nlft/critiques.jsonl, so
a rerun or --resume asks only for the missing ones. The loss is :mod:`tuneforge.objectives.nlft`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.nlft import NlftOptions
from tuneforge.config.schema import Recipe
from tuneforge.data.readers import read_rows
from tuneforge.data.records import ChatRecord, Message, RawRow
from tuneforge.data.render import IGNORE_INDEX, render_chat
from tuneforge.datatools.judge import JudgeBackend, make_backend
from tuneforge.errors import DataError
from tuneforge.methods import apply_method, load_base_model, method_callbacks, planned_optimizer_steps
from tuneforge.models.load import load_tokenizer
from tuneforge.recipes.common import TrainResult, evaluate_base, finish, fit, load_run_data, planned_speed, read_chat, report_parameters, start_run
from tuneforge.train.arguments import training_arguments
from tuneforge.train.callbacks import run_callbacks
from tuneforge.train.nlft_trainer import NlftExample, make_nlft_trainer

CRITIC_SYSTEM = "You are a careful grader. Compare a response with a reference answer and point out every error in the response."
_VERDICT = re.compile(r"verdict\W{0,5}(correct|incorrect)", re.IGNORECASE)


def critique_prompt(question: str, reference: str, response: str) -> str:
    return (
        f"Question:\n{question}\n\nReference answer:\n{reference}\n\nResponse:\n{response}\n\n"
        "Critique the response against the reference: name each wrong step or value, briefly. "
        "End with one line 'Verdict: correct' or 'Verdict: incorrect'."
    )


def parse_verdict(critique: str) -> bool | None:
    """True / False from the critique's last verdict line; None when it has none."""
    found = _VERDICT.findall(critique)
    return found[-1].lower() == "correct" if found else None


def _as_bool(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    return None


def split_response(record: ChatRecord) -> tuple[list[Message], str]:
    """(the messages before the final assistant turn, that turn's text)."""
    if not record.messages or record.messages[-1].role != "assistant":
        raise DataError(f"{record.source}: nlft needs a row ending in the assistant response", hint="use alpaca rows or messages ending in an assistant turn")
    return list(record.messages[:-1]), record.messages[-1].content


def with_context(record: ChatRecord, label: str, text: str) -> ChatRecord:
    """The record with ``label: text`` appended to its last user message (the reference or critique prompt)."""
    context, response = split_response(record)
    last = max(i for i, m in enumerate(context) if m.role == "user")
    context[last] = Message("user", f"{context[last].content}\n\n{label}:\n{text}")
    return ChatRecord((*context, Message("assistant", response)), record.source, record.completion_start)


def _key(question: str, response: str, reference: str) -> str:
    return hashlib.sha256(json.dumps([question, response, reference]).encode()).hexdigest()[:16]


def _cached(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return {row["key"]: row for row in rows}


def row_columns(path: str) -> dict[str, dict]:
    """The raw columns of each row by its source (file:line), for the reference / critique / correct columns."""
    return {row.source: row.data for row in read_rows(path) if isinstance(row, RawRow) and isinstance(row.data, dict)}


def critiques(records: Sequence[ChatRecord], columns: dict[str, dict], options: NlftOptions, cache: Path, judge: JudgeBackend | None) -> list[dict]:
    """One {key, source, reference, critique, correct, from} per record: from the row, the cache, or the judge."""
    cached, rows, ask = _cached(cache), [], []
    for record in records:
        context, response = split_response(record)
        raw = columns.get(record.source, {})
        question = next(m.content for m in reversed(context) if m.role == "user")
        reference = str(raw.get(options.reference_column) or response)
        key = _key(question, response, reference)
        row = {"key": key, "source": record.source, "reference": reference, "critique": raw.get(options.critique_column), "from": "row"}
        if row["critique"] is None and key in cached:
            row.update(critique=cached[key]["critique"], **{"from": "cache"})
        if row["critique"] is None:
            ask.append((len(rows), critique_prompt(question, reference, response)))
        flag = _as_bool(raw.get(options.correct_column))
        row["correct"] = flag
        rows.append(row)
    if ask:
        if judge is None:
            judge = make_backend(options.judge, system=CRITIC_SYSTEM)
        for (i, _), reply in zip(ask, judge.ask([p for _, p in ask]), strict=True):
            rows[i].update(critique=reply, **{"from": "judge"})
    for record, row in zip(records, rows, strict=True):
        if row["correct"] is None:
            verdict = parse_verdict(str(row["critique"]))
            row["correct"] = verdict if verdict is not None else split_response(record)[1].strip() == row["reference"].strip()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def nlft_examples(records: Sequence[ChatRecord], notes: Sequence[dict], tokenizer, max_length: int) -> tuple[list[NlftExample], list[str]]:
    """The three views of each record; rows whose views are too long or tokenise y differently are dropped (sources returned)."""
    examples, dropped = [], []
    for record, note in zip(records, notes, strict=True):
        prompted = (with_context(record, "Reference answer", note["reference"]), with_context(record, "Critique", str(note["critique"])))
        views = [render_chat(tokenizer, r) for r in (record, *prompted)]
        trained = [[t for t in v.labels if t != IGNORE_INDEX] for v in views]
        if any(len(v.input_ids) > max_length for v in views) or not trained[0] or any(t != trained[0] for t in trained[1:]):
            dropped.append(record.source)
            continue
        examples.append(NlftExample(*views, correct=bool(note["correct"])))
    return examples, dropped


def build_nlft_examples(run, data, tokenizer, judge: JudgeBackend | None) -> list[NlftExample]:
    """Critiques (cached), the three views, and data_report.json; prints the correct / incorrect counts."""
    recipe, options = run.recipe, run.recipe.objective.nlft
    records = [r for r in data.train.records if isinstance(r, ChatRecord)]
    notes = critiques(records, row_columns(data.train.path), options, run.run_dir / "nlft" / "critiques.jsonl", judge)
    examples, dropped = nlft_examples(records, notes, tokenizer, recipe.data.max_length)
    correct = sum(ex.correct for ex in examples)
    report = {"train_examples": len(examples), "correct": correct, "incorrect": len(examples) - correct, "dropped": dropped,
              "critiques_from": {k: sum(n["from"] == k for n in notes) for k in ("row", "cache", "judge")}}  # fmt: skip
    if run.main:
        (run.run_dir / "data_report.json").write_text(json.dumps({"nlft": report}, indent=2))
    run.console.print(
        f"[bold]nlft[/]: {len(examples)} examples ({correct} correct, {len(examples) - correct} incorrect), "
        f"{len(dropped)} dropped; critiques {report['critiques_from']}"
    )
    if not examples:
        raise DataError(f"nlft: no usable rows in {data.train.path}", hint="check data.max_length and that each row ends in an assistant response")
    run.train_examples = len(examples)
    return examples


def train_nlft(
    recipe: Recipe, *, resume: bool = False, console: Console | None = None, callbacks: Sequence[TrainerCallback] = (), judge: JudgeBackend | None = None
) -> TrainResult:
    """Run an nlft recipe; ``judge`` replaces objective.nlft.judge (tests pass a stub)."""
    run = start_run(recipe, resume, console)
    data = load_run_data(run, read_chat, read_eval=read_chat)
    tokenizer = load_tokenizer(recipe.model.name)
    train_ex = build_nlft_examples(run, data, tokenizer, judge)
    model = load_base_model(recipe.model.name, recipe.method, dtype=torch.float32)
    model.config.use_cache = False
    evals = evaluate_base(run, model, tokenizer, data.eval_records)
    t = recipe.training
    model = apply_method(model, recipe.method, total_steps=planned_optimizer_steps(len(train_ex), t.batch_size, t.grad_accum, t.epochs, t.max_steps))
    report_parameters(run, model)
    args = training_arguments(recipe, run.run_dir, run.precision, has_val=False)
    all_callbacks = run_callbacks(run.run_dir, run.console, t, [*method_callbacks(model, recipe.method), *callbacks])
    trainer = make_nlft_trainer(model, args, tokenizer, train_ex, recipe.objective.nlft, all_callbacks)
    fitted = fit(run, trainer, planned_speed(recipe, run.precision, model.config, [ex.base for ex in train_ex]))
    return finish(run, trainer, fitted, tokenizer, evals, data.eval_records)

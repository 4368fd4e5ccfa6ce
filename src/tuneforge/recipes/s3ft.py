"""The s3ft recipe: pick each row's training target from the model's own answer, a paraphrase, or the gold, then SFT.

S3FT (Gupta et al., Findings of NAACL 2025, arXiv 2502.08130). Before training, the base model
answers every training prompt greedily. If the acceptance judge (``objective.s3ft.accept``: exact or
numeric match where the task allows, else an LLM judge) accepts that answer, the row trains on it;
else the model restates the gold answer (``paraphrase_prompt``) and the row trains on the restatement
when the judge accepts it; else on the gold answer. The choice per row goes to RUN/s3ft/targets.jsonl
and the three shares to the console and summary.json. Training is then the sft recipe's, on the
mapped rows: same examples, trainer and loss (:mod:`tuneforge.recipes.sft`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.s3ft import S3ftOptions
from tuneforge.config.schema import Recipe
from tuneforge.data.records import ChatRecord, LoadedData, Message
from tuneforge.data.render import render_prompt
from tuneforge.datatools.judge import JudgeBackend, make_backend
from tuneforge.errors import DataError
from tuneforge.evaluate.generate import generate_batch
from tuneforge.recipes.common import Run, RunData, TrainResult
from tuneforge.recipes.sft import train_sft
from tuneforge.rewards.extract import extract_answer, parse_number
from tuneforge.runs import SUMMARY_FILE
from tuneforge.train.speed_plan import uncompiled

Generate = Callable[[list[list[dict]]], list[str]]  # chats -> replies
Accept = Callable[[list[str], list[str], list[str]], list[bool]]  # (questions, answers, golds) -> accepted
CHOICES = ("own", "paraphrase", "gold")
JUDGE_SYSTEM = "You check answers. Reply with one word: yes or no."
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


@dataclass
class Target:
    """One row's choice: which text it trains on, and the candidates that were judged."""

    source: str
    choice: str
    target: str
    own: str
    paraphrase: str | None


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".")


def exact_accept(questions: list[str], answers: list[str], golds: list[str]) -> list[bool]:
    return [normalise(a) == normalise(g) for a, g in zip(answers, golds, strict=True)]


def _number(text: str):
    found = extract_answer(text, "last_number")
    return parse_number(found) if found else None


def numeric_accept(questions: list[str], answers: list[str], golds: list[str]) -> list[bool]:
    """The last numbers agree (as fractions: '0.50' == '0.5'); a gold without a number needs an exact match."""
    out = []
    for a, g in zip(answers, golds, strict=True):
        gold = _number(g)
        out.append(_number(a) == gold if gold is not None else normalise(a) == normalise(g))
    return out


def marker_accept(marker: str) -> Accept:
    """The numbers after the last ``marker`` agree: an answer without the marker is rejected, so a row only
    trains on a candidate that keeps the format the task is scored in (the gold must carry the marker)."""

    def number_after(text: str):
        found = extract_answer(text, "marker", marker=marker)
        return parse_number(found) if found else None

    def accept(questions: list[str], answers: list[str], golds: list[str]) -> list[bool]:
        out = []
        for a, g in zip(answers, golds, strict=True):
            gold = number_after(g)
            if gold is None:
                raise DataError(f"objective.s3ft.accept 'marker': the gold answer {g[:80]!r} has no number after {marker!r}", hint="use accept: numeric or judge for this data")
            out.append(number_after(a) == gold)
        return out

    return accept


def judge_prompt(question: str, answer: str, gold: str) -> str:
    return (
        f"Question:\n{question}\n\nGold answer:\n{gold}\n\nCandidate answer:\n{answer}\n\n"
        "Is the candidate answer correct and equivalent to the gold answer? Reply yes or no."
    )


def llm_accept(judge: JudgeBackend) -> Accept:
    """An Accept over an LLM judge: the first yes/no in its reply; no word found counts as no."""

    def accept(questions: list[str], answers: list[str], golds: list[str]) -> list[bool]:
        replies = judge.ask([judge_prompt(q, a, g) for q, a, g in zip(questions, answers, golds, strict=True)])
        return [bool((m := _YES_NO.search(r)) and m.group(1).lower() == "yes") for r in replies]

    return accept


def make_accept(options: S3ftOptions, judge: JudgeBackend | None = None) -> Accept:
    if options.accept == "exact":
        return exact_accept
    if options.accept == "numeric":
        return numeric_accept
    if options.accept == "marker":
        return marker_accept(options.marker)
    return llm_accept(judge or make_backend(options.judge, system=JUDGE_SYSTEM))


def _parts(record: ChatRecord) -> tuple[list[dict], str, str]:
    msgs = record.as_dicts()
    if not msgs or msgs[-1]["role"] != "assistant":
        raise DataError(f"{record.source}: s3ft needs a row ending in the gold assistant answer", hint="use alpaca rows or messages ending in an assistant turn")
    context = msgs[:-1]
    question = next(m["content"] for m in reversed(context) if m["role"] == "user")
    return context, question, msgs[-1]["content"]


def _paraphrase_chat(context: list[dict], question: str, gold: str, template: str) -> list[dict]:
    last = max(i for i, m in enumerate(context) if m["role"] == "user")
    chat = [dict(m) for m in context]
    chat[last]["content"] = template.format(prompt=question, gold=gold)
    return chat


def choose_targets(records: Sequence[ChatRecord], generate: Generate, accept: Accept, options: S3ftOptions) -> list[Target]:
    """S3FT's mapping: own answer if accepted, else an accepted paraphrase of the gold (when enabled), else the gold."""
    parts = [_parts(r) for r in records]
    questions, golds = [q for _, q, _ in parts], [g for _, _, g in parts]
    own = generate([c for c, _, _ in parts])
    own_ok = accept(questions, own, golds)
    targets = [Target(r.source, "own", o, o, None) if ok else Target(r.source, "gold", g, o, None) for r, o, g, ok in zip(records, own, golds, own_ok, strict=True)]
    rejected = [i for i, ok in enumerate(own_ok) if not ok]
    if options.paraphrase and rejected:
        chats = [_paraphrase_chat(parts[i][0], questions[i], golds[i], options.paraphrase_prompt) for i in rejected]
        restated = generate(chats)
        restated_ok = accept([questions[i] for i in rejected], restated, [golds[i] for i in rejected])
        for i, text, ok in zip(rejected, restated, restated_ok, strict=True):
            targets[i].paraphrase = text
            if ok:
                targets[i].choice, targets[i].target = "paraphrase", text
    return targets


def mapped_records(records: Sequence[ChatRecord], targets: Sequence[Target]) -> list[ChatRecord]:
    """The rows with their final assistant turn replaced by the chosen target."""
    return [ChatRecord((*r.messages[:-1], Message("assistant", t.target)), r.source, r.completion_start) for r, t in zip(records, targets, strict=True)]


def shares(targets: Sequence[Target]) -> dict[str, float]:
    n = max(len(targets), 1)
    return {c: sum(t.choice == c for t in targets) / n for c in CHOICES}


def model_generate(model, tokenizer, options: S3ftOptions, autocast_dtype=None) -> Generate:
    """Greedy replies of ``model`` to chats (the evaluation's generator, so answers match what eval would see)."""

    def generate(chats: list[list[dict]]) -> list[str]:
        with uncompiled():
            return generate_batch(
                model, tokenizer, [render_prompt(tokenizer, c) for c in chats],
                max_new_tokens=options.max_new_tokens, batch_size=options.batch_size, autocast_dtype=autocast_dtype,
            )  # fmt: skip

    return generate


def map_run_data(run, data: RunData, generate: Generate, accept: Accept) -> tuple[RunData, dict[str, float]]:
    """Choose every training row's target, write RUN/s3ft/targets.jsonl, print the shares; the mapped data."""
    records = [r for r in data.train.records if isinstance(r, ChatRecord)]
    targets = choose_targets(records, generate, accept, run.recipe.objective.s3ft)
    share = shares(targets)
    if run.main:
        out = run.run_dir / "s3ft" / "targets.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(asdict(t)) + "\n" for t in targets))
    run.console.print("[bold]s3ft[/]: targets " + ", ".join(f"{c} {100 * share[c]:.0f}%" for c in CHOICES) + f" of {len(targets)} rows")
    train = LoadedData(data.train.path, data.train.format, list(mapped_records(records, targets)), data.train.bad_rows)
    return RunData(train, data.validation, data.eval_records), share


def train_s3ft(
    recipe: Recipe, *, resume: bool = False, console: Console | None = None, callbacks: Sequence[TrainerCallback] = (),
    generate: Generate | None = None, accept: Accept | None = None,
) -> TrainResult:  # fmt: skip
    """Run an s3ft recipe: the sft run on the mapped rows; ``generate`` / ``accept`` replace the model's answers and the judge (tests pass stubs)."""
    mapped: dict[str, object] = {}

    def map_data(run: Run, data: RunData, model, tokenizer) -> RunData:
        gen = generate or model_generate(model, tokenizer, recipe.objective.s3ft, run.precision.autocast_dtype)
        new_data, share = map_run_data(run, data, gen, accept or make_accept(recipe.objective.s3ft))
        mapped.update(share=share, main=run.main)
        return new_data

    result = train_sft(recipe, resume=resume, console=console, callbacks=callbacks, map_data=map_data)
    result.summary["s3ft_shares"] = mapped["share"]
    if mapped["main"]:
        (result.run_dir / SUMMARY_FILE).write_text(json.dumps(result.summary, indent=2))
    return result

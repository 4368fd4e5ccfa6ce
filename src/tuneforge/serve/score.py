"""Scoring (prompt, response) pairs with a trained reward model: ``tuneforge score RUN --data FILE``.

Input rows (JSONL file or stdin): ``{"prompt": str | messages, "response": str}`` (``completion`` or
``chosen`` are accepted for ``response``). Output: the row with a ``score`` added, one JSON object per line.
Each pair is rendered with the chat template exactly as in reward training.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import torch

from tuneforge.data.formats import RowError
from tuneforge.data.preference import _answer, _prompt
from tuneforge.data.preference_collate import pad_sides
from tuneforge.data.preference_examples import render_answer
from tuneforge.data.records import Message
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.objectives.reward import reward_scores
from tuneforge.targets import load_run

RESPONSE_KEYS = ("response", "completion", "chosen")


@torch.no_grad()
def score_responses(
    model,
    tokenizer,
    pairs: Sequence[tuple[Sequence[dict] | Sequence[Message], str]],
    *,
    batch_size: int = 8,
) -> list[float]:
    """Reward of each (prompt messages, response) pair."""
    device = next(model.parameters()).device
    sides = []
    for i, (prompt, response) in enumerate(pairs):
        msgs = [
            m if isinstance(m, Message) else Message(m["role"], m["content"])
            for m in prompt
        ]
        sides.append(render_answer(tokenizer, msgs, response, f"pair {i + 1}"))
    scores: list[float] = []
    for i in range(0, len(sides), batch_size):
        b = pad_sides(sides[i : i + batch_size], tokenizer.pad_token_id)
        scores.extend(
            reward_scores(
                model, b["input_ids"].to(device), b["attention_mask"].to(device)
            ).tolist()
        )
    return scores


def parse_score_rows(
    lines: Iterable[str], where: str
) -> Iterator[tuple[dict[str, Any], list[Message], str]]:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        src = f"{where}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{src}: invalid JSON: {exc.msg} at column {exc.colno}"
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"{src}: must be a JSON object, got {type(row).__name__}")
        key = next((k for k in RESPONSE_KEYS if k in row), "response")
        try:
            yield row, _prompt(row, None), _answer(row.get(key), key)
        except RowError as exc:
            raise DataError(
                f"{src} field '{exc.field}': {exc.reason}",
                hint='rows look like {"prompt": "...", "response": "..."}',
            ) from None


def score_file(
    run: str,
    stream: IO[str],
    out: IO[str],
    *,
    where: str = "<stdin>",
    batch_size: int = 8,
) -> int:
    """Score every row of ``stream`` with the reward model of ``run``; write JSONL to ``out``; return the count."""
    loaded = load_run(run)
    if loaded.recipe.objective.type != "reward":
        raise TuneforgeError(
            f"{run} was trained with objective.type '{loaded.recipe.objective.type}', not a reward model",
            hint="score with a run trained with objective.type: reward",
        )
    rows = list(parse_score_rows(stream, where))
    if not rows:
        raise DataError(f"{where}: no rows to score")
    scores = score_responses(
        loaded.model,
        loaded.tokenizer,
        [(p, r) for _, p, r in rows],
        batch_size=batch_size,
    )
    for (row, _, _), s in zip(rows, scores):
        out.write(json.dumps({**row, "score": round(s, 6)}, ensure_ascii=False) + "\n")
    return len(rows)

"""A deterministic generator of grade-school arithmetic word problems with ``#### N`` answers.

The seeds' GRPO example trains on grade-school math with a correctness reward; GSM8K itself cannot
be downloaded here, so this writes problems of the same shape (a short story, one or two steps of
+ - x /, a whole-number answer) small enough that the built-in 135M model is right some of the time.
Same seed, same rows: ``python examples/grpo/make_data.py`` rewrites examples/grpo/*.jsonl exactly.

Each row: ``{"prompt": <instruction + one worked example + the question>, "answer": "N",
"question": ..., "kind": ..., "solution": "... #### N"}``; ``answer`` is what the answer_match
reward compares against and ``solution`` is a worked answer in the expected format.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

NAMES = ("Ava", "Ben", "Chloe", "Dan", "Emma", "Finn", "Grace", "Hugo", "Ivy", "Jack", "Lily", "Max", "Nora", "Omar", "Ruby", "Sam", "Tara", "Leo")
ITEMS = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "stamps", "shells", "cards", "balloons", "eggs", "coins")
INSTRUCTION = "Solve the math problem. Think step by step, then give the final answer as a number on the last line after '####'."
EXAMPLE_Q = "Mia has 4 boxes with 6 crayons in each box. She gives away 5 crayons. How many crayons does Mia have left?"
EXAMPLE_A = "Mia has 4 * 6 = 24 crayons. After giving away 5 she has 24 - 5 = 19.\n#### 19"


# Number ranges per level: "easy" keeps every operand and result small (one-digit factors, sums under 25).
RANGES = {
    "standard": {"add": (3, 40, 2, 30), "sub": (10, 60), "mul": (2, 9, 2, 12), "div": (2, 12, 2, 8), "two_step": (2, 6, 2, 10)},
    "easy": {"add": (2, 12, 2, 9), "sub": (5, 20), "mul": (2, 5, 2, 5), "div": (2, 5, 2, 4), "two_step": (2, 3, 2, 5)},
}


@dataclass(frozen=True)
class Problem:
    question: str
    answer: int
    solution: str
    kind: str


def _add(r: random.Random, name: str, item: str, level: str) -> Problem:
    lo, hi, lo2, hi2 = RANGES[level]["add"]
    a, b = r.randint(lo, hi), r.randint(lo2, hi2)
    q = f"{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?"
    return Problem(q, a + b, f"{a} + {b} = {a + b}\n#### {a + b}", "add")


def _sub(r: random.Random, name: str, item: str, level: str) -> Problem:
    a = r.randint(*RANGES[level]["sub"])
    b = r.randint(2, a - 1)
    q = f"{name} has {a} {item} and gives {b} of them to a friend. How many {item} does {name} have left?"
    return Problem(q, a - b, f"{a} - {b} = {a - b}\n#### {a - b}", "sub")


def _mul(r: random.Random, name: str, item: str, level: str) -> Problem:
    lo, hi, lo2, hi2 = RANGES[level]["mul"]
    a, b = r.randint(lo, hi), r.randint(lo2, hi2)
    q = f"{name} buys {a} bags with {b} {item} in each bag. How many {item} does {name} buy in total?"
    return Problem(q, a * b, f"{a} * {b} = {a * b}\n#### {a * b}", "mul")


def _div(r: random.Random, name: str, item: str, level: str) -> Problem:
    lo, hi, lo2, hi2 = RANGES[level]["div"]
    each, friends = r.randint(lo, hi), r.randint(lo2, hi2)
    total = each * friends
    q = f"{name} shares {total} {item} equally among {friends} friends. How many {item} does each friend get?"
    return Problem(q, each, f"{total} / {friends} = {each}\n#### {each}", "div")


def _two_step(r: random.Random, name: str, item: str, level: str) -> Problem:
    lo, hi, lo2, hi2 = RANGES[level]["two_step"]
    a, b = r.randint(lo, hi), r.randint(lo2, hi2)
    c = r.randint(1, a * b - 1)
    q = f"{name} has {a} boxes with {b} {item} in each box. {name} gives away {c} {item}. How many {item} does {name} have left?"
    total = a * b
    return Problem(q, total - c, f"{a} * {b} = {total}, {total} - {c} = {total - c}\n#### {total - c}", "two_step")


KINDS: dict[str, Callable[[random.Random, str, str, str], Problem]] = {
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "two_step": _two_step,
}


def problems(seed: int = 0, level: str = "standard") -> Iterator[Problem]:
    """An endless, seed-determined stream of distinct problems, the kinds in turn."""
    r = random.Random(seed)
    seen: set[str] = set()
    kinds = list(KINDS.values())
    i = 0
    while True:
        problem = kinds[i % len(kinds)](r, r.choice(NAMES), r.choice(ITEMS), level)
        if problem.question not in seen:
            seen.add(problem.question)
            i += 1
            yield problem


def prompt_for(question: str) -> str:
    """The instruction, one worked example in the '####' format, then the question."""
    return f"{INSTRUCTION}\n\nExample:\nQuestion: {EXAMPLE_Q}\nAnswer: {EXAMPLE_A}\n\nQuestion: {question}\nAnswer:"


def as_row(problem: Problem) -> dict:
    return {
        "prompt": prompt_for(problem.question),
        "answer": str(problem.answer),
        "question": problem.question,
        "kind": problem.kind,
        "solution": problem.solution,
    }


def make_split(train: int = 400, test: int = 50, seed: int = 0, level: str = "standard") -> tuple[list[dict], list[dict]]:
    """(train rows, test rows) from one stream, so no question is in both."""
    stream = problems(seed, level)
    test_rows = [as_row(next(stream)) for _ in range(test)]
    train_rows = [as_row(next(stream)) for _ in range(train)]
    return train_rows, test_rows


# What examples/grpo/make_data.py writes (train.jsonl, test.jsonl); docs/REWARDS.md has the base model's accuracy on it.
EXAMPLE_SPLIT = {"train": 400, "test": 50, "seed": 0, "level": "easy"}


def write_jsonl(rows: list[dict], path: str | Path) -> None:
    Path(path).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

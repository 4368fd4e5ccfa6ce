"""Turning records into fixed-size training examples, with an explicit policy for over-long ones.

Nothing is dropped silently: every example that is truncated or left out is counted in the
:class:`PrepareReport`, and left-out ones keep their source so the recipe can write them down.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from tuneforge.data.records import BadRow, ChatRecord, TextRecord
from tuneforge.data.render import IGNORE_INDEX, Tokenized, render_chat, render_text
from tuneforge.errors import DataError


@dataclass
class PrepareReport:
    records: int = 0
    examples: int = 0
    truncated: int = 0
    dropped: list[BadRow] = field(default_factory=list)
    tokens: int = 0
    trained_tokens: int = 0

    def summary(self) -> str:
        parts = [f"{self.examples} examples from {self.records} records", f"{self.tokens} tokens ({self.trained_tokens} trained)"]
        if self.truncated:
            parts.append(f"{self.truncated} truncated to max_length")
        if self.dropped:
            parts.append(f"{len(self.dropped)} dropped")
        return ", ".join(parts)

    def as_json(self) -> dict:
        return {
            "records": self.records,
            "examples": self.examples,
            "truncated": self.truncated,
            "dropped": len(self.dropped),
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
        }


def prepare_chat(
    records: Sequence[ChatRecord], tokenizer: PreTrainedTokenizerBase, max_length: int, overlong: str
) -> tuple[list[Tokenized], PrepareReport]:
    """SFT examples: one per conversation, assistant tokens trained."""
    report = PrepareReport(records=len(records))
    examples: list[Tokenized] = []
    for record in records:
        ex = render_chat(tokenizer, record)
        if len(ex.input_ids) > max_length:
            if overlong == "drop":
                report.dropped.append(BadRow(record.source, None, f"{len(ex.input_ids)} tokens > data.max_length {max_length} (data.overlong=drop)"))
                continue
            ex = Tokenized(ex.input_ids[:max_length], ex.labels[:max_length], ex.source)
            report.truncated += 1
            if ex.n_trained == 0:
                report.dropped.append(
                    BadRow(record.source, None, f"no assistant token left after truncating to data.max_length {max_length}; raise max_length")
                )
                continue
        if ex.n_trained == 0:
            report.dropped.append(BadRow(record.source, None, "the chat template rendered no assistant token to train on"))
            continue
        examples.append(ex)
    finish_report(report, examples, len(examples))
    return examples, report


def prepare_text(
    records: Sequence[TextRecord], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> tuple[list[Tokenized], PrepareReport]:
    """Pretraining examples: documents joined with EOS and cut into max_length chunks, every token trained.

    The last chunk may be shorter; nothing is thrown away.
    """
    report = PrepareReport(records=len(records))
    stream: list[int] = []
    for record in records:
        stream.extend(render_text(tokenizer, record))
    examples = [
        Tokenized(stream[i : i + max_length], stream[i : i + max_length], f"chunk {i // max_length + 1}")
        for i in range(0, len(stream), max_length)
        if len(stream[i : i + max_length]) > 1
    ]
    finish_report(report, examples, len(examples))
    return examples, report


def finish_report(report: PrepareReport, sequences: Sequence, n_examples: int, kind: str = "training") -> None:
    """Count the kept examples and their tokens into ``report``; none left is an error that says where to look.

    ``sequences`` are the tokenised rows (a preference example has two sides, so it may differ from
    ``n_examples``); each has ``input_ids`` and ``n_trained``.
    """
    report.examples = n_examples
    report.tokens = sum(len(s.input_ids) for s in sequences)
    report.trained_tokens = sum(s.n_trained for s in sequences)
    if not n_examples:
        raise DataError(
            f"no {kind} examples left after tokenising {report.records} records ({len(report.dropped)} dropped)",
            hint="check data.max_length and data.overlong; the dropped rows are listed in the run directory",
        )


def split_examples(examples: list[Tokenized], fraction: float, seed: int) -> tuple[list[Tokenized], list[Tokenized]]:
    """Hold out a seeded random fraction for validation (at least one example when fraction > 0)."""
    if fraction <= 0:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(examples) * fraction))
    if n_val >= len(examples):
        raise DataError(f"data.val_fraction {fraction} leaves no training examples out of {len(examples)}", hint="lower data.val_fraction")
    val_idx = set(order[:n_val])
    train = [e for i, e in enumerate(examples) if i not in val_idx]
    val = [e for i, e in enumerate(examples) if i in val_idx]
    return train, val


def to_features(examples: Sequence[Tokenized]) -> list[dict[str, list[int]]]:
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]


__all__ = ["IGNORE_INDEX", "PrepareReport", "prepare_chat", "prepare_text", "split_examples", "to_features"]

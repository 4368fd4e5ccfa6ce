"""Objectives: how records become training examples and which loss trains them.

``sft`` trains assistant turns of chat/alpaca data; ``pretrain`` trains every token of raw text.
Both use the token-normalised causal LM loss in :mod:`tuneforge.objectives.losses`.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from tuneforge.data.prepare import PrepareReport, prepare_chat, prepare_text
from tuneforge.data.records import ChatRecord, Record, TextRecord
from tuneforge.data.render import Tokenized
from tuneforge.errors import DataError

OBJECTIVE_FORMATS = {"sft": ("alpaca", "messages"), "pretrain": ("text",)}


def build_examples(
    objective: str, records: Sequence[Record], tokenizer: PreTrainedTokenizerBase, max_length: int, overlong: str, *, data_format: str
) -> tuple[list[Tokenized], PrepareReport]:
    if data_format not in OBJECTIVE_FORMATS[objective]:
        raise DataError(
            f"objective.type '{objective}' needs {' or '.join(OBJECTIVE_FORMATS[objective])} data, but the file is {data_format}",
            hint="set data.format explicitly, or pick the objective that matches the data",
        )
    if objective == "sft":
        return prepare_chat([r for r in records if isinstance(r, ChatRecord)], tokenizer, max_length, overlong)
    return prepare_text([r for r in records if isinstance(r, TextRecord)], tokenizer, max_length)

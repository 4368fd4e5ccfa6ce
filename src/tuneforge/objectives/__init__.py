"""Objectives: how records become training examples and which loss trains them.

``sft`` trains assistant turns of chat/alpaca data; ``pretrain`` trains every token of raw text.
Both use the token-normalised causal LM loss in :mod:`tuneforge.objectives.losses`.
``reward``, ``dpo``, ``orpo``, ``simpo`` and ``kto`` train on preference data: their examples come from
:mod:`tuneforge.data.preference_examples`, their log-probs from :mod:`tuneforge.objectives.preference`,
their losses from :mod:`tuneforge.objectives.preference_losses`, and they train with
:mod:`tuneforge.train.preference_trainer` (:func:`is_preference` tells them apart).
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from tuneforge.config.cft import CftOptions
from tuneforge.config.schema import PREFERENCE_OBJECTIVES
from tuneforge.data.preference_examples import build_pair_examples, build_unpaired_examples
from tuneforge.data.prepare import PrepareReport, prepare_chat, prepare_text
from tuneforge.data.records import ChatRecord, Record, TextRecord
from tuneforge.data.render import Tokenized
from tuneforge.errors import DataError
from tuneforge.objectives.cft import cft_prompts, prepare_cft

OBJECTIVE_FORMATS = {
    "sft": ("alpaca", "messages", "prompt_completion"),
    "pretrain": ("text",),
    "cft": ("text",),
    "nlft": ("alpaca", "messages"),
    "s3ft": ("alpaca", "messages"),
    "reward": ("preference",),
    "dpo": ("preference",),
    "orpo": ("preference",),
    "simpo": ("preference",),
    "kto": ("kto", "preference"),
}


def is_preference(objective: str) -> bool:
    """True for objectives trained on preference data with the preference trainer."""
    return objective in PREFERENCE_OBJECTIVES


def build_examples(
    objective: str, records: Sequence[Record], tokenizer: PreTrainedTokenizerBase, max_length: int, overlong: str, *, data_format: str,
    cft: CftOptions | None = None,
) -> tuple[list[Tokenized], PrepareReport]:
    """Records -> tokenised examples for ``objective``; ``cft`` carries the cft objective's prompt options."""
    if data_format not in OBJECTIVE_FORMATS[objective]:
        raise DataError(
            f"objective.type '{objective}' needs {' or '.join(OBJECTIVE_FORMATS[objective])} data, but the file is {data_format}",
            hint="set data.format explicitly, or pick the objective that matches the data",
        )
    if objective in PREFERENCE_OBJECTIVES:
        if objective == "kto":
            return build_unpaired_examples(records, tokenizer, max_length, overlong)  # type: ignore[arg-type, return-value]
        return build_pair_examples(records, tokenizer, max_length, overlong)  # type: ignore[arg-type, return-value]
    if objective in ("sft", "nlft", "s3ft"):  # nlft and s3ft train chat rows too (their own targets and weights come later)
        return prepare_chat([r for r in records if isinstance(r, ChatRecord)], tokenizer, max_length, overlong)
    texts = [r for r in records if isinstance(r, TextRecord)]
    if objective == "cft":
        options = cft or CftOptions()
        return prepare_cft(texts, tokenizer, max_length, options, cft_prompts(options))
    return prepare_text(texts, tokenizer, max_length)

"""Rendering records to token ids and labels with the tokenizer's own chat template.

The loss mask comes from the template itself, not from hand-written role markers: the text of the
conversation up to (and including the generation prompt of) each assistant turn is rendered, and
the characters between that prefix and the end of the turn are the assistant's. The whole
conversation is then tokenised once, with character offsets, and a token is trained when it starts
inside an assistant span. That keeps the token ids identical to ``apply_chat_template`` (tested
token for token) and trains the end-of-turn token, so tuned models learn to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from tuneforge.data.records import ChatRecord, TextRecord
from tuneforge.errors import DataError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    source: str

    @property
    def n_trained(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


def _template(tokenizer: PreTrainedTokenizerBase, messages: list[dict], *, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_char_spans(tokenizer: PreTrainedTokenizerBase, record: ChatRecord) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character span of every trained assistant turn.

    Assistant turns before ``record.completion_start`` (a prompt-completion row's prompt) are context
    and get no span.
    """
    messages = record.as_dicts()
    full = _template(tokenizer, messages, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or i < record.completion_start:
            continue
        prefix = _template(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        upto = _template(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not full.startswith(upto) or not upto.startswith(prefix):
            raise DataError(
                f"{record.source}: the model's chat template does not render conversations incrementally "
                "(a prefix of the conversation does not render to a prefix of the text), so assistant turns cannot be masked",
                hint="use a model whose chat template appends turns (most do), or train with objective.type: pretrain on plain text",
            )
        spans.append((len(prefix), len(upto)))
    return full, spans


def render_chat(tokenizer: PreTrainedTokenizerBase, record: ChatRecord) -> Tokenized:
    """Token ids of the whole conversation; labels are the ids on assistant tokens and IGNORE_INDEX elsewhere."""
    if not tokenizer.is_fast:
        raise DataError("the tokenizer is not a fast tokenizer; loss masks need character offsets", hint="load a model that ships tokenizer.json")
    if not tokenizer.chat_template:
        raise DataError(
            "the tokenizer has no chat template, so chat data cannot be rendered",
            hint="use an instruct/chat model, or train with objective.type: pretrain on plain text",
        )
    text, spans = assistant_char_spans(tokenizer, record)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [IGNORE_INDEX] * len(ids)
    for k, (start, end) in enumerate(enc["offset_mapping"]):
        if end <= start:
            continue
        if any(s <= start < e for s, e in spans):
            labels[k] = ids[k]
    return Tokenized(ids, labels, record.source)


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> str:
    """The prompt text for generation: every message but a final assistant one, plus the generation prompt."""
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    return _template(tokenizer, messages, add_generation_prompt=True)


def render_text(tokenizer: PreTrainedTokenizerBase, record: TextRecord) -> list[int]:
    """Token ids of a raw-text document followed by EOS, so documents are separated when packed into chunks."""
    ids = tokenizer(record.text, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    return ids

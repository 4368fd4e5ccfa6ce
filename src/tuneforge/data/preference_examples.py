"""Preference examples: prompt + answer rendered with the chat template, tokenised, over-length policy applied.

Each side (prompt + chosen, prompt + rejected, or prompt + completion for KTO) is rendered as one
conversation with the tokenizer's own chat template and tokenised once with offsets, as SFT does
(:mod:`tuneforge.data.render`), so ids equal ``apply_chat_template``. Only the final assistant turn
is labelled (its end-of-turn token included); everything before it, including earlier assistant
turns of a multi-turn prompt, is context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from tuneforge.data.preference import PreferenceRecord, UnpairedRecord, as_unpaired
from tuneforge.data.prepare import PrepareReport, finish_report
from tuneforge.data.records import BadRow, ChatRecord, Message
from tuneforge.data.render import IGNORE_INDEX, assistant_char_spans
from tuneforge.errors import DataError


@dataclass(frozen=True)
class Side:
    """One rendered conversation: ids, and labels that are IGNORE_INDEX except on the final answer."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_trained(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)

    @property
    def prompt_length(self) -> int:
        """Tokens before the first trained one (the prompt)."""
        return next(i for i, t in enumerate(self.labels) if t != IGNORE_INDEX)


@dataclass(frozen=True)
class PairExample:
    chosen: Side
    rejected: Side
    source: str


@dataclass(frozen=True)
class UnpairedExample:
    side: Side
    desirable: bool
    source: str


def render_answer(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Sequence[Message],
    answer: str,
    source: str,
) -> Side:
    """Render prompt + assistant answer; label only the answer span (and its end-of-turn token)."""
    record = ChatRecord((*prompt, Message("assistant", answer)), source)
    text, spans = assistant_char_spans(tokenizer, record)
    start, end = spans[-1]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [
        tok if (e > s and start <= s < end) else IGNORE_INDEX
        for tok, (s, e) in zip(ids, enc["offset_mapping"])
    ]
    return Side(ids, labels)


def _fit(side: Side, max_length: int) -> Side | None:
    """Keep the first max_length tokens; None when no answer token is left."""
    if len(side.input_ids) <= max_length:
        return side
    cut = Side(side.input_ids[:max_length], side.labels[:max_length])
    return cut if cut.n_trained else None


def _fit_sides(sides: tuple[Side, ...], source: str, max_length: int, overlong: str, report: PrepareReport) -> tuple[Side, ...] | None:
    """Apply data.overlong to sides that train together (a pair, or one KTO completion).

    Over-long sides are dropped or truncated together and counted in ``report``; ``None`` means the
    example is dropped (with its reason recorded), never trained with an empty side.
    """
    longest = max(len(side.input_ids) for side in sides)
    if longest <= max_length:
        return sides
    if overlong == "drop":
        report.dropped.append(BadRow(source, None, f"{longest} tokens > data.max_length {max_length} (data.overlong=drop)"))
        return None
    fitted = tuple(_fit(side, max_length) for side in sides)
    report.truncated += 1
    if any(side is None for side in fitted):
        report.dropped.append(BadRow(source, None, f"the prompt alone fills data.max_length {max_length}; raise max_length"))
        return None
    return fitted  # type: ignore[return-value]


def build_pair_examples(
    records: Sequence[PreferenceRecord],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    overlong: str,
) -> tuple[list[PairExample], PrepareReport]:
    """One example per pair; over-long pairs are truncated (both sides) or dropped, and counted."""
    report = PrepareReport(records=len(records))
    examples: list[PairExample] = []
    for r in records:
        chosen = render_answer(tokenizer, r.prompt, r.chosen, r.source)
        rejected = render_answer(tokenizer, r.prompt, r.rejected, r.source)
        fitted = _fit_sides((chosen, rejected), r.source, max_length, overlong, report)
        if fitted is not None:
            examples.append(PairExample(fitted[0], fitted[1], r.source))
    finish_report(report, [s for e in examples for s in (e.chosen, e.rejected)], len(examples), "preference")
    return examples, report


def build_unpaired_examples(
    records: Sequence[PreferenceRecord | UnpairedRecord],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    overlong: str,
) -> tuple[list[UnpairedExample], PrepareReport]:
    """KTO examples; paired records contribute one desirable and one undesirable example each."""
    unpaired = as_unpaired(records)
    report = PrepareReport(records=len(records))
    examples: list[UnpairedExample] = []
    for r in unpaired:
        side = render_answer(tokenizer, r.prompt, r.completion, r.source)
        fitted = _fit_sides((side,), r.source, max_length, overlong, report)
        if fitted is not None:
            examples.append(UnpairedExample(fitted[0], r.label, r.source))
    finish_report(report, [e.side for e in examples], len(examples), "preference")
    if len(examples) > 1 and (
        all(e.desirable for e in examples) or not any(e.desirable for e in examples)
    ):
        kind = "desirable" if examples[0].desirable else "undesirable"
        raise DataError(
            f"every KTO example is {kind}; KTO needs both desirable and undesirable examples",
            hint="add rows with the other label, or use paired preference data",
        )
    return examples, report

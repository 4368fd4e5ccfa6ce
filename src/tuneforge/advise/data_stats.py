"""How big a data set is in the model's own tokens, rendered exactly as training renders it.

Counting characters or words misleads: the chat template adds role headers and end-of-turn tokens to
every turn, and only assistant tokens are trained. So the counts here come from the same
``load_records`` + ``build_examples`` path the recipes use, with the recipe's max_length and
over-length policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.config.schema import Recipe
from tuneforge.data.formats import load_records
from tuneforge.objectives import build_examples
from tuneforge.objectives.shared_prefix import examples_prefix_length


@dataclass(frozen=True)
class DataStats:
    records: int
    examples: int
    tokens: int
    trained_tokens: int
    max_tokens: int  # longest example after the over-length policy: sets the padded length of the largest batch
    max_trained_tokens: int  # most trained tokens in one example: sets the size of the largest logits block
    mean_tokens: float
    truncated: int
    dropped: int
    bad_rows: int
    lengths: tuple[
        int, ...
    ] = ()  # tokens per example, in order: what the speed plan reads
    shared_prefix_tokens: int = 0  # leading tokens every example shares (the speed plan's prefix sharing)


def data_stats(recipe: Recipe, tokenizer) -> DataStats:
    """Token statistics of ``recipe.data.train`` under ``recipe``'s objective, template and length policy."""
    loaded = load_records(
        recipe.data.train,
        recipe.data.format,
        on_bad_rows=recipe.data.on_bad_rows,
        system_prompt=recipe.data.system_prompt,
    )
    examples, report = build_examples(
        recipe.objective.type,
        loaded.records,
        tokenizer,
        recipe.data.max_length,
        recipe.data.overlong,
        data_format=loaded.format,
    )
    lengths = [len(e.input_ids) for e in examples]
    return DataStats(
        records=report.records,
        examples=report.examples,
        tokens=report.tokens,
        trained_tokens=report.trained_tokens,
        max_tokens=max(lengths),
        max_trained_tokens=max(e.n_trained for e in examples),
        mean_tokens=sum(lengths) / len(lengths),
        truncated=report.truncated,
        dropped=len(report.dropped),
        bad_rows=len(loaded.bad_rows),
        lengths=tuple(lengths),
        shared_prefix_tokens=examples_prefix_length([e.input_ids for e in examples]),
    )

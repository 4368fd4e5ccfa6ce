"""The cft recipe's examples: the sft/pretrain run (recipes/sft.py) with CFT's prompted chunks.

Everything else of a cft run (model, method, trainer, saving, evaluation, the data report) is the
pretrain run's, through :func:`~tuneforge.recipes.common.build_run_examples`; only the examples
differ (:mod:`tuneforge.objectives.cft`).

Validation examples (a split of data.train or a data.validation file) are scored without prompts,
as the model is used: the prompts are a training device only.
"""

from __future__ import annotations

from tuneforge.data.prepare import PrepareReport
from tuneforge.data.records import LoadedData, TextRecord
from tuneforge.data.render import Tokenized
from tuneforge.errors import DataError
from tuneforge.objectives.cft import cft_prompts, prepare_cft, strip_prompt
from tuneforge.recipes.common import Run, RunData, build_run_examples


def _text_records(loaded: LoadedData) -> list[TextRecord]:
    if loaded.format != "text":
        raise DataError(
            f"objective.type 'cft' trains on raw text but {loaded.path} is {loaded.format}",
            hint="set data.format: text (rows with a 'text' field), or use objective.type sft for instruction data",
        )
    return [r for r in loaded.records if isinstance(r, TextRecord)]


def build_cft_run_examples(run: Run, data: RunData, tokenizer) -> tuple[list[Tokenized], list[Tokenized]]:
    """Prompted training chunks and unprompted validation chunks; writes data_report.json as every run does."""
    recipe = run.recipe
    options = recipe.objective.cft
    prompts = cft_prompts(options)

    def build(loaded: LoadedData, validation: bool) -> tuple[list[Tokenized], PrepareReport]:
        # a validation file is chunked without prompts; a split of data.train has its prompts stripped below
        return prepare_cft(_text_records(loaded), tokenizer, recipe.data.max_length, options, [""] if validation else prompts)

    def unprompted(examples: list[Tokenized]) -> list[Tokenized]:
        return [v for v in map(strip_prompt, examples) if len(v.input_ids) > 1]

    def cft_report(report: PrepareReport) -> dict:
        return {"cft": {"prompts": len(prompts), "selection": options.selection, "prompt_tokens": report.tokens - report.trained_tokens}}

    return build_run_examples(
        run, data, tokenizer, builder=build, validation_view=unprompted, report_extra=cft_report,
        note=f" ({len(prompts)} CFT prompts, {options.selection})",
    )  # fmt: skip

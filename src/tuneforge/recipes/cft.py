"""The cft recipe's examples: the sft/pretrain run (recipes/sft.py) with CFT's prompted chunks.

Everything else of a cft run (model, method, trainer, saving, evaluation) is the pretrain run's;
only the examples differ (:mod:`tuneforge.objectives.cft`). This mirrors
:func:`~tuneforge.recipes.common.build_run_examples` step for step, because that function builds
through :func:`~tuneforge.objectives.build_examples`, which takes no objective options; once it
accepts a builder this module reduces to the builder.

Validation examples (a split of data.train or a data.validation file) are scored without prompts,
as the model is used: the prompts are a training device only.
"""

from __future__ import annotations

import json

from tuneforge.data.prepare import split_examples
from tuneforge.data.records import LoadedData, TextRecord
from tuneforge.data.render import Tokenized
from tuneforge.errors import DataError
from tuneforge.objectives.cft import cft_prompts, prepare_cft, strip_prompt
from tuneforge.recipes.common import Run, RunData
from tuneforge.runs import DATA_REPORT_FILE


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
    examples, report = prepare_cft(_text_records(data.train), tokenizer, recipe.data.max_length, options, prompts)
    train_ex, val_ex = split_examples(examples, recipe.data.val_fraction, recipe.training.seed)
    val_report = None
    if data.validation is not None:
        val_ex, val_report = prepare_cft(_text_records(data.validation), tokenizer, recipe.data.max_length, options, [""])
    val_ex = [v for v in map(strip_prompt, val_ex) if len(v.input_ids) > 1]
    run.train_examples = len(train_ex)
    data_report = {
        "train": report.as_json(),
        "train_examples": len(train_ex),
        "validation_examples": len(val_ex),
        "cft": {"prompts": len(prompts), "selection": options.selection, "prompt_tokens": report.tokens - report.trained_tokens},
    }
    if val_report:
        data_report["validation"] = val_report.as_json()
    if run.main:
        (run.run_dir / DATA_REPORT_FILE).write_text(json.dumps(data_report, indent=2))
    run.console.print(f"[bold]data[/]: {report.summary()} ({len(prompts)} CFT prompts, {options.selection}); {len(train_ex)} train / {len(val_ex)} validation")
    return train_ex, val_ex

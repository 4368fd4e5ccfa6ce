"""The recipe schema: one pydantic model per recipe section.

This is the single source of truth for every option: the CLI, the YAML recipes and (later) the web
UI all build a :class:`Recipe`. Every model forbids unknown keys so that a typo fails loudly before
any model is loaded, and cross-field rules live in validators here rather than deep in the runner.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base for every recipe section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(Section):
    name: str = Field(
        "smollm2-135m-instruct",
        description="Base model: the built-in name, a local HF directory, a local .gguf file or a hub id.",
    )


class LoraOptions(Section):
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: float = Field(32.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "all-linear",
        description="'all-linear' (every linear layer but the output head), a list of module names, or a regex string.",
    )


class FreezeOptions(Section):
    train_last_n_layers: int = Field(
        2, ge=0, description="Number of final transformer blocks left trainable; the rest are frozen."
    )
    train_modules: list[str] = Field(
        default_factory=list,
        description="Extra parameter-name substrings to train (e.g. 'norm', 'lm_head', 'embed_tokens').",
    )


class MethodSection(Section):
    type: Literal["full", "freeze", "lora"] = Field(
        "lora",
        description="full: every weight; freeze: only the last N blocks (+ named modules); lora: low-rank adapters via peft.",
    )
    lora: LoraOptions = Field(default_factory=LoraOptions)
    freeze: FreezeOptions = Field(default_factory=FreezeOptions)


class DataSection(Section):
    train: str = Field(..., description="Training data file: .jsonl, .json, .csv or .parquet.")
    format: Literal["auto", "alpaca", "messages", "text"] = Field(
        "auto",
        description="alpaca (instruction/input/output), messages (role/content or ShareGPT from/value), text (raw text); auto infers it from the first row.",
    )
    validation: str | None = Field(None, description="A separate validation file (same format).")
    val_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="Fraction of the training file held out for validation when no validation file is given."
    )
    max_length: int = Field(512, ge=8, description="Maximum tokens per example (text is chunked to this length).")
    overlong: Literal["truncate", "drop"] = Field(
        "truncate",
        description="Examples longer than max_length: truncate them (those left with no trained token are dropped and counted) or drop them.",
    )
    on_bad_rows: Literal["error", "skip"] = Field(
        "error",
        description="error: stop before training and list bad rows; skip: leave them out and write them to skipped_rows.jsonl in the run dir.",
    )
    system_prompt: str | None = Field(None, description="System message prepended to every chat example without one.")


class ObjectiveSection(Section):
    type: Literal["sft", "pretrain"] = Field(
        "sft",
        description="sft: train on assistant turns only; pretrain: continued pretraining on raw text, every token trained.",
    )


class TrainingSection(Section):
    epochs: float = Field(3.0, gt=0, description="Passes over the training data (ignored when max_steps is set).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps.")
    batch_size: int = Field(8, gt=0, description="Examples per micro-batch.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step; the loss is normalised by trained tokens.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (LoRA tolerates 1e-4..1e-3; full tuning wants ~1e-5).")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field("cosine", description="LR decay after warmup.")
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="Fraction of steps spent warming the LR up linearly.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold.")
    seed: int = Field(42, description="Seeds model init of new weights, data order and the validation split.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on CUDA, bf16 on CPUs with native bf16 (AMX/AVX512-BF16), else fp32."
    )
    logging_steps: int = Field(5, gt=0, description="Write a metrics.jsonl row every N steps.")
    eval_steps: int | None = Field(None, gt=0, description="Validation every N steps (default: once per epoch).")
    save_steps: int | None = Field(None, gt=0, description="Checkpoint every N steps (default: once per epoch).")
    save_total_limit: int = Field(2, gt=0, description="Checkpoints kept on disk.")
    early_stopping_patience: int | None = Field(
        None, gt=0, description="Stop when validation loss has not improved for this many evaluations."
    )
    threads: int | None = Field(None, gt=0, description="CPU threads for torch (default: torch's choice).")


class EvalSection(Section):
    data: str | None = Field(None, description="Held-out file for generation metrics (same formats as training).")
    before: bool = Field(True, description="Also evaluate the base model, for a before/after report.")
    metrics: list[str] = Field(default_factory=lambda: ["exact_match"], description="Generation metrics to compute.")
    task_metric: str | None = Field(None, description="The metric the report headlines (default: the first metric).")
    max_new_tokens: int = Field(128, gt=0, description="Generation length limit for generation metrics.")
    batch_size: int = Field(16, gt=0, description="Prompts generated together.")
    limit: int | None = Field(None, gt=0, description="Evaluate only the first N examples.")
    num_samples: int = Field(5, ge=0, description="Generations shown side by side in the report.")


class OutputSection(Section):
    dir: str = Field("runs/run", description="Run directory: resolved recipe, adapter/model, checkpoints, metrics, eval.")
    overwrite: bool = Field(False, description="Allow training into a run directory that already holds a finished run.")


class Recipe(Section):
    """A whole training recipe. Cross-section rules are checked here, before anything loads."""

    model: ModelSection = Field(default_factory=ModelSection)
    method: MethodSection = Field(default_factory=MethodSection)
    data: DataSection
    objective: ObjectiveSection = Field(default_factory=ObjectiveSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    output: OutputSection = Field(default_factory=OutputSection)

    @model_validator(mode="after")
    def _check_combinations(self) -> "Recipe":
        fmt = self.data.format
        if self.objective.type == "pretrain" and fmt not in ("auto", "text"):
            raise ValueError(
                f"objective.type 'pretrain' trains on raw text but data.format is '{fmt}'; "
                "set data.format: text, or use objective.type: sft for instruction data"
            )
        if self.objective.type == "sft" and fmt == "text":
            raise ValueError(
                "objective.type 'sft' needs prompt/response data but data.format is 'text'; "
                "set objective.type: pretrain for raw text, or use alpaca/messages data"
            )
        if self.data.validation and self.data.val_fraction > 0:
            raise ValueError(
                "data.validation and data.val_fraction are both set; keep one "
                "(a validation file, or a fraction held out from data.train)"
            )
        if self.eval.task_metric and self.eval.task_metric not in self.eval.metrics:
            raise ValueError(
                f"eval.task_metric '{self.eval.task_metric}' is not in eval.metrics {self.eval.metrics}; add it there"
            )
        if self.training.early_stopping_patience and not (self.data.validation or self.data.val_fraction > 0):
            raise ValueError(
                "training.early_stopping_patience needs validation data; set data.validation or data.val_fraction"
            )
        if self.training.precision == "fp16" and self.method.type == "full":
            raise ValueError(
                "training.precision 'fp16' with full fine-tuning overflows without master weights; use bf16 or fp32"
            )
        return self

    @property
    def headline_metric(self) -> str | None:
        """The metric a report leads with."""
        return self.eval.task_metric or (self.eval.metrics[0] if self.eval.metrics else None)

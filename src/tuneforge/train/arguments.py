"""The Trainer's arguments: ``transformers.TrainingArguments`` plus tuneforge's own training options.

tuneforge's options (the fused head's chunk size, LoRA+'s learning-rate ratio) are fields of a
``TrainingArguments`` subclass, as TRL does with its configs, so they travel with the arguments
into every trainer instead of being attached to a trainer after it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from tuneforge.config.schema import Recipe
from tuneforge.models.precision import Precision
from tuneforge.runs import CHECKPOINTS_DIR


@dataclass
class TuneforgeTrainingArguments(TrainingArguments):
    head_chunk_rows: int | None = field(
        default=None,
        metadata={"help": "Fuse the output head with the cross-entropy in chunks of this many trained positions (None: plain head)."},
    )
    loraplus_lr_ratio: float | None = field(
        default=None,
        metadata={"help": "LoRA+: learning rate of the B matrices / learning rate of the rest (None: one parameter group)."},
    )
    nonfinite: str = field(
        default="stop",
        metadata={"help": "NaN/inf in the loss or a gradient: 'stop' the run at that step, or 'skip' that optimizer step."},
    )


def training_arguments(
    recipe: Recipe, run_dir: Path, precision: Precision, *, has_val: bool, loraplus_lr_ratio: float | None = None
) -> TuneforgeTrainingArguments:
    """The recipe's ``training`` section as Trainer arguments writing checkpoints into ``run_dir``."""
    t = recipe.training
    every_epoch = {"eval_strategy": "epoch" if has_val else "no", "save_strategy": "epoch"}
    if t.eval_steps and has_val:
        every_epoch["eval_strategy"] = "steps"
    save_steps = t.save_steps
    if t.early_stopping_patience and t.eval_steps and not save_steps:
        save_steps = t.eval_steps  # restoring the best evaluation needs a checkpoint at each one
    if save_steps:
        every_epoch["save_strategy"] = "steps"
    return TuneforgeTrainingArguments(
        output_dir=str(run_dir / CHECKPOINTS_DIR),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio of total steps in transformers 5
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision.name == "bf16",
        fp16=precision.name == "fp16",
        use_cpu=precision.device == "cpu",
        logging_steps=t.logging_steps,
        activation_checkpointing=t.activation_checkpointing,
        # non-reentrant checkpointing needs no input that requires grad, so frozen embeddings (LoRA) just work
        activation_checkpointing_kwargs={"use_reentrant": False} if t.activation_checkpointing else None,
        eval_steps=t.eval_steps,
        save_steps=save_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=bool(t.early_stopping_patience),
        metric_for_best_model="eval_loss" if t.early_stopping_patience else None,
        greater_is_better=False if t.early_stopping_patience else None,
        include_num_input_tokens_seen="non_padding",
        prediction_loss_only=True,  # validation needs the loss only; never gather full-vocabulary logits
        disable_tqdm=True,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        head_chunk_rows=t.head_chunk_rows,
        loraplus_lr_ratio=loraplus_lr_ratio,
        nonfinite=t.nonfinite,
        # NEFTune: transformers' Trainer hooks the input embeddings while training (noise in train mode only)
        neftune_noise_alpha=t.neftune_alpha,
        **every_epoch,
    )

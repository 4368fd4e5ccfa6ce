"""tuneforge's Trainer: transformers.Trainer with the token-normalised loss computed cheaply.

Only public hooks are overridden:

- ``compute_loss``: where the architecture allows it and the model is not wrapped by a distributed
  engine, the loss runs the output head on trained positions only
  (:func:`~tuneforge.objectives.losses.trained_positions_loss`); otherwise the model's full logits go
  through ``compute_loss_func``. With ``share_prefix`` (set from the speed plan) the first path runs
  the micro-batch's common leading tokens once (:mod:`tuneforge.objectives.shared_prefix`). Both normalise by the trained tokens of the whole accumulated batch.
  Prompt-learning adapters (prefix / prompt tuning, P-Tuning) exist only in the peft model's own
  forward, so for them the loss always goes through it (:func:`prompt_learning_loss`). AdaLoRA's
  orthogonality penalty is added here, because peft adds it only to a loss the model computes itself;
  so are the trainer's ``regularisers`` (callables of the unwrapped model, e.g. the EWC penalty of
  :mod:`tuneforge.train.ewc`), in training mode only, each micro-batch adding its share of the step's.
- ``create_optimizer``: with ``args.loraplus_lr_ratio`` set (LoRA+), the B matrices get their own
  parameter group with ratio x the learning rate (peft's ``create_loraplus_optimizer``).

Its arguments are :class:`~tuneforge.train.arguments.TuneforgeTrainingArguments`, which carry those
options; :func:`make_trainer` builds it for the sft and pretrain recipes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from datasets import Dataset
from peft import PeftModel
from peft.optimizers import create_loraplus_optimizer
from transformers import PrinterCallback, Trainer, TrainerCallback

from tuneforge.data.collate import PadCollator
from tuneforge.data.packing import PackedCollator, model_inputs
from tuneforge.data.prepare import to_features
from tuneforge.data.render import Tokenized
from tuneforge.methods.adalora import is_adalora, orthogonal_regularization
from tuneforge.methods.prompt import align_labels, is_prompt_learning
from tuneforge.objectives.losses import (
    causal_lm_loss,
    supports_trained_positions_loss,
    trained_positions_loss,
    trainer_loss,
)
from tuneforge.train.arguments import TuneforgeTrainingArguments
from tuneforge.train.nonfinite import ROWS_KEY, NonfiniteGuardMixin, RowTaggingCollator
from tuneforge.train.speed_plan import uncompiled


def prompt_learning_loss(
    model: PeftModel, inputs: dict, labels: torch.Tensor, num_items_in_batch=None
) -> torch.Tensor:
    """Token-normalised causal LM loss through the peft model's own forward (virtual tokens included)."""
    logits = model(**inputs, use_cache=False).logits
    return causal_lm_loss(logits, align_labels(logits, labels), num_items_in_batch)


class TuneforgeTrainer(NonfiniteGuardMixin, Trainer):
    # compute_loss returns a loss already divided by the accumulated batch's token count.
    loss_is_scaled_for_ga = True
    args: TuneforgeTrainingArguments
    regularisers: Sequence[Callable[[torch.nn.Module], torch.Tensor]] = ()  # per-step penalties (train/ewc.py)
    share_prefix: bool = False  # run each micro-batch's shared leading tokens once (the speed plan decides)

    def compute_loss(
        self, model, inputs, return_outputs=False, num_items_in_batch=None
    ):
        inputs = model_inputs(inputs)  # packed rows: drop the all-ones mask so the block mask applies (data/packing.py)
        plain = self.accelerator.unwrap_model(model)
        loss = None
        if "labels" in inputs and is_prompt_learning(plain):
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            loss = prompt_learning_loss(model, inputs, labels, num_items_in_batch)
        elif plain is model and "labels" in inputs:
            base = plain.get_base_model() if isinstance(plain, PeftModel) else plain
            if supports_trained_positions_loss(base):
                inputs = dict(inputs)
                labels = inputs.pop("labels")
                # accelerate applies mixed precision by wrapping model.forward in autocast; calling the
                # decoder and head directly bypasses that wrapper, so enter the same autocast here
                # (without it this path ran in fp32 under bf16 and lost the bf16 speed-up).
                with self.accelerator.autocast():
                    loss = trained_positions_loss(
                        base,
                        inputs,
                        labels,
                        num_items_in_batch,
                        chunk_rows=self.args.head_chunk_rows,
                        share_prefix=self.share_prefix,
                    )
        if loss is None:
            return self._with_regularisers(
                plain,
                super().compute_loss(model, inputs, return_outputs, num_items_in_batch),
                return_outputs,
            )
        loss = self._with_regularisers(plain, loss, False)
        return (loss, {"loss": loss}) if return_outputs else loss

    def evaluate(self, *args, **kwargs):
        # Blocks compiled for training (training.compile, train/speed_plan.py) would compile again for
        # eval mode's no-grad shapes; validation runs them as plain eager code instead.
        with uncompiled():
            return super().evaluate(*args, **kwargs)

    def _with_regularisers(self, plain, result, return_outputs: bool):
        penalties = [orthogonal_regularization] if is_adalora(plain) else []
        penalties += list(self.regularisers)
        if not (penalties and plain.training):
            return result
        # The penalty is per optimizer step; each micro-batch adds its share so accumulation sums to it once.
        share = sum(penalty(plain) for penalty in penalties) / self.args.gradient_accumulation_steps
        if return_outputs:
            loss, outputs = result
            return loss + share, outputs
        return result + share

    def create_optimizer(self, model=None):
        if self.args.loraplus_lr_ratio is None or self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(
            self.args, opt_model
        )
        optimizer_kwargs.pop("lr", None)
        self.optimizer = create_loraplus_optimizer(
            opt_model,
            optimizer_cls,
            lr=self.args.learning_rate,
            loraplus_lr_ratio=self.args.loraplus_lr_ratio,
            loraplus_weight_decay=self.args.weight_decay,
            **optimizer_kwargs,
        )
        return self.optimizer


def make_trainer(
    model,
    args: TuneforgeTrainingArguments,
    tokenizer,
    train_ex: Sequence[Tokenized],
    val_ex: Sequence[Tokenized],
    callbacks: Sequence[TrainerCallback] = (),
    *,
    packing: bool = False,
    regularisers: Sequence[Callable[[torch.nn.Module], torch.Tensor]] = (),
) -> TuneforgeTrainer:
    """The trainer of the sft, pretrain and cft recipes: packed (or padded) batches, token-normalised loss.

    Training features carry their example index (:data:`ROWS_KEY`), so a NaN/inf can name its source rows.
    ``regularisers`` are added to every training micro-batch's loss (e.g. EWC, train/ewc.py).
    """
    features = [{**f, ROWS_KEY: i} for i, f in enumerate(to_features(train_ex))]
    trainer = TuneforgeTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(features),
        eval_dataset=Dataset.from_list(to_features(val_ex)) if val_ex else None,
        data_collator=RowTaggingCollator(PackedCollator() if packing else PadCollator(tokenizer.pad_token_id)),
        compute_loss_func=trainer_loss,
        callbacks=list(callbacks),
    )
    trainer.regularisers = list(regularisers)
    trainer.setup_nonfinite(args.nonfinite, [e.source for e in train_ex])
    trainer.remove_callback(PrinterCallback)  # RichProgress shows progress; the printer would repeat it
    return trainer

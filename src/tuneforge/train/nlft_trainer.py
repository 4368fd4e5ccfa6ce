"""The NLFT trainer: each batch carries y under three prompts; the loss is :func:`~tuneforge.objectives.nlft.nlft_loss`.

The reference and critique prompts are scored with the current model under ``no_grad`` at every
step (as the paper's code does, so the weights follow the model as it learns) and only the
question-alone prompt builds a graph. Full logits are computed (no trained-positions head): the
three forward passes, not the head, dominate here, and the simpler path works for every method
that keeps the model's own forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from datasets import Dataset
from transformers import PrinterCallback, Trainer, TrainerCallback

from tuneforge.config.nlft import NlftOptions
from tuneforge.data.collate import PadCollator
from tuneforge.data.render import Tokenized
from tuneforge.objectives.nlft import nlft_loss, response_logprobs
from tuneforge.train.arguments import TuneforgeTrainingArguments

VIEWS = ("", "ref_", "crit_")  # feature prefixes: question alone, + reference, + critique


@dataclass
class NlftExample:
    """One response under the three prompts, with the verdict on it."""

    base: Tokenized
    ref: Tokenized
    crit: Tokenized
    correct: bool

    @property
    def source(self) -> str:
        return self.base.source


def nlft_features(examples: Sequence[NlftExample]) -> list[dict]:
    rows = []
    for ex in examples:
        row: dict = {"correct": int(ex.correct)}
        for prefix, tok in zip(VIEWS, (ex.base, ex.ref, ex.crit), strict=True):
            row[f"{prefix}input_ids"], row[f"{prefix}labels"] = tok.input_ids, tok.labels
        rows.append(row)
    return rows


@dataclass
class NlftCollator:
    """Pads each of the three views like :class:`~tuneforge.data.collate.PadCollator`."""

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        pad = PadCollator(self.pad_token_id)
        batch: dict[str, torch.Tensor] = {"correct": torch.tensor([f["correct"] for f in features], dtype=torch.bool)}
        for prefix in VIEWS:
            view = pad([{"input_ids": f[f"{prefix}input_ids"], "labels": f[f"{prefix}labels"]} for f in features])
            batch.update({f"{prefix}{k}": v for k, v in view.items()})
        return batch


def _view_logprobs(model, inputs: dict, prefix: str) -> list[torch.Tensor]:
    logits = model(input_ids=inputs[f"{prefix}input_ids"], attention_mask=inputs[f"{prefix}attention_mask"], use_cache=False).logits
    return response_logprobs(logits, inputs[f"{prefix}labels"])


class NlftTrainer(Trainer):
    loss_is_scaled_for_ga = True  # nlft_loss is already divided by the accumulated batch's token count
    options: NlftOptions

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        with torch.no_grad():
            p_ref = [lp.exp() for lp in _view_logprobs(model, inputs, "ref_")]
            p_crit = [lp.exp() for lp in _view_logprobs(model, inputs, "crit_")]
        logp = _view_logprobs(model, inputs, "")
        loss = nlft_loss(logp, p_ref, p_crit, inputs["correct"].tolist(), self.options, num_items_in_batch)
        return (loss, {"loss": loss}) if return_outputs else loss


def make_nlft_trainer(
    model, args: TuneforgeTrainingArguments, tokenizer, train_ex: Sequence[NlftExample], options: NlftOptions,
    callbacks: Sequence[TrainerCallback] = (),
) -> NlftTrainer:  # fmt: skip
    """The nlft recipe's trainer (no validation split: the loss needs critiques of held-out rows too)."""
    trainer = NlftTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(nlft_features(train_ex)),
        data_collator=NlftCollator(tokenizer.pad_token_id),
        callbacks=list(callbacks),
    )
    trainer.options = options
    trainer.remove_callback(PrinterCallback)
    return trainer

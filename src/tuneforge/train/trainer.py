"""tuneforge's Trainer: transformers.Trainer with the token-normalised loss computed cheaply.

Only the public ``compute_loss`` hook is overridden. Where the architecture allows it and the model
is not wrapped by a distributed engine, the loss runs the output head on trained positions only
(:func:`~tuneforge.objectives.losses.trained_positions_loss`); otherwise the model's full logits go
through ``compute_loss_func``. Both normalise by the trained tokens of the whole accumulated batch.
"""

from __future__ import annotations

from peft import PeftModel
from transformers import Trainer

from tuneforge.objectives.losses import supports_trained_positions_loss, trained_positions_loss


class TuneforgeTrainer(Trainer):
    # compute_loss returns a loss already divided by the accumulated batch's token count.
    loss_is_scaled_for_ga = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        plain = self.accelerator.unwrap_model(model)
        if plain is model and "labels" in inputs:
            base = plain.get_base_model() if isinstance(plain, PeftModel) else plain
            if supports_trained_positions_loss(base):
                inputs = dict(inputs)
                labels = inputs.pop("labels")
                loss = trained_positions_loss(base, inputs, labels, num_items_in_batch)
                return (loss, {"loss": loss}) if return_outputs else loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

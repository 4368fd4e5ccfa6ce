"""Loss functions shared by objectives, each with a closed-form test.

``causal_lm_loss`` sums the token losses and divides by the number of trained tokens in the whole
accumulated batch (``num_items_in_batch``, counted by the Trainer across micro-batches), so batch 4 x
accumulation 1 and batch 1 x accumulation 4 give the same update. Averaging per micro-batch instead
over-weights tokens of short examples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tuneforge.data.render import IGNORE_INDEX


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts labels[t+1]; IGNORE_INDEX labels are skipped."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    total = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    if num_items_in_batch is None:
        num_items_in_batch = shift_labels.ne(IGNORE_INDEX).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def trainer_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Adapter for ``transformers.Trainer(compute_loss_func=...)``."""
    return causal_lm_loss(outputs.logits, labels, num_items_in_batch)

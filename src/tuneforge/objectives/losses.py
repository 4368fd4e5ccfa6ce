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
from tuneforge.models.architectures import architecture
from tuneforge.objectives.chunked_ce import linear_cross_entropy
from tuneforge.objectives.shared_prefix import can_share, shared_prefix_hidden


def causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts labels[t+1]; IGNORE_INDEX labels are skipped."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    total = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    if num_items_in_batch is None:
        num_items_in_batch = shift_labels.ne(IGNORE_INDEX).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def trainer_loss(
    outputs, labels: torch.Tensor, num_items_in_batch=None
) -> torch.Tensor:
    """Adapter for ``transformers.Trainer(compute_loss_func=...)``."""
    return causal_lm_loss(outputs.logits, labels, num_items_in_batch)


def supports_trained_positions_loss(model) -> bool:
    """True when :func:`trained_positions_loss` computes the same loss as the model's own logits: the
    architecture's logits are the plain head's (``models/architectures.py``) and the model exposes both."""
    config = getattr(model, "config", None)
    return (
        architecture(getattr(config, "model_type", None)).plain_head
        and hasattr(model, "get_decoder")
        and model.get_output_embeddings() is not None
    )


def trained_positions_loss(
    model,
    inputs: dict,
    labels: torch.Tensor,
    num_items_in_batch=None,
    chunk_rows: int | None = None,
    share_prefix: bool = False,
) -> torch.Tensor:
    """The causal LM loss with the output head applied only where a label is trained.

    In SFT most positions (the prompt) carry no label, yet the full model computes vocabulary-sized
    logits at every one of them; with a 49k vocabulary and a 576-wide model the head is a large share
    of the step. Running the decoder, selecting the hidden states whose next token is trained and
    projecting only those gives the same loss and gradients (tested against the full path) for less
    compute and memory. ``model`` is the plain transformers model (peft layers are injected into its
    modules, so they run too). With ``chunk_rows`` (and a bias-free linear head) the head and the
    cross-entropy run fused in chunks (:mod:`tuneforge.objectives.chunked_ce`), so not even the trained
    positions' logits exist all at once. With ``share_prefix`` the rows' common leading tokens run
    once for the whole micro-batch (:mod:`tuneforge.objectives.shared_prefix`).
    """
    decoder = model.get_decoder()
    hidden = None
    prefix = can_share(decoder, inputs) if share_prefix else 0
    if prefix:
        hidden = shared_prefix_hidden(decoder, inputs, prefix)
    if hidden is None:
        hidden = decoder(**inputs, use_cache=False).last_hidden_state
    targets = labels[:, 1:].to(hidden.device)
    keep = targets.ne(IGNORE_INDEX)
    head = model.get_output_embeddings()
    selected = hidden[:, :-1][keep]
    if chunk_rows and isinstance(head, torch.nn.Linear) and head.bias is None:
        total = linear_cross_entropy(
            selected, head.weight, targets[keep], chunk_rows=chunk_rows
        )
    else:
        total = F.cross_entropy(head(selected).float(), targets[keep], reduction="sum")
    if num_items_in_batch is None:
        num_items_in_batch = keep.sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch

"""Sequence log-probs of preference examples (:mod:`tuneforge.data.preference_examples`) under a policy.

The summed log-probability of each side's labelled answer, through the trained-positions head where
the architecture allows it (same values as the full logits, tested).
"""

from __future__ import annotations

import torch
from peft import PeftModel

from tuneforge.data.render import IGNORE_INDEX
from tuneforge.objectives.losses import supports_trained_positions_loss


def plain_model(model):
    """The transformers model under a peft wrapper (peft layers are injected into its modules, so they still run)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _prompt_learning(model) -> bool:
    """Prompt / prefix tuning: the virtual tokens only exist in the peft model's own forward."""
    return isinstance(model, PeftModel) and model.active_peft_config.is_prompt_learning


def sequence_logps(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of the labelled tokens of each sequence, and their counts.

    For plain-head architectures the output head runs only on labelled positions (the answer), as in
    :func:`~tuneforge.objectives.losses.trained_positions_loss`; otherwise the full logits are used.
    Both give the same numbers (tested).
    """
    targets = labels[:, 1:]
    keep = targets.ne(IGNORE_INDEX)
    counts = keep.sum(dim=1)
    base = plain_model(model)
    if supports_trained_positions_loss(base) and not _prompt_learning(model):
        hidden = base.get_decoder()(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        logits = base.get_output_embeddings()(hidden[:, :-1][keep]).float()
    else:
        # Prompt-learning adapters prepend virtual tokens to the outputs: keep the real positions.
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        logits = out.logits[:, -input_ids.size(1) :][:, :-1][keep].float()
    token_logps = torch.gather(
        logits.log_softmax(-1), 1, targets[keep].unsqueeze(1)
    ).squeeze(1)
    rows = (
        torch.arange(input_ids.size(0), device=input_ids.device)
        .unsqueeze(1)
        .expand_as(targets)[keep]
    )
    sums = torch.zeros(
        input_ids.size(0), dtype=token_logps.dtype, device=token_logps.device
    ).index_add(0, rows, token_logps)
    return sums, counts

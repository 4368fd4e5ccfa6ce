"""The completions' log-probs with each prompt run once per group: the update side of the shared prefill.

grpo, rloo and ppo sample G completions of every prompt, and each update (and the no-grad passes for
the old policy and the reference) scores every completion: a forward over prompt + completion for
each of the G rows, so each prompt's tokens ran G times, and prompts that carry an instruction and a
worked example are most of a row. Here the distinct prompts of a micro-batch run once, as a batch
with the KV cache on; the cache is repeated to each prompt's G rows (``batch_repeat_interleave``, a
public method) and the completions run on top of it, with positions that follow the attention mask
as in generation (left padding does not shift them). Autograd flows through the repeated keys and
values into the prompt pass, so the gradients are those of the plain forward: each row's prompt
states are the same tensors it would have computed itself (tested equal, with LoRA and with a value
head, in ``tests/train/test_group_prompt.py``).

Exact only when nothing random touches the prompt's forward (no active dropout): the speed plan
decides (``training.share_prefix``, train/speed_plan.py), as for sft's shared prefix
(objectives/shared_prefix.py), whose single-prefix form this generalises to several prompts per batch.
"""

from __future__ import annotations

import torch
from peft import PeftModel

from tuneforge.models.cache import cache_keyword, concatenating_cache
from tuneforge.objectives.losses import supports_trained_positions_loss
from tuneforge.objectives.shared_prefix import MIN_SHARED_TOKENS, checkpointed


def group_completion_states(
    model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor, completion_mask: torch.Tensor, group: int
) -> torch.Tensor | None:
    """``[N, C, hidden]``: the last hidden states that predict each completion token, every prompt run once.

    Rows ``i * group .. (i + 1) * group - 1`` must hold the same (left-padded) prompt. Returns None
    where this does not apply, and the caller runs the plain forward: groups of one, prompts shorter
    than :data:`MIN_SHARED_TOKENS`, rows of a group that differ, a head that is not the plain linear
    one, checkpointed blocks (no cache), or a cache that is not plain concatenation (sliding windows).
    """
    rows, width = prompt_ids.shape
    if group < 2 or rows % group or width < MIN_SHARED_TOKENS or completion_ids.shape[1] == 0:
        return None
    if not supports_trained_positions_loss(model):
        return None
    decoder = model.get_decoder()
    cache = concatenating_cache(decoder.config)
    if cache is None or checkpointed(decoder):
        return None
    heads, heads_mask = prompt_ids[::group], prompt_mask[::group]
    grouped = prompt_ids.view(rows // group, group, width)
    if not (grouped.eq(heads.unsqueeze(1)).all() and prompt_mask.view(rows // group, group, width).eq(heads_mask.unsqueeze(1)).all()):
        return None
    mask = torch.cat([prompt_mask, completion_mask.to(prompt_mask.dtype)], dim=1)
    positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
    keyword = cache_keyword(decoder)
    prompt = decoder(input_ids=heads, attention_mask=heads_mask, position_ids=positions[::group, :width], use_cache=True, **{keyword: cache})
    cache.batch_repeat_interleave(group)
    tail = decoder(input_ids=completion_ids, attention_mask=mask, position_ids=positions[:, width:], use_cache=True, **{keyword: cache})
    last_prompt = prompt.last_hidden_state[:, -1:].repeat_interleave(group, dim=0)  # predicts each completion's first token
    return torch.cat([last_prompt, tail.last_hidden_state[:, :-1]], dim=1)


def group_completion_logps(
    model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor, completion_mask: torch.Tensor,
    group: int, temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor] | None:  # fmt: skip
    """(``[N, C]`` log-probs of the completion tokens, the ``[N, C, hidden]`` states that predict them), or None.

    The same log-probs as :func:`tuneforge.train.rollout.completion_logps` (logits / temperature,
    gathered logit minus logsumexp). ``model`` is the policy (a peft model or a plain one); the states
    are what PPO's value head reads.
    """
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    states = group_completion_states(base, prompt_ids, prompt_mask, completion_ids, completion_mask, group)
    if states is None:
        return None
    logits = base.get_output_embeddings()(states).float()
    if temperature != 1.0:
        logits = logits / temperature
    picked = torch.gather(logits, 2, completion_ids.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1), states

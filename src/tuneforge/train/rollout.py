"""Rollouts for online RL: sample G completions per prompt with the policy, and the log-probs the loss needs.

Generation is one batched, left-padded ``model.generate`` call with the KV cache, in eval mode (no
dropout), with the adapter applied as it is (a peft model generates through its unmerged adapter, so
nothing is merged and unmerged every step). A completion's mask covers its tokens up to and
including the first end token; a completion that reaches ``max_completion_length`` without one is
*truncated*. Log-probs are computed on the completion tokens only (``logits_to_keep``), divided by
the sampling temperature first, so they are the log-probs of the distribution that was sampled.
Positions follow the attention mask (left padding does not shift them), as in generation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase

from tuneforge.data.records import PromptRecord
from tuneforge.models.autocast_weights import weights_cast_once


def autocast_context(dtype: torch.dtype | None, device: str = "cpu"):
    """bf16/fp16 autocast when the run trains in low precision, else a no-op."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device, dtype=dtype)


@dataclass(frozen=True)
class Sampling:
    """How rollouts are sampled (objective.grpo's generation options)."""

    num_generations: int
    max_completion_length: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off


@dataclass
class Rollout:
    """One step's sampled completions; row ``i`` answers ``records[i]`` (each prompt repeated G times, adjacent)."""

    records: list[PromptRecord]
    prompt_ids: torch.Tensor  # [N, P] left-padded
    prompt_mask: torch.Tensor  # [N, P]
    completion_ids: torch.Tensor  # [N, C] right-padded
    completion_mask: torch.Tensor  # [N, C] float: tokens up to and including the first end token
    truncated: torch.Tensor  # [N] bool: no end token within max_completion_length
    completions: list[str]  # decoded completion texts, special tokens stripped
    seconds: float  # wall time of the generation

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.completion_mask.to(self.prompt_mask.dtype)], dim=1)

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(dim=1)

    def rows(self, index: torch.Tensor | slice) -> Rollout:
        """The rollout restricted to some rows (dynamic sampling keeps whole groups; micro-batches are slices)."""
        records = [self.records[i] for i in (range(len(self.records))[index] if isinstance(index, slice) else index.tolist())]
        completions = [self.completions[i] for i in (range(len(self.completions))[index] if isinstance(index, slice) else index.tolist())]
        return Rollout(
            records, self.prompt_ids[index], self.prompt_mask[index], self.completion_ids[index],
            self.completion_mask[index], self.truncated[index], completions, self.seconds,
        )  # fmt: skip


    def trimmed(self) -> Rollout:
        """The same rows without the columns that are padding in every row (left of the prompts, right of the completions)."""
        used = self.prompt_mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else 0
        width = int(self.completion_mask.sum(dim=1).max()) if len(self.records) else 0
        return Rollout(
            self.records, self.prompt_ids[:, first:], self.prompt_mask[:, first:], self.completion_ids[:, :width],
            self.completion_mask[:, :width], self.truncated, self.completions, self.seconds,
        )  # fmt: skip


def render_prompts(records: Sequence[PromptRecord], tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Each prompt through the tokenizer's chat template, ending with the assistant's generation prompt."""
    return [tokenizer.apply_chat_template(r.as_dicts(), tokenize=False, add_generation_prompt=True) for r in records]


def end_token_ids(tokenizer: PreTrainedTokenizerBase, model) -> list[int]:
    """Token ids that end a completion: the tokenizer's EOS and the model's generation EOS (often the end-of-turn token)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def completion_mask_of(completion_ids: torch.Tensor, end_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask up to and including the first end token, truncated = no end token in the row)."""
    is_end = torch.isin(completion_ids, torch.tensor(list(end_ids), device=completion_ids.device))
    has_end = is_end.any(dim=1)
    first = torch.where(has_end, is_end.int().argmax(dim=1), torch.full_like(has_end, completion_ids.shape[1], dtype=torch.long))
    positions = torch.arange(completion_ids.shape[1], device=completion_ids.device).unsqueeze(0)
    return (positions <= first.unsqueeze(1)).float(), ~has_end


def _prefilled_cache(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, repeats: int):
    """The KV cache of every prompt but its last token, computed once per prompt and repeated for its G samples.

    The G completions of a prompt share its prefix, so the prompt's forward pass (most of a rollout's
    tokens when prompts carry a worked example) runs once instead of G times; ``generate`` then starts
    from the last prompt token. ``batch_repeat_interleave`` is the cache's public API for this.
    """
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids[:, :-1], attention_mask=attention_mask[:, :-1], position_ids=position_ids[:, :-1], use_cache=True, logits_to_keep=1
    )
    cache = out.cache
    cache.batch_repeat_interleave(repeats)
    return cache


@torch.no_grad()
def generate_rollout(
    model,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[PromptRecord],
    sampling: Sampling,
    *,
    autocast_dtype: torch.dtype | None = None,
    share_prefill: bool = True,
) -> Rollout:
    """Sample ``sampling.num_generations`` completions of every prompt in one batched generate call.

    ``share_prefill``: run each prompt's forward pass once and give its G samples copies of its KV cache
    (same tokens and distributions as prefilling every copy; much less prompt compute).
    """
    started = time.perf_counter()
    device = next(model.parameters()).device
    G = sampling.num_generations
    repeated = [r for r in records for _ in range(G)]
    previous_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(render_prompts(records, tokenizer), return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    finally:
        tokenizer.padding_side = previous_side
    prompt_ids, prompt_mask = enc["input_ids"].repeat_interleave(G, dim=0), enc["attention_mask"].repeat_interleave(G, dim=0)
    end_ids = end_token_ids(tokenizer, model)
    config = GenerationConfig(
        do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
        max_new_tokens=sampling.max_completion_length, pad_token_id=tokenizer.pad_token_id, eos_token_id=end_ids, use_cache=True,
    )  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        # linear weights cast once for the whole call (models/autocast_weights.py), not on every sampling step
        with weights_cast_once(model, autocast_dtype), autocast_context(autocast_dtype, device.type):
            extra = {}
            if share_prefill and prompt_ids.shape[1] > 1:
                extra["cache"] = _prefilled_cache(model, enc["input_ids"], enc["attention_mask"], G)
            out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config, **extra)
    finally:
        model.train(was_training)
    completion_ids = out[:, prompt_ids.shape[1] :]
    mask, truncated = completion_mask_of(completion_ids, end_ids)
    completion_ids = torch.where(mask.bool(), completion_ids, torch.full_like(completion_ids, tokenizer.pad_token_id))
    texts = [t.strip() for t in tokenizer.batch_decode(completion_ids, skip_special_tokens=True)]
    return Rollout(repeated, prompt_ids, prompt_mask, completion_ids, mask, truncated, texts, time.perf_counter() - started)


def completion_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int, temperature: float = 1.0) -> torch.Tensor:
    """``[N, n_completion]`` log-probs of the last ``n_completion`` tokens of each row under ``model``.

    The head runs on the completion positions only (``logits_to_keep``) and the log-softmax is formed
    as gathered logit minus logsumexp, so no second vocabulary-sized tensor is kept for backward.
    """
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=n_completion + 1, use_cache=False
    ).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    targets = input_ids[:, -n_completion:]
    picked = torch.gather(logits, 2, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)

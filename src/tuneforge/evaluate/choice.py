"""Multiple choice by log-likelihood: the model picks the option it finds most probable, no generation.

Each option is scored as the sum of its tokens' log-probabilities after the chat-templated prompt
(the assistant turn's start), as lm-eval scores ``multiple_choice`` tasks. Summed log-likelihood
favours short options; ``eval.choice_normalisation`` divides by the option's token count (tokens)
or character count (chars, lm-eval's ``acc_norm``, which divides by bytes) to correct for that.
The prompt and the option are tokenised separately and concatenated, so the prompt's tokens are the
same for every option and no option can merge with the prompt's last token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tuneforge.data.render import render_prompt
from tuneforge.evaluate.eval_data import EvalRecord
from tuneforge.evaluate.generate import autocast_context


@dataclass(frozen=True)
class OptionScore:
    logprob: float  # summed log-probability of the option's tokens
    tokens: int
    chars: int

    def score(self, normalisation: str) -> float:
        """The option's score under eval.choice_normalisation (none, tokens or chars)."""
        if normalisation == "tokens":
            return self.logprob / max(1, self.tokens)
        if normalisation == "chars":
            return self.logprob / max(1, self.chars)
        return self.logprob


@torch.inference_mode()
def option_scores(model, tokenizer, prompt: str, options: Sequence[str], *, autocast_dtype: torch.dtype | None = None) -> list[OptionScore]:
    """Log-likelihood of each option after ``prompt`` (already templated), in one padded batch."""
    device = next(model.parameters()).device
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    option_ids = [tokenizer(o, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id] for o in options]
    rows = [prompt_ids + ids for ids in option_ids]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    was_training = model.training
    model.eval()
    try:
        with autocast_context(autocast_dtype, device.type):
            logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits
    finally:
        model.train(was_training)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    out = []
    for k, ids in enumerate(option_ids):
        start = len(prompt_ids)
        positions = torch.arange(start - 1, start - 1 + len(ids), device=device)  # logits at t predict token t+1
        targets = torch.tensor(ids, device=device)
        total = float(logprobs[k, positions, targets].sum())
        out.append(OptionScore(total, len(ids), len(options[k])))
    return out


def choose(scores: Sequence[OptionScore], normalisation: str) -> int:
    """Index of the best option (the first one on a tie)."""
    values = [s.score(normalisation) for s in scores]
    return max(range(len(values)), key=lambda i: (values[i], -i))


def choice_predictions(model, tokenizer, records: Sequence[EvalRecord], normalisation: str, *, autocast_dtype: torch.dtype | None = None) -> list[int]:
    """The option index the model picks for each choice record (-1 for a record without options)."""
    picks = []
    for record in records:
        if not getattr(record, "options", ()):
            picks.append(-1)
            continue
        prompt = render_prompt(tokenizer, record.as_dicts())
        picks.append(choose(option_scores(model, tokenizer, prompt, record.options, autocast_dtype=autocast_dtype), normalisation))
    return picks


def choice_accuracy(picks: Sequence[int], records: Sequence[EvalRecord]) -> dict[str, float]:
    """Fraction of choice records whose pick is the gold option."""
    scored = [(p, r.answer_index) for p, r in zip(picks, records) if getattr(r, "options", ())]
    return {"choice_accuracy": sum(float(p == g) for p, g in scored) / len(scored) if scored else 0.0}

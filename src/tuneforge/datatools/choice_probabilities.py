"""A local judge's pairwise verdict read from its next-token probabilities instead of parsed from a reply.

Asked to compare two answers and reply as JSON, the built-in 135M model mostly answers the question
itself or writes prose: on 48 RLAIF pairs (2026-12-03) 22 of its replies named no answer in either
order and every reply that did named answer 1, so nothing could be labelled. A local judge does
not have to generate at all: its reply is opened for it with ``{"better":`` and the verdict is the
probability it gives the next token being 1 rather than 2, renormalised over the two. That always
yields a verdict, and the two orders' probabilities cancel a constant position bias (see
:func:`tuneforge.datatools.pairwise.probability_verdict`). Endpoints return text only, so they keep
the parsed reply (``judge.verdict``, config/judge_client.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

VERDICT_OPENING = '{"better":'  # the reply the pairwise prompt asks for, opened for the judge
CHOICES = (" 1", " 2")


def _choice_context(tokenizer, text: str) -> tuple[list[int], int, int]:
    """(context ids, token of choice 1, token of choice 2): the ids up to where the two continuations differ."""
    first, second = (tokenizer(text + c, add_special_tokens=False)["input_ids"] for c in CHOICES)
    common = 0
    while common < min(len(first), len(second)) and first[common] == second[common]:
        common += 1
    if common >= min(len(first), len(second)):
        raise ValueError(f"the tokenizer does not tell {CHOICES[0]!r} from {CHOICES[1]!r} after the verdict opening")
    return first[:common], first[common], second[common]


@torch.inference_mode()
def first_answer_probabilities(model, tokenizer, questions: Sequence[str], system: str | None, *, batch_size: int = 8) -> list[float]:
    """P(answer 1 is better) for each question: the chat-templated question, the judge's reply opened
    with ``{"better":``, and its next-token probabilities of 1 and 2, renormalised over the two."""
    contexts = []
    for question in questions:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + VERDICT_OPENING
        contexts.append(_choice_context(tokenizer, text))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    out: list[float] = []
    for start in range(0, len(contexts), batch_size):
        chunk = contexts[start : start + batch_size]
        width = max(len(ids) for ids, _, _ in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (context, _, _) in enumerate(chunk):  # left-padded: every row's next token is at the last position
            ids[row, width - len(context) :] = torch.tensor(context)
            mask[row, width - len(context) :] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device), logits_to_keep=1, use_cache=False
        ).logits[:, -1].float()
        pair = torch.stack([logits[row, [one, two]] for row, (_, one, two) in enumerate(chunk)])
        out += torch.softmax(pair, dim=-1)[:, 0].tolist()
    return out

"""The held-out loss computed from the generation pass's prefill, so each prompt runs through the model once.

An evaluation needs two things of every held-out example: the loss of its reference answer (teacher
forcing over prompt + answer) and a greedy generation from its prompt. Done separately, the prompt -
most of the tokens: ~75% on the quickstart - goes through the model twice. Here the generation's
prefill builds the prompts' KV cache once; the reference answers are then fed after it
(:meth:`RowBatch.lookahead`, which leaves the cache as it was) and scored, and decoding goes on from
the same cache. The loss is the same sum of next-token losses over the same trained tokens as
:func:`tuneforge.evaluate.loss.evaluate_loss` (tested to 1e-5: only the batching differs, so only
floating-point rounding does).

An example shares its prefill only when its tokenized form starts with exactly the generation
prompt's tokens and nothing before the answer is trained (a single-turn example within max_length,
as eval data nearly always is). Any other example - a multi-turn conversation whose earlier assistant
turns are trained, a truncated one, a template that renders the answer's prefix differently, or a
prompt that went through ``model.generate`` (a batch of one) - is scored by ``evaluate_loss`` as before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tuneforge.data.render import IGNORE_INDEX, Tokenized
from tuneforge.evaluate.generate import RowBatch


@dataclass(frozen=True)
class Continuation:
    """The reference answer after a prompt: its token ids and labels (IGNORE_INDEX where untrained)."""

    ids: tuple[int, ...]
    labels: tuple[int, ...]


def continuation_after(example: Tokenized, prompt_ids: Sequence[int]) -> Continuation | None:
    """``example``'s tokens after ``prompt_ids`` when it starts with exactly them and trains nothing
    inside them; None when the example cannot share the prompt's prefill."""
    n = len(prompt_ids)
    if len(example.input_ids) <= n or list(example.input_ids[:n]) != list(prompt_ids):
        return None
    if any(label != IGNORE_INDEX for label in example.labels[:n]):
        return None
    return Continuation(tuple(example.input_ids[n:]), tuple(example.labels[n:]))


@dataclass
class SharedLoss:
    """Collects each scored prompt's summed loss and trained-token count, by prompt index."""

    continuations: Sequence[Continuation | None]
    pad_id: int
    scored: dict[int, tuple[float, int]] = field(default_factory=dict)
    seconds: float = 0.0  # time spent scoring (generate_batch leaves it out of the generation timings)

    def __call__(self, indices: Sequence[int], batch: RowBatch, logits: torch.Tensor) -> None:
        """``generate_batch``'s ``on_prefill`` hook: score the batch's continuations from its prompt cache."""
        started = time.perf_counter()
        try:
            self._score(indices, batch, logits)
        finally:
            self.seconds += time.perf_counter() - started

    def _score(self, indices: Sequence[int], batch: RowBatch, logits: torch.Tensor) -> None:
        conts = [self.continuations[i] for i in indices]
        if not any(conts):
            return
        device = logits.device
        # The first answer token is predicted by the prompt's last position: the prefill's own logits.
        first = torch.tensor([c.labels[0] if c else IGNORE_INDEX for c in conts], device=device)
        first_loss = F.cross_entropy(logits.float(), first, ignore_index=IGNORE_INDEX, reduction="none")
        totals = [float(first_loss[r]) if conts[r] and first[r] != IGNORE_INDEX else 0.0 for r in range(len(conts))]
        counts = [int(first[r] != IGNORE_INDEX) if conts[r] else 0 for r in range(len(conts))]
        # The rest: feed tokens 0..n-2 of each answer after its prompt; position j predicts token j+1.
        width = max((len(c.ids) - 1 for c in conts if c), default=0)
        if width > 0:
            ids = torch.full((len(conts), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(conts), width), dtype=torch.long)
            targets = torch.full((len(conts), width), IGNORE_INDEX, dtype=torch.long)
            for r, c in enumerate(conts):
                if c and len(c.ids) > 1:
                    n = len(c.ids) - 1
                    ids[r, :n] = torch.tensor(c.ids[:-1])
                    mask[r, :n] = 1
                    targets[r, :n] = torch.tensor(c.labels[1:])
            ahead = batch.lookahead(ids.to(device), mask.to(device))
            targets = targets.to(device)
            losses = F.cross_entropy(ahead.float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
            for r in range(len(conts)):
                if conts[r]:
                    totals[r] += float(losses[r].sum())
                    counts[r] += int(targets[r].ne(IGNORE_INDEX).sum())
        for r, i in enumerate(indices):
            if conts[r]:
                self.scored[i] = (totals[r], counts[r])


def shared_loss_for(examples: Sequence[Tokenized], sources: Sequence[str], prompt_ids: Sequence[Sequence[int]], pad_id: int) -> SharedLoss:
    """The hook for prompts ``prompt_ids`` (one per eval record, whose ``source`` is ``sources[i]``);
    ``examples`` are the records' loss examples (``prepare_chat`` may have dropped some)."""
    by_source = {e.source: e for e in examples}
    if len(by_source) != len(examples):  # sources not unique: no safe pairing, everything goes the separate way
        return SharedLoss([None] * len(prompt_ids), pad_id)
    conts = [continuation_after(by_source[src], ids) if src in by_source else None for src, ids in zip(sources, prompt_ids)]
    return SharedLoss(conts, pad_id)


def remaining_examples(examples: Sequence[Tokenized], sources: Sequence[str], shared: SharedLoss) -> list[Tokenized]:
    """The loss examples the hook did not score, for ``evaluate_loss``."""
    done = {sources[i] for i in shared.scored}
    return [e for e in examples if e.source not in done]


def combined_loss(shared: SharedLoss, rest: dict[str, float]) -> dict[str, float]:
    """``evaluate_loss``'s result over all examples: the shared sums plus the rest's (token-weighted)."""
    total = sum(t for t, _ in shared.scored.values())
    count = sum(n for _, n in shared.scored.values())
    if rest.get("eval_tokens"):
        total += rest["eval_loss"] * rest["eval_tokens"]
        count += int(rest["eval_tokens"])
    loss = total / count if count else float("nan")
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0)) if count else float("nan"), "eval_tokens": count}

"""Batched greedy generation with the chat template, for generation metrics, judges and the server.

Prompts are sorted by token length and left-padded so each batch wastes little compute on padding;
the results come back in the original order.

The default decoding loop is our own (:class:`RowBatch`) rather than ``model.generate``: it calls the
model's public ``forward`` with a transformers ``DynamicCache`` and, unlike ``generate``, drops a row
from the batch as soon as it has produced its end-of-sequence token, so a batch whose answers differ
in length stops paying for the finished ones. The same rows object lets the server add a request to
a running batch between two decoding steps (continuous batching, serve/engine.py), which
``generate`` has no public hook for. Outputs are token-equal to ``generate``'s greedy outputs (tested
in tests/evaluate/test_generate.py; measured on the built-in model in benchmarks/generation.py).
``model.generate`` stays the path for models our loop does not cover (prompt-learning peft adapters,
which prepend virtual tokens; generation configs with logits processors), for a static cache, and for
a batch of one prompt (nothing to drop; ``generate``'s step measured faster there).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from tuneforge.models.autocast_weights import weights_cast_once
from tuneforge.models.cache import cache_keyword, concatenating_cache, forward_parameters
from tuneforge.objectives.shared_prefix import MIN_SHARED_TOKENS, examples_prefix_length


@dataclass(frozen=True)
class BatchTiming:
    """Wall-clock figures of one generated batch, for the evaluation's latency and throughput section.

    Every request in a batch is answered when the batch ends, so ``total_s`` is each of its requests'
    latency and ``first_token_s`` their time to first token (the prefill).
    """

    n_prompts: int
    prompt_tokens: int  # real (unpadded) prompt tokens in the batch
    new_tokens: int  # generated tokens up to and including EOS, summed over the batch's rows
    first_token_s: float
    total_s: float


@dataclass(frozen=True)
class GenerationPlan:
    """How :func:`generate_batch` decodes; the default is the fastest token-equal choice measured
    (docs/SPEED.md, "Generation"). The other values exist so the benchmark can measure each lever."""

    # "rows": RowBatch (finished rows dropped) for batches of two or more, model.generate for a batch of
    # one, where there is nothing to drop and generate's step measured faster (0.87x for our loop on an
    # AVX512-BF16 EPYC, 0.98x on an AVX2-only one; docs/SPEED.md); "hf": model.generate always
    loop: str = "rows"
    sort_by_length: bool = True  # bucket prompts of similar length into one batch
    cache: str = "dynamic"  # "static": generate's StaticCache (loop "hf" only)
    compile: bool = False  # compile generate's decoding step (loop "hf" with the static cache only)
    # loop "rows": prefill the prompts' common leading tokens (chat template, fixed instruction) once
    # for the batch and repeat their cache to every row (RowBatch.start)
    share_prefix: bool = True
    # under autocast, which fp32 weights are cast once for the call instead of on every decoding step
    # (models/autocast_weights.py, bit-identical): "linears" (every plain linear layer), "head" (the
    # output head only), "none" (autocast casts each weight per step)
    cast_once: str = "linears"


DEFAULT_PLAN = GenerationPlan()


class _FirstTokenClock(StoppingCriteria):
    """Stopping criteria run once per generated token; the first call marks the first token. Never stops."""

    def __init__(self) -> None:
        self.first: float | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        if self.first is None:
            self.first = time.perf_counter()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _generated_lengths(new_tokens: torch.Tensor, eos_id: int | None, pad_id: int | None) -> int:
    """Tokens each row really generated: up to its first EOS (included), the rest is padding."""
    total = 0
    for row in new_tokens.tolist():
        n = len(row)
        for j, t in enumerate(row):
            if t == eos_id or (pad_id is not None and t == pad_id and pad_id != eos_id):
                n = j + 1 if t == eos_id else j
                break
        total += n
    return total


def autocast_context(dtype: torch.dtype | None, device: str = "cpu"):
    """bf16/fp16 autocast when a low precision is chosen, else a no-op."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def rows_supported(model: Any) -> bool:
    """Whether :class:`RowBatch` can drive ``model``: a causal LM whose forward takes positions, a
    cache and ``logits_to_keep``, without a prompt-learning adapter (its virtual tokens would shift
    the cache) and without generation-config logits processors our greedy argmax would skip."""
    config = getattr(model, "active_peft_config", None)
    if config is not None and getattr(config, "is_prompt_learning", False):
        return False
    params = forward_parameters(model)
    if not {"position_ids", "logits_to_keep"} <= params or not params & {"cache", "past_key_values"}:
        return False
    gc = getattr(model, "generation_config", None)
    if gc is not None:
        if (gc.repetition_penalty or 1.0) != 1.0 or gc.no_repeat_ngram_size or gc.bad_words_ids or gc.suppress_tokens:
            return False
        if gc.begin_suppress_tokens or gc.min_new_tokens or (gc.min_length or 0) > 0 or gc.forced_eos_token_id is not None:
            return False
    return True


class RowBatch:
    """Rows that decode together over one KV cache, left-padded to a common length.

    Rows can be dropped (:meth:`keep`) and added (:meth:`extend`) between decoding steps. Both only
    rebuild the cache through transformers' public ``DynamicCache`` API (its constructor from
    per-layer key/value tensors, ``batch_select_indices``, iteration); padded key/value columns are
    masked out by the attention mask, exactly as ``generate``'s left padding is.
    """

    def __init__(self, model: Any, cache: DynamicCache, mask: torch.Tensor, positions: torch.Tensor) -> None:
        self.model, self.cache, self.mask, self.positions = model, cache, mask, positions
        self._cache_arg = cache_keyword(model)

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    @classmethod
    def start(
        cls, model: Any, rows: Sequence[Sequence[int]], pad_id: int, share_prefix: bool = True
    ) -> tuple[RowBatch, torch.Tensor]:
        """Prefill ``rows`` (prompt ids) as a new batch; return it and each row's next-token logits.

        With ``share_prefix``, when the rows open with at least ``MIN_SHARED_TOKENS`` common tokens
        (and the model's cache layers simply concatenate), those run once as a batch of one and
        their cache is repeated to every row; the rest of each row is left-padded after them, so a
        row reads [shared prefix | padding | own tokens] with the padding masked out and positions
        counted over real tokens only, the same attention a left-padded row gets.
        """
        device = next(model.parameters()).device
        prefix = min(examples_prefix_length(rows), min(len(r) for r in rows) - 1) if share_prefix and len(rows) > 1 else 0
        cache = concatenating_cache(model.config) if prefix >= MIN_SHARED_TOKENS else None
        if cache is None:
            cache, prefix = DynamicCache(), 0
        width = max(len(r) for r in rows) - prefix
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), prefix + width), dtype=torch.long)
        mask[:, :prefix] = 1
        for i, row in enumerate(rows):
            ids[i, width - (len(row) - prefix) :] = torch.tensor(list(row[prefix:]), dtype=torch.long)
            mask[i, prefix + width - (len(row) - prefix) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        batch = cls(model, cache, mask, mask.sum(-1))
        if prefix:
            head = torch.tensor([list(rows[0][:prefix])], dtype=torch.long, device=device)
            model(input_ids=head, attention_mask=mask[:1, :prefix], use_cache=True, logits_to_keep=1, **{batch._cache_arg: cache})
            cache.batch_repeat_interleave(len(rows))
        logits = batch._forward(ids, positions[:, prefix:])
        return batch, logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed each row its last token; return each row's next-token logits."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self), 1))], dim=1)
        logits = self._forward(tokens.view(-1, 1), self.positions.view(-1, 1))
        self.positions = self.positions + 1
        return logits

    def lookahead(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits at every position of ``ids`` fed after each row's prompt (right-padded, ``mask`` 0 on
        padding), leaving the batch as it was: the forward extends a new cache object over the same
        per-layer tensors, and ``DynamicCache`` appends by concatenation, so this batch's cache is untouched."""
        cache = DynamicCache([(k, v) for k, v, *_ in self.cache])
        positions = self.positions.view(-1, 1) + torch.arange(ids.shape[1], device=ids.device).view(1, -1)
        out = self.model(
            input_ids=ids, attention_mask=torch.cat([self.mask, mask], dim=1), position_ids=positions, use_cache=True, logits_to_keep=0,
            **{self._cache_arg: cache},
        )  # fmt: skip
        return out.logits

    def keep(self, indices: Sequence[int]) -> None:
        """Keep only the rows ``indices`` (in that order), then drop padding columns no row needs."""
        if list(indices) == list(range(len(self))):
            return
        idx = torch.tensor(list(indices), dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(idx)
        self.mask, self.positions = self.mask[idx], self.positions[idx]
        used = self.mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else 0
        if first > 0:
            self.mask = self.mask[:, first:]
            self.cache = DynamicCache([(k[:, :, first:], v[:, :, first:]) for k, v, *_ in self.cache])

    def extend(self, other: RowBatch) -> None:
        """Append ``other``'s rows after this batch's rows (the shorter side is padded on the left)."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        layers = []
        for (k1, v1, *_), (k2, v2, *_) in zip(self.cache, other.cache):
            layers.append((torch.cat([_left_pad(k1, width), _left_pad(k2, width)]), torch.cat([_left_pad(v1, width), _left_pad(v2, width)])))
        self.cache = DynamicCache(layers)
        self.mask = torch.cat([_left_pad_mask(self.mask, width), _left_pad_mask(other.mask, width)])
        self.positions = torch.cat([self.positions, other.positions])

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=ids, attention_mask=self.mask, position_ids=positions, use_cache=True, logits_to_keep=1, **{self._cache_arg: self.cache}
        )
        return out.logits[:, -1, :]


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Key/value states (batch, heads, length, dim) padded with zeros on the left of the length axis."""
    return F.pad(t, (0, 0, width - t.shape[2], 0))


def _left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    return F.pad(mask, (width - mask.shape[1], 0))


def greedy_rows(
    model: Any,
    rows: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    eos_id: int | None,
    pad_id: int,
    clock: list[float] | None = None,
    on_prefill: Callable[[RowBatch, torch.Tensor], None] | None = None,
    share_prefix: bool = True,
) -> list[list[int]]:
    """Greedy continuations of ``rows`` (prompt ids), each up to and including its EOS or ``max_new_tokens``;
    a row leaves the batch the step it ends. ``clock``, when given, receives the first token's time.
    ``on_prefill`` is called once with the prefilled batch and its next-token logits, after the first
    token is chosen and before decoding goes on (the held-out loss reuses the prompts' cache there)."""
    batch, logits = RowBatch.start(model, rows, pad_id, share_prefix)
    out: list[list[int]] = [[] for _ in rows]
    live = list(range(len(rows)))  # original row of each batch row
    for step in range(max_new_tokens):
        tokens = logits.argmax(dim=-1)
        if step == 0 and clock is not None:
            clock.append(time.perf_counter())
        if step == 0 and on_prefill is not None:
            on_prefill(batch, logits)
        keep: list[int] = []
        for pos, (row, token) in enumerate(zip(live, tokens.tolist())):
            out[row].append(int(token))
            if token != eos_id:
                keep.append(pos)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(live):
            batch.keep(keep)
            live, tokens = [live[p] for p in keep], tokens[keep]
        logits = batch.step(tokens)
    return out


def _tokenize(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad) if pad is not None else 0


def _hf_generate(model, tokenizer, rows: list[list[int]], max_new_tokens: int, plan: GenerationPlan, clock: _FirstTokenClock) -> list[list[int]]:
    """``model.generate`` on left-padded ``rows``; new ids per row, padding after EOS removed."""
    device = next(model.parameters()).device
    pad = _pad_id(tokenizer)
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long, device=device)
    extra: dict[str, Any] = {}
    if plan.cache == "static":
        extra["cache_implementation"] = "static"
        if not plan.compile:
            extra["disable_compile"] = True
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, use_cache=True, stopping_criteria=StoppingCriteriaList([clock]), **extra,
    )
    result = []
    for row in out[:, width:].tolist():
        n = _generated_lengths(torch.tensor([row]), tokenizer.eos_token_id, tokenizer.pad_token_id)
        result.append(row[:n])
    return result


@torch.inference_mode()
def generate_batch(
    model,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    autocast_dtype: torch.dtype | None = None,
    on_batch: Callable[[int], None] | None = None,
    timings: list[BatchTiming] | None = None,
    plan: GenerationPlan | None = None,
    on_prefill: Callable[[Sequence[int], RowBatch, torch.Tensor], None] | None = None,
) -> list[str]:
    """Greedy completions of already-templated prompts (special tokens stripped, stops at EOS).

    ``timings``, when given, receives one :class:`BatchTiming` per batch, in generation order.
    ``plan`` chooses the decoding levers (default :data:`DEFAULT_PLAN`). ``on_prefill`` is called once
    for each batch the row loop decodes, with the batch's prompt indices (into ``prompts``), the
    prefilled :class:`RowBatch` and its next-token logits; its time is left out of the batch's
    timing, so latency and throughput stay those of generation. Batches decoded by ``generate`` (a
    batch of one, unsupported models) get no call.
    """
    plan = plan or DEFAULT_PLAN
    device = next(model.parameters()).device
    rows = _tokenize(tokenizer, prompts)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i])) if plan.sort_by_length else list(range(len(rows)))
    use_rows = plan.loop == "rows" and rows_supported(model)
    outputs: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with weights_cast_once(model, autocast_dtype, plan.cast_once):
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = [rows[i] for i in idx]
                clock, first, hook_s = _FirstTokenClock(), [], [0.0]

                def prefilled(rows_batch: RowBatch, logits: torch.Tensor, idx=idx, hook_s=hook_s) -> None:
                    h0 = time.perf_counter()
                    on_prefill(idx, rows_batch, logits)
                    hook_s[0] += time.perf_counter() - h0

                t0 = time.perf_counter()
                with autocast_context(autocast_dtype, device.type):
                    if use_rows and len(batch) > 1:
                        new = greedy_rows(
                            model, batch, max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_token_id, pad_id=_pad_id(tokenizer), clock=first,
                            on_prefill=prefilled if on_prefill is not None else None, share_prefix=plan.share_prefix,
                        )  # fmt: skip
                    else:
                        new = _hf_generate(model, tokenizer, batch, max_new_tokens, plan, clock)
                t1 = time.perf_counter() - hook_s[0]  # the hook runs after the first token: TTFT is unaffected
                if timings is not None:
                    first_at = first[0] if first else (clock.first or t1)
                    timings.append(BatchTiming(len(idx), sum(len(r) for r in batch), sum(len(n) for n in new), first_at - t0, t1 - t0))
                for i, text in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True)):
                    outputs[i] = text.strip()
                if on_batch is not None:
                    on_batch(len(idx))
    finally:
        model.train(was_training)
    return outputs

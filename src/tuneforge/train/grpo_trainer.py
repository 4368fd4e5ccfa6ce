"""The online-RL trainer of grpo and rloo: sample, score, compute advantages, take clipped policy-gradient steps.

It is ``transformers.Trainer`` with ``training_step`` and ``log`` overridden (public hooks), as the
sft and preference trainers are, so a run keeps tuneforge's NaN/inf guard, callbacks (metrics.jsonl,
progress, checkpoint markers), checkpoints and ``--resume``. docs/RL.md says why not TRL's GRPOTrainer.

One Trainer step is one optimizer step. Its dataloader batch holds ``batch_size x grad_accum`` prompt
records; the step generates ``num_generations`` completions of each (one batched generate call), scores
them with the recipe's :class:`~tuneforge.objectives.reward_scores.CompletionScorer`, turns rewards into
advantages, then runs forward/backward over micro-batches of ``batch_size`` prompts' completions
(``grad_accum`` of them). Because the whole step's rollout is known before the first backward, every
loss type's denominator is exact over the step (docs/RL.md). With ``num_iterations > 1`` the same
rollout serves that many optimizer steps (the data order repeats each step's prompts, so no prompt is
skipped), with importance ratios against the log-probs taken right after generation.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from peft import PeftModel
from transformers import PrinterCallback, TrainerCallback

from tuneforge.config.grpo import GrpoOptions
from tuneforge.data.records import PromptRecord
from tuneforge.objectives.grpo_loss import (
    aggregate,
    clipped_surrogate,
    group_advantages,
    k3_kl,
    log_importance_weights,
    masked_mean,
    overlong_penalty,
    rloo_advantages,
    zero_variance_groups,
)
from tuneforge.objectives.reward_scores import CompletionScorer
from tuneforge.train.arguments import TuneforgeTrainingArguments
from tuneforge.train.group_prompt import group_completion_logps
from tuneforge.train.nonfinite import NonfiniteGuardMixin, RowTaggingCollator, TaggedDataset
from tuneforge.train.rollout_stats import RolloutStatsLog
from tuneforge.train.rollout import Rollout, Sampling, autocast_context, completion_logps, generate_rollout


@dataclass
class ScoredRollout:
    """A rollout with what every update on it needs: advantages, the loss mask, rollout-time and reference log-probs."""

    rollout: Rollout
    advantages: torch.Tensor  # [N]
    loss_mask: torch.Tensor  # [N, C]
    old_logps: torch.Tensor | None  # [N, C], num_iterations > 1 only (else the current log-probs, detached)
    ref_logps: torch.Tensor | None  # [N, C], beta > 0 only


def records_collate(records: list) -> dict:
    """A batch of prompt records stays a list: the trainer renders and samples them itself."""
    return {"prompts": list(records)}


def rollout_order(n: int, prompts_per_step: int, num_iterations: int, *, epochs: float, max_steps: int | None, seed: int) -> list[int]:
    """Record indices in training order: per epoch a seeded shuffle, cut into steps of ``prompts_per_step``
    (the last one filled up from the epoch's start), each step's prompts repeated ``num_iterations`` times.

    The order is fixed before training and read sequentially, so ``--resume`` (which skips the batches
    already trained) continues with exactly the prompts an uninterrupted run would see.
    """
    steps_per_epoch = math.ceil(n / prompts_per_step)
    wanted = max_steps if max_steps else max(1, round(epochs * steps_per_epoch)) * num_iterations
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < wanted * prompts_per_step:
        perm = torch.randperm(n, generator=generator).tolist()
        perm += perm[: steps_per_epoch * prompts_per_step - n]
        for s in range(steps_per_epoch):
            order += perm[s * prompts_per_step : (s + 1) * prompts_per_step] * num_iterations
    return order[: wanted * prompts_per_step]


class GrpoCore(RolloutStatsLog):
    """The rollout-and-update step; :class:`GrpoTrainer` adds the NaN/inf guard around it."""

    share_prefix: bool = False  # run each prompt once per group of G in the updates (train/group_prompt.py; the speed plan decides)

    def __init__(
        self, *args, options: GrpoOptions, objective_type: str, scorer: CompletionScorer, tokenizer,
        micro_prompts: int, ref_model=None, autocast_dtype: torch.dtype | None = None, **kwargs,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.options = options
        self.objective_type = objective_type
        self.scorer = scorer
        self.gen_tokenizer = tokenizer
        self.micro_rows = micro_prompts * options.num_generations
        self.ref_model = ref_model
        self.autocast_dtype = autocast_dtype
        self.sampling = Sampling(options.num_generations, options.max_completion_length, options.temperature, options.top_p, options.top_k)
        self._buffer: ScoredRollout | None = None
        self._stats: dict[str, list[float]] = defaultdict(list)

    # ---- rollout --------------------------------------------------------------------------------------
    def make_rollout(self, model, records: Sequence[PromptRecord]) -> ScoredRollout:
        """Generate, score, add the overlong penalty, compute advantages; drop zero-variance groups if asked."""
        opts, G = self.options, self.options.num_generations
        plain = self.accelerator.unwrap_model(model)
        rollout = generate_rollout(plain, self.gen_tokenizer, records, self.sampling, autocast_dtype=self.autocast_dtype)
        scores = self.scorer(rollout.records, rollout.completions)
        rewards = torch.tensor(scores.total, dtype=torch.float32)
        rewards = rewards + overlong_penalty(rollout.lengths, opts.max_completion_length, opts.overlong_buffer, opts.overlong_penalty)
        zero = zero_variance_groups(rewards, G)
        if self.objective_type == "rloo":
            adv = rloo_advantages(rewards, G)
        else:
            adv = group_advantages(rewards, G, opts.scale_rewards)
        self._log_rollout(rollout, rewards, scores.per_reward, zero)
        if opts.dynamic_sampling:
            keep = (~zero).repeat_interleave(G).nonzero().squeeze(1)
            rollout, adv = rollout.rows(keep), adv[keep]
        mask = rollout.completion_mask
        if opts.mask_truncated:
            mask = mask * (~rollout.truncated).float().unsqueeze(1)
        old = self._no_grad_logps(model, rollout, reference=False) if opts.num_iterations > 1 and len(adv) else None
        ref = self._no_grad_logps(model, rollout, reference=True) if opts.beta > 0 and len(adv) else None
        return ScoredRollout(rollout, adv, mask, old, ref)

    def _log_rollout(self, rollout: Rollout, rewards: torch.Tensor, per_reward: dict, zero: torch.Tensor) -> None:
        generated = float(rollout.lengths.sum())
        stats = {
            "rollout_s": rollout.seconds,
            "gen_tokens_per_s": generated / rollout.seconds if rollout.seconds > 0 else 0.0,
            "reward/mean": float(rewards.mean()),
            "reward/std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
            "zero_variance_share": float(zero.float().mean()),
            "dropped_groups": float(zero.sum()) if self.options.dynamic_sampling else 0.0,
            "completion_length": float(rollout.lengths.mean()),
            "truncated_share": float(rollout.truncated.float().mean()),
        }
        for name, values in per_reward.items():
            present = torch.tensor([float(v) for v in values if v is not None])
            if present.numel():
                stats[f"reward/{name}/mean"] = float(present.mean())
                stats[f"reward/{name}/std"] = float(present.std()) if present.numel() > 1 else 0.0
        for k, v in stats.items():
            self._stats[k].append(v)

    @torch.no_grad()
    def _no_grad_logps(self, model, rollout: Rollout, *, reference: bool) -> torch.Tensor:
        """Log-probs of the whole rollout, micro-batch by micro-batch: the policy now, or the reference."""
        target, ctx = model, contextlib.nullcontext()
        if reference:
            plain = self.accelerator.unwrap_model(model)
            if self.ref_model is not None:
                target = self.ref_model
            elif isinstance(plain, PeftModel):
                target, ctx = plain, plain.disable_adapter()
        parts = []
        with ctx:
            for start in range(0, len(rollout.records), self.micro_rows):
                chunk = rollout.rows(slice(start, start + self.micro_rows)).trimmed()
                with self.accelerator.autocast():
                    logps = self._chunk_logps(target, chunk)
                parts.append(torch.nn.functional.pad(logps, (0, rollout.completion_ids.shape[1] - logps.shape[1])))
        return torch.cat(parts)

    def _chunk_logps(self, model, chunk: Rollout) -> torch.Tensor:
        """The completion log-probs of a micro-batch, each prompt run once per group when the plan shares it."""
        if self.share_prefix and self.accelerator.unwrap_model(model) is model:  # a DDP-wrapped model runs its own forward
            shared = group_completion_logps(
                model, chunk.prompt_ids, chunk.prompt_mask, chunk.completion_ids, chunk.completion_mask, self.options.num_generations, self.options.temperature
            )  # fmt: skip
            if shared is not None:
                return shared[0]
        return completion_logps(model, chunk.input_ids, chunk.attention_mask, chunk.completion_ids.shape[1], self.options.temperature)

    # ---- update ---------------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        model.train()
        opts = self.options
        if self._buffer is None or self.state.global_step % opts.num_iterations == 0:
            self._buffer = self.make_rollout(model, inputs["prompts"])
        started = time.perf_counter()
        loss = self._update(model, self._buffer)
        self._stats["update_s"].append(time.perf_counter() - started)
        return loss

    def _update(self, model, scored: ScoredRollout) -> torch.Tensor:
        """Forward/backward of every micro-batch; each loss is scaled so their sum is the step's loss."""
        opts = self.options
        rows = len(scored.advantages)
        total = torch.zeros((), device=self.args.device)
        if rows == 0:  # dynamic sampling dropped every group: nothing to learn from this rollout
            return total
        step_tokens = float(scored.loss_mask.sum())
        chunks = range(0, rows, self.micro_rows)
        for start in chunks:
            sl = slice(start, start + self.micro_rows)
            chunk = scored.rollout.rows(sl).trimmed()  # no all-padding columns in the forward
            width = chunk.completion_ids.shape[1]
            mask = scored.loss_mask[sl, :width]
            adv = scored.advantages[sl].to(self.args.device)
            with self.accelerator.autocast():
                logps = self._chunk_logps(model, chunk)
            old = scored.old_logps[sl, :width] if scored.old_logps is not None else logps.detach()
            log_w = log_importance_weights(logps, old, mask, opts.importance_sampling)
            per_token, clipped = clipped_surrogate(log_w, adv, opts.epsilon, opts.epsilon_high or opts.epsilon)
            if scored.ref_logps is not None:
                kl = k3_kl(logps, scored.ref_logps[sl, :width])
                per_token = per_token + opts.beta * kl
                self._stats["kl"].append(float(masked_mean(kl.detach(), mask)))
            loss = aggregate(per_token, mask, opts.loss_type, max_completion_length=opts.max_completion_length, step_tokens=step_tokens)
            share = len(adv) / rows if opts.loss_type in ("grpo", "dr_grpo") else 1 / len(chunks) if opts.loss_type == "bnpo" else 1.0
            loss = loss * share
            self.accelerator.backward(loss)
            total = total + loss.detach()
            self._stats["clip_ratio"].append(float(masked_mean(clipped, mask)))
            self._stats["importance_ratio"].append(float(masked_mean(torch.exp(log_w.detach()), mask)))
            self.state.num_input_tokens_seen += int(chunk.attention_mask.sum())
        return total


class GrpoTrainer(NonfiniteGuardMixin, GrpoCore):
    """grpo/rloo with the per-step NaN/inf check of training.nonfinite (train/nonfinite.py)."""


def make_grpo_trainer(
    options: GrpoOptions,
    objective_type: str,
    model,
    args: TuneforgeTrainingArguments,
    tokenizer,
    records: Sequence[PromptRecord],
    scorer: CompletionScorer,
    callbacks: Sequence[TrainerCallback] = (),
    *,
    epochs: float,
    max_steps: int | None,
    autocast_dtype: torch.dtype | None = None,
) -> GrpoTrainer:
    """Build the trainer: the fixed prompt order, one dataloader batch per optimizer step, the reference if beta > 0."""
    micro_prompts, accum = args.per_device_train_batch_size, args.gradient_accumulation_steps
    order = rollout_order(len(records), micro_prompts * accum, options.num_iterations, epochs=epochs, max_steps=max_steps, seed=args.seed)
    step_args = replace(
        args, per_device_train_batch_size=micro_prompts * accum, gradient_accumulation_steps=1, num_train_epochs=1,
        train_sampling_strategy="sequential", include_num_input_tokens_seen="no", dataloader_drop_last=False,
    )  # fmt: skip
    ref_model = None
    if options.beta > 0 and not isinstance(model, PeftModel):  # full / freeze: the starting weights, frozen
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    ordered = [records[i] for i in order]
    trainer = GrpoTrainer(
        model=model, args=step_args, train_dataset=TaggedDataset(ordered), data_collator=RowTaggingCollator(records_collate),
        callbacks=list(callbacks), options=options, objective_type=objective_type, scorer=scorer, tokenizer=tokenizer,
        micro_prompts=micro_prompts, ref_model=ref_model, autocast_dtype=autocast_dtype,
    )  # fmt: skip
    trainer.setup_nonfinite(getattr(args, "nonfinite", "stop"), [r.source for r in ordered])
    trainer.remove_callback(PrinterCallback)
    return trainer

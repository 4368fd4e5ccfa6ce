"""The PPO-RLHF trainer: sample, score, fold the KL into per-token rewards, GAE, then clipped policy and value updates.

TRL 1.16 removed its PPO trainer, so this is tuneforge's own, on ``transformers.Trainer`` with
``training_step``, ``create_optimizer``, ``save_model`` and ``log`` overridden (public hooks), as the
grpo trainer is: a run keeps the NaN/inf guard, callbacks, checkpoints and ``--resume``.

One Trainer step is one optimizer step on one minibatch. A rollout takes the step's ``batch_size x
grad_accum`` prompts and samples ``num_generations`` completions of each; the rewards score them;
the policy's log-probs and values, and the reference's log-probs (the adapter disabled, or a frozen
copy for full / freeze training), are taken once; per-token rewards ``-kl_coef x (logp - ref)`` plus
the score at the last token give GAE advantages and returns (:mod:`tuneforge.objectives.ppo_loss`).
The rollout then serves ``ppo_epochs x num_minibatches`` optimizer steps: each epoch shuffles its
completions (seeded by the run's seed and the rollout's number, so a resumed run shuffles alike) into
``num_minibatches`` minibatches, and each minibatch runs forward/backward in chunks of ``batch_size x
num_generations`` completions, its losses divided by the minibatch's completion tokens.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from peft import PeftModel
from transformers import PrinterCallback, TrainerCallback

from tuneforge.config.ppo import PpoOptions
from tuneforge.data.records import PromptRecord
from tuneforge.objectives.ppo_loss import (
    adaptive_kl_coef, clipped_policy_loss, clipped_value_loss, gae, kl_penalised_rewards, masked_mean, whiten,
)  # fmt: skip
from tuneforge.objectives.reward_scores import CompletionScorer
from tuneforge.train.arguments import TuneforgeTrainingArguments
from tuneforge.train.group_prompt import group_completion_logps
from tuneforge.train.grpo_trainer import records_collate, rollout_order
from tuneforge.train.nonfinite import NonfiniteGuardMixin, RowTaggingCollator, TaggedDataset
from tuneforge.train.rollout_stats import RolloutStatsLog
from tuneforge.train.rollout import Rollout, Sampling, completion_logps, generate_rollout
from tuneforge.train.value_head import ValueHead, logps_and_values, save_value_head


PPO_STATE_FILE = "ppo_state.json"  # the controller state beside value_head.safetensors: {"kl_coef": ...}


def save_ppo_state(state: dict, directory: Path | str) -> Path:
    path = Path(directory) / PPO_STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))
    return path


def load_ppo_state(directory: Path | str) -> dict | None:
    """The state saved in ``directory`` (a checkpoint, on --resume); None when it holds none (an older run)."""
    path = Path(directory) / PPO_STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class PpoRollout:
    """A scored rollout with what every minibatch update needs (all ``[N, C]`` except ``rollout``)."""

    rollout: Rollout
    mask: torch.Tensor
    old_logps: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor  # whitened when whiten_advantages
    returns: torch.Tensor


def updates_per_rollout(options: PpoOptions) -> int:
    """Optimizer steps each rollout serves."""
    return options.ppo_epochs * options.num_minibatches


def minibatch_rows(rows: int, options: PpoOptions, update: int, *, seed: int, rollout_number: int) -> torch.Tensor:
    """The rollout rows of the ``update``-th optimizer step on it: epoch ``update // num_minibatches``'s shuffle, cut in num_minibatches parts."""
    epoch, part = divmod(update, options.num_minibatches)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + rollout_number * 1009 + epoch)
    return torch.randperm(rows, generator=generator).tensor_split(options.num_minibatches)[part]


class PpoCore(RolloutStatsLog):
    """The rollout-and-update step; :class:`PpoTrainer` adds the NaN/inf guard around it."""

    # run each prompt once per group of num_generations in the rollout's no-grad passes (train/group_prompt.py;
    # the speed plan decides); the updates' minibatches shuffle rows across groups, so they run the plain forward
    share_prefix: bool = False

    def __init__(
        self, *args, options: PpoOptions, scorer: CompletionScorer, tokenizer, micro_prompts: int,
        value_head: ValueHead, ref_model=None, autocast_dtype: torch.dtype | None = None, **kwargs,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.options = options
        self.scorer = scorer
        self.gen_tokenizer = tokenizer
        self.micro_rows = micro_prompts * options.num_generations
        self.value_head = value_head.to(self.args.device)
        self.ref_model = ref_model
        self.autocast_dtype = autocast_dtype
        self.sampling = Sampling(options.num_generations, options.max_completion_length, options.temperature, options.top_p, options.top_k)
        self._buffer: PpoRollout | None = None
        self._stats: dict[str, list[float]] = defaultdict(list)
        self.kl_coef = options.kl_coef  # the current KL weight: fixed, or adapted after each rollout (objective.ppo.target_kl)

    # ---- optimizer and saving: the value head trains and is saved beside the policy ----------------------
    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        head = list(self.value_head.parameters())
        if not any(p is head[0] for group in optimizer.param_groups for p in group["params"]):  # once, however often it is called
            lr = self.options.value_learning_rate or self.args.learning_rate
            optimizer.add_param_group({"params": head, "lr": lr, "weight_decay": 0.0})
        return optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            save_value_head(self.value_head, output_dir or self.args.output_dir)
            save_ppo_state({"kl_coef": self.kl_coef}, output_dir or self.args.output_dir)

    # ---- rollout ----------------------------------------------------------------------------------------
    def make_rollout(self, model, records: Sequence[PromptRecord]) -> PpoRollout:
        """Generate, score, take old log-probs/values and reference log-probs, fold the KL in, GAE, whiten."""
        opts = self.options
        plain = self.accelerator.unwrap_model(model)
        rollout = generate_rollout(plain, self.gen_tokenizer, records, self.sampling, autocast_dtype=self.autocast_dtype)
        scores = self.scorer(rollout.records, rollout.completions)
        mask = rollout.completion_mask
        score = torch.tensor(scores.total, dtype=torch.float32, device=mask.device) - opts.missing_eos_penalty * rollout.truncated.float()
        old_logps, old_values = self._no_grad_passes(model, rollout, reference=False)
        ref_logps = self._no_grad_passes(model, rollout, reference=True)[0] if opts.kl_coef > 0 else old_logps
        rewards, kl = kl_penalised_rewards(old_logps, ref_logps, mask, score, self.kl_coef)
        advantages, returns = gae(rewards, old_values, mask, opts.gamma, opts.lam)
        self._log_rollout(rollout, score, scores.per_reward, kl, old_values, returns, advantages)
        if opts.target_kl is not None:  # this rollout used the current weight; the next one gets the adapted weight
            mean_kl = float(kl.sum(dim=1).mean())
            self.kl_coef = adaptive_kl_coef(self.kl_coef, mean_kl, opts.target_kl, opts.kl_horizon, len(rollout.records))
        if opts.whiten_advantages:
            advantages = whiten(advantages, mask)
        return PpoRollout(rollout, mask, old_logps, old_values, advantages, returns)

    @torch.no_grad()
    def _no_grad_passes(self, model, rollout: Rollout, *, reference: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(log-probs, values) of the whole rollout in micro-batches: the policy now, or the reference (no values)."""
        target, ctx = model, contextlib.nullcontext()
        if reference:
            plain = self.accelerator.unwrap_model(model)
            if self.ref_model is not None:
                target = self.ref_model
            elif isinstance(plain, PeftModel):  # as grpo with beta > 0: the same weights without the adapter
                target, ctx = plain, plain.disable_adapter()
        width = rollout.completion_ids.shape[1]
        logps, values = [], []
        with ctx:
            for start in range(0, len(rollout.records), self.micro_rows):
                chunk = rollout.rows(slice(start, start + self.micro_rows)).trimmed()
                n = chunk.completion_ids.shape[1]
                with self.accelerator.autocast():
                    shared = None
                    if self.share_prefix and self.accelerator.unwrap_model(target) is target:
                        shared = group_completion_logps(
                            target, chunk.prompt_ids, chunk.prompt_mask, chunk.completion_ids, chunk.completion_mask,
                            self.options.num_generations, self.options.temperature,
                        )  # fmt: skip
                    if shared is not None:
                        lp, v = shared[0], None if reference else self.value_head(shared[1])
                    elif reference:
                        lp, v = completion_logps(target, chunk.input_ids, chunk.attention_mask, n, self.options.temperature), None
                    else:
                        lp, v = logps_and_values(target, self.value_head, chunk.input_ids, chunk.attention_mask, n, self.options.temperature)
                logps.append(torch.nn.functional.pad(lp.float(), (0, width - n)))
                if v is not None:
                    values.append(torch.nn.functional.pad(v.float(), (0, width - n)))
        mask = rollout.completion_mask
        return torch.cat(logps) * mask, (torch.cat(values) * mask if values else None)

    def _log_rollout(self, rollout: Rollout, score, per_reward: dict, kl, values, returns, advantages) -> None:
        mask = rollout.completion_mask
        stats = {
            "rollout_s": rollout.seconds,
            "gen_tokens_per_s": float(rollout.lengths.sum()) / rollout.seconds if rollout.seconds > 0 else 0.0,
            "reward/mean": float(score.mean()),
            "reward/std": float(score.std()) if score.numel() > 1 else 0.0,
            "value/mean": float(masked_mean(values, mask)),
            "returns/mean": float(masked_mean(returns, mask)),
            "advantages/mean": float(masked_mean(advantages, mask)),
            "completion_length": float(rollout.lengths.mean()),
            "truncated_share": float(rollout.truncated.float().mean()),
        }
        if self.options.kl_coef > 0:  # kl_coef 0 keeps no reference: there is no KL to report
            stats["kl"] = float(kl.sum(dim=1).mean())  # per completion: the sum of its tokens' log-ratios, averaged
            stats["non_score_reward"] = -self.kl_coef * stats["kl"]
            stats["kl_coef"] = self.kl_coef
        for name, raw in per_reward.items():
            present = torch.tensor([float(v) for v in raw if v is not None])
            if present.numel():
                stats[f"reward/{name}/mean"] = float(present.mean())
                stats[f"reward/{name}/std"] = float(present.std()) if present.numel() > 1 else 0.0
        for k, v in stats.items():
            self._stats[k].append(v)

    # ---- update -----------------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        model.train()
        self.value_head.zero_grad(set_to_none=True)  # the Trainer zeroes the model's gradients only; the head is outside it
        per_rollout = updates_per_rollout(self.options)
        update = self.state.global_step % per_rollout
        if self._buffer is None or update == 0:
            self._buffer = self.make_rollout(model, inputs["prompts"])
        rows = minibatch_rows(
            len(self._buffer.rollout.records), self.options, update, seed=self.args.seed, rollout_number=self.state.global_step // per_rollout
        )
        started = time.perf_counter()
        loss = self._update(model, self._buffer, rows)
        # the Trainer clips the policy's gradients; the value head (outside the model) is clipped here, by the same norm
        norm = torch.nn.utils.clip_grad_norm_(self.value_head.parameters(), self.args.max_grad_norm)
        self._stats["value_grad_norm"].append(float(norm))
        self._stats["update_s"].append(time.perf_counter() - started)
        return loss

    def _update(self, model, scored: PpoRollout, rows: torch.Tensor) -> torch.Tensor:
        """Forward/backward of one minibatch in chunks; each chunk's loss is divided by the minibatch's tokens."""
        opts = self.options
        total = torch.zeros((), device=self.args.device)
        tokens = float(scored.mask[rows].sum())
        sums: dict[str, float] = defaultdict(float)  # the minibatch's statistics, chunk by chunk
        for chunk_rows in rows.split(self.micro_rows):
            chunk = scored.rollout.rows(chunk_rows).trimmed()
            n = chunk.completion_ids.shape[1]
            mask = scored.mask[chunk_rows, :n]
            with self.accelerator.autocast():
                logps, values = logps_and_values(model, self.value_head, chunk.input_ids, chunk.attention_mask, n, opts.temperature)
            old_logps = scored.old_logps[chunk_rows, :n]
            pg, pg_clipped = clipped_policy_loss(logps, old_logps, scored.advantages[chunk_rows, :n], opts.epsilon)
            vf, vf_clipped = clipped_value_loss(values.float(), scored.old_values[chunk_rows, :n], scored.returns[chunk_rows, :n], opts.cliprange_value)
            policy_loss = (pg * mask).sum() / max(tokens, 1.0)
            value_loss = (vf * mask).sum() / max(tokens, 1.0)
            loss = policy_loss + opts.vf_coef * value_loss
            self.accelerator.backward(loss)
            total = total + loss.detach()
            share = float(mask.sum()) / max(tokens, 1.0)  # chunk statistics weighted by their tokens sum to the minibatch's
            log_ratio = (logps - old_logps).detach()
            for key, value in (
                ("policy_loss", policy_loss), ("value_loss", value_loss),
                ("clipfrac", masked_mean(pg_clipped, mask) * share), ("value_clipfrac", masked_mean(vf_clipped, mask) * share),
                ("importance_ratio", masked_mean(torch.exp(log_ratio), mask) * share),
                ("approx_kl", masked_mean(0.5 * log_ratio**2, mask) * share),
            ):  # fmt: skip
                sums[key] += float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            self.state.num_input_tokens_seen += int(chunk.attention_mask.sum())
        for key, value in sums.items():
            self._stats[key].append(value)
        return total


class PpoTrainer(NonfiniteGuardMixin, PpoCore):
    """ppo with the per-step NaN/inf check of training.nonfinite (train/nonfinite.py)."""


def make_ppo_trainer(
    options: PpoOptions,
    model,
    value_head: ValueHead,
    args: TuneforgeTrainingArguments,
    tokenizer,
    records: Sequence[PromptRecord],
    scorer: CompletionScorer,
    callbacks: Sequence[TrainerCallback] = (),
    *,
    epochs: float,
    max_steps: int | None,
    autocast_dtype: torch.dtype | None = None,
) -> PpoTrainer:
    """Build the trainer: the fixed prompt order (each rollout's prompts once per update on it), the reference if kl_coef > 0."""
    micro_prompts, accum = args.per_device_train_batch_size, args.gradient_accumulation_steps
    order = rollout_order(
        len(records), micro_prompts * accum, updates_per_rollout(options), epochs=epochs, max_steps=max_steps, seed=args.seed
    )
    step_args = replace(
        args, per_device_train_batch_size=micro_prompts * accum, gradient_accumulation_steps=1, num_train_epochs=1,
        train_sampling_strategy="sequential", include_num_input_tokens_seen="no", dataloader_drop_last=False,
    )  # fmt: skip
    ref_model = None
    if options.kl_coef > 0 and not isinstance(model, PeftModel):  # full / freeze: the starting weights, frozen
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    ordered = [records[i] for i in order]
    trainer = PpoTrainer(
        model=model, args=step_args, train_dataset=TaggedDataset(ordered), data_collator=RowTaggingCollator(records_collate),
        callbacks=list(callbacks), options=options, scorer=scorer, tokenizer=tokenizer, micro_prompts=micro_prompts,
        value_head=value_head, ref_model=ref_model, autocast_dtype=autocast_dtype,
    )  # fmt: skip
    trainer.setup_nonfinite(getattr(args, "nonfinite", "stop"), [r.source for r in ordered])
    trainer.remove_callback(PrinterCallback)
    return trainer

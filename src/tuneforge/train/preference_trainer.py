"""One trainer for every preference objective: reward, dpo (all loss variants), orpo, simpo, kto.

It is ``transformers.Trainer`` with the public ``compute_loss``, ``prediction_step`` and ``log`` hooks
overridden; the losses are the pure functions of :mod:`tuneforge.objectives.preference_losses`.
Why not TRL's trainers: see that module and docs/PREFERENCE.md (the losses are private to TRL's
trainers or experimental, and one path here shares our data, masks, run directory and callbacks).

The reference model (dpo, kto):

- PEFT training: the same model with its adapter disabled (``PeftModel.disable_adapter``), no copy;
- full / freeze training: a frozen copy made before the first step;
- or reference log-probs computed once before training (``precompute_reference``, written to
  ``reference_logps.jsonl``) or read from such a file (``reference_logps``): then no reference model
  is kept at all.

Logged (train every ``logging_steps``, averaged over the window, and at validation with ``eval_``):
``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ``rewards/accuracies``,
``logps/chosen``, ``logps/rejected`` (+ ``kl`` for kto, ``nll_loss``/``log_odds_ratio`` for orpo;
the reward model logs its scores under the same ``rewards/*`` names).
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import PeftModel
from rich.console import Console
from torch.utils.data import DataLoader
from transformers import PrinterCallback, Trainer, TrainingArguments

from tuneforge.config.schema import ObjectiveSection
from tuneforge.data.preference_collate import (
    PairCollator,
    PreferenceFeature,
    UnpairedCollator,
    mismatched_side,
)
from tuneforge.data.preference_examples import PairExample, UnpairedExample
from tuneforge.errors import ConfigError, DataError
from tuneforge.objectives.preference import sequence_logps
from tuneforge.objectives.preference_losses import (
    bradley_terry_loss,
    dpo_loss,
    kto_kl_estimate,
    kto_loss,
    orpo_log_odds,
    orpo_loss,
    simpo_loss,
)
from tuneforge.objectives.reward import reward_scores
from tuneforge.train.nonfinite import NonfiniteGuardMixin, RowTaggingCollator, TaggedDataset

REFERENCE_FILE = "reference_logps.jsonl"
USES_REFERENCE = frozenset({"dpo", "kto"})


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: Sequence) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def build_features(
    examples: Sequence[PairExample | UnpairedExample], max_length: int | None = None
) -> list[PreferenceFeature]:
    """Wrap examples; KTO examples get their KL partner: the prompt of example i with the answer of example i+1."""
    if examples and isinstance(examples[0], UnpairedExample):
        n = len(examples)
        return [
            PreferenceFeature(
                e,
                kl_side=mismatched_side(e.side, examples[(i + 1) % n].side, max_length),
            )  # type: ignore[union-attr]
            for i, e in enumerate(examples)
        ]
    return [PreferenceFeature(e) for e in examples]


def _key(feature: PreferenceFeature) -> str:
    ex = feature.example
    if isinstance(ex, UnpairedExample):
        return f"{ex.source}|{'desirable' if ex.desirable else 'undesirable'}"
    return ex.source


class PreferenceTrainer(NonfiniteGuardMixin, Trainer):
    # compute_loss returns the mean over the pairs (examples) of a micro-batch; the Trainer divides by
    # the accumulation steps, so the update is the mean over the accumulated batch's pairs.
    loss_is_scaled_for_ga = False

    def __init__(
        self, *args, objective: ObjectiveSection, ref_model=None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.ref_model = ref_model
        self._stats: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }

    # ---- reference log-probs -------------------------------------------------------------------------
    def reference_context(self):
        """Where the reference forward runs: the frozen copy, or the policy with its adapter disabled."""
        plain = self.accelerator.unwrap_model(self.model)
        if self.ref_model is not None:
            return self.ref_model, contextlib.nullcontext()
        if isinstance(plain, PeftModel):
            return plain, plain.disable_adapter()
        raise ConfigError(
            f"objective.type '{self.objective.type}' needs a reference model, and none was set up",
            hint="train with method.type lora, or set objective.preference.precompute_reference: true",
        )

    def _ref_logps(self, input_ids, attention_mask, labels) -> torch.Tensor:
        model, ctx = self.reference_context()
        with torch.no_grad(), ctx, self.accelerator.autocast():
            return sequence_logps(model, input_ids, attention_mask, labels)[0]

    # ---- losses ---------------------------------------------------------------------------------------
    def compute_loss(
        self, model, inputs, return_outputs=False, num_items_in_batch=None
    ):
        mode = "train" if model.training else "eval"
        kind = self.objective.type
        with self.accelerator.autocast():
            if kind == "reward":
                losses, stats = self._reward_losses(model, inputs)
            elif kind == "kto":
                losses, stats = self._kto_losses(model, inputs)
            else:
                losses, stats = self._pair_losses(model, inputs, kind)
        loss = losses.mean()
        for k, v in stats.items():
            self._stats[mode][k].append(float(v))
        return (loss, {"loss": loss}) if return_outputs else loss

    def _reward_losses(self, model, inputs):
        scores = reward_scores(model, inputs["input_ids"], inputs["attention_mask"])
        c, r = scores.chunk(2)
        losses = bradley_terry_loss(c, r, margin=self.objective.preference.margin)
        return losses, _pair_stats(c.detach(), r.detach())

    def _pair_losses(self, model, inputs, kind: str):
        opts = self.objective.preference
        logps, counts = sequence_logps(
            model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
        )
        c, r = logps.chunk(2)
        cn, rn = counts.chunk(2)
        avg_c, avg_r = c / cn.clamp(min=1), r / rn.clamp(min=1)
        nll = -avg_c
        extra: dict[str, torch.Tensor] = {}
        if kind == "dpo":
            ref = (
                inputs["ref_logps"]
                if "ref_logps" in inputs
                else self._ref_logps(
                    inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
                )
            )
            ref_c, ref_r = ref.to(c.dtype).chunk(2)
            losses = dpo_loss(
                c,
                r,
                ref_c,
                ref_r,
                beta=opts.beta,
                loss_type=opts.loss,
                label_smoothing=opts.label_smoothing,
                chosen_lengths=cn,
                rejected_lengths=rn,
            )
            rc, rr = opts.beta * (c - ref_c), opts.beta * (r - ref_r)
            if opts.sft_weight:
                losses = losses + opts.sft_weight * nll
        elif kind == "simpo":
            losses = simpo_loss(
                avg_c,
                avg_r,
                beta=opts.beta,
                gamma=opts.gamma,
                label_smoothing=opts.label_smoothing,
            )
            rc, rr = opts.beta * avg_c, opts.beta * avg_r
            if opts.sft_weight:
                losses = losses + opts.sft_weight * nll
        elif kind == "orpo":
            losses = orpo_loss(nll, avg_c, avg_r, orpo_lambda=opts.orpo_lambda)
            rc, rr = (
                avg_c,
                avg_r,
            )  # ORPO has no reference: its "rewards" are the average log-probs
            extra = {
                "nll_loss": nll.detach().mean(),
                "log_odds_ratio": orpo_log_odds(avg_c, avg_r).detach().mean(),
            }
        else:
            raise ConfigError(f"unknown preference objective {kind!r}")
        stats = _pair_stats(rc.detach(), rr.detach())
        stats.update(
            {"logps/chosen": c.detach().mean(), "logps/rejected": r.detach().mean()},
            **extra,
        )
        return losses, stats

    def _kto_losses(self, model, inputs):
        opts = self.objective.preference
        logps, _ = sequence_logps(
            model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
        )
        kl_args = (
            inputs["kl_input_ids"],
            inputs["kl_attention_mask"],
            inputs["kl_labels"],
        )
        with torch.no_grad():
            kl_logps = sequence_logps(model, *kl_args)[0]
        if "ref_logps" in inputs:
            ref, ref_kl = (
                inputs["ref_logps"].to(logps.dtype),
                inputs["ref_kl_logps"].to(logps.dtype),
            )
        else:
            ref = self._ref_logps(
                inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
            )
            ref_kl = self._ref_logps(*kl_args)
        kl = kto_kl_estimate(kl_logps, ref_kl)
        desirable = inputs["desirable"]
        losses = kto_loss(
            logps,
            ref,
            desirable,
            kl,
            beta=opts.beta,
            desirable_weight=opts.desirable_weight,
            undesirable_weight=opts.undesirable_weight,
        )
        rewards = (opts.beta * (logps - ref)).detach()
        stats: dict[str, torch.Tensor] = {"kl": kl}
        if desirable.any():
            stats["rewards/chosen"] = rewards[desirable].mean()
            stats["logps/chosen"] = logps.detach()[desirable].mean()
        if (~desirable).any():
            stats["rewards/rejected"] = rewards[~desirable].mean()
            stats["logps/rejected"] = logps.detach()[~desirable].mean()
        if desirable.any() and (~desirable).any():
            stats["rewards/margins"] = (
                stats["rewards/chosen"] - stats["rewards/rejected"]
            )
        return losses, stats

    # ---- evaluation and logging -----------------------------------------------------------------------
    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = {
            k: v.to(self.args.device) if torch.is_tensor(v) else v
            for k, v in inputs.items()
        }
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        stats = self._stats[mode]
        logs = dict(logs)
        logs.update({prefix + k: sum(v) / len(v) for k, v in stats.items() if v})
        stats.clear()
        super().log(logs, start_time)


def _pair_stats(
    chosen: torch.Tensor, rejected: torch.Tensor
) -> dict[str, torch.Tensor]:
    return {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margins": (chosen - rejected).mean(),
        "rewards/accuracies": (chosen > rejected).float().mean(),
    }


# ---- precomputed reference log-probs -----------------------------------------------------------------
@torch.no_grad()
def compute_reference_logps(
    model,
    features: list[PreferenceFeature],
    collator,
    batch_size: int,
    console: Console | None = None,
) -> None:
    """Fill ``feature.ref`` with the reference log-probs of the model as it is now (adapter disabled).

    Called before the first step, so for full fine-tuning the model *is* the reference and no copy
    is needed.
    """
    ctx = (
        model.disable_adapter()
        if isinstance(model, PeftModel)
        else contextlib.nullcontext()
    )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(
        features, batch_size=batch_size, collate_fn=collator, shuffle=False
    )
    done = 0
    with ctx:
        for batch in loader:
            n = len(batch["input_ids"]) // (
                2 if isinstance(collator, PairCollator) else 1
            )
            logps = sequence_logps(
                model,
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["labels"].to(device),
            )[0].cpu()
            if isinstance(collator, PairCollator):
                refs = list(zip(logps[:n].tolist(), logps[n:].tolist()))
            else:
                kl = sequence_logps(
                    model,
                    *(
                        batch[f"kl_{k}"].to(device)
                        for k in ("input_ids", "attention_mask", "labels")
                    ),
                )[0].cpu()
                refs = list(zip(logps.tolist(), kl.tolist()))
            for f, ref in zip(features[done : done + n], refs):
                f.ref = tuple(ref)
            done += n
            if console is not None:
                console.print(f"  reference log-probs {done}/{len(features)}", end="\r")
    if was_training:
        model.train()


def write_reference_logps(path: Path, features: Sequence[PreferenceFeature]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for f in features:
            fh.write(json.dumps({"source": _key(f), "ref": list(f.ref or ())}) + "\n")


def read_reference_logps(
    path: str | Path, features: Sequence[PreferenceFeature]
) -> None:
    """Attach reference log-probs from a file written by an earlier run; every example must be found."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"objective.preference.reference_logps: no such file {p}",
            hint=f"point it at {REFERENCE_FILE} of an earlier run",
        )
    table: dict[str, tuple[float, ...]] = {}
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            table[str(row["source"])] = tuple(float(x) for x in row["ref"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"{p}:{lineno}: not a reference log-prob row ({exc})",
                hint='rows look like {"source": "train.jsonl:3", "ref": [-12.5, -15.0]}',
            ) from None
    missing = [_key(f) for f in features if _key(f) not in table]
    if missing:
        raise DataError(
            f"{p}: no reference log-probs for {len(missing)} example(s), e.g. {missing[0]}",
            hint="the file must come from a run on the same data file (rows are matched by file:line); or use precompute_reference: true",
        )
    for f in features:
        f.ref = table[_key(f)]


def make_preference_trainer(
    objective: ObjectiveSection,
    model,
    args: TrainingArguments,
    tokenizer,
    train_ex: Sequence[PairExample | UnpairedExample],
    val_ex: Sequence[PairExample | UnpairedExample],
    callbacks=(),
    *,
    run_dir: Path | None = None,
    max_length: int | None = None,
    console: Console | None = None,
) -> PreferenceTrainer:
    """Build the trainer for ``objective``, with the reference set up the cheapest correct way."""
    kind = objective.type
    opts = objective.preference
    collator = (
        UnpairedCollator(tokenizer.pad_token_id)
        if kind == "kto"
        else PairCollator(tokenizer.pad_token_id)
    )
    train_f, val_f = (
        build_features(train_ex, max_length),
        build_features(val_ex, max_length),
    )
    ref_model = None
    if kind in USES_REFERENCE:
        if opts.reference_logps:
            read_reference_logps(opts.reference_logps, train_f + val_f)
        elif opts.precompute_reference:
            if console is not None:
                console.print(
                    f"[bold]reference[/]: computing log-probs of {len(train_f) + len(val_f)} examples once"
                )
            compute_reference_logps(
                model,
                train_f + val_f,
                collator,
                args.per_device_eval_batch_size,
                console,
            )
            if run_dir is not None:
                write_reference_logps(run_dir / REFERENCE_FILE, train_f + val_f)
        elif not isinstance(model, PeftModel):
            # Full / freeze fine-tuning: the reference is a frozen copy of the starting weights.
            ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    trainer = PreferenceTrainer(
        model=model,
        args=args,
        train_dataset=TaggedDataset(train_f),  # items carry their index, so a NaN/inf can name its source rows
        eval_dataset=ListDataset(val_f) if val_f else None,
        data_collator=RowTaggingCollator(collator),
        callbacks=list(callbacks),
        objective=objective,
        ref_model=ref_model,
    )
    trainer.setup_nonfinite(getattr(args, "nonfinite", "stop"), [f.example.source for f in train_f])
    trainer.remove_callback(PrinterCallback)
    return trainer

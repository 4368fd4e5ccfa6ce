"""Numerical faults: NaN or inf in the loss or the gradients, caught at the micro-batch where they appear.

``training.nonfinite`` says what happens then:

- ``stop``: :class:`NonfiniteError` is raised inside the step, before the optimizer runs, so the
  weights never take the broken update, no checkpoint is written after it (the last committed one
  stays as it was) and the recipe never reaches its final save. The message names the step, the
  loss or the first non-finite gradient, and the source rows (``file:line``) of the micro-batch.
- ``skip``: the optimizer step of that batch is dropped: every gradient is set to ``None`` just
  before ``optimizer.step()`` (``on_pre_optimizer_step``), so the optimizer leaves every parameter
  and its state alone; the learning-rate schedule still advances, so the run keeps its length.

Rows are identified by an extra batch column, :data:`ROWS_KEY`: the training dataset carries each
example's index, :class:`RowTaggingCollator` turns those into a tensor beside the model inputs, and
:meth:`NonfiniteGuardMixin.training_step` removes it before the forward, so the model never sees it.

The check per micro-batch is one ``torch.isfinite`` on the loss and one fused norm of all
gradients (``torch.nn.utils.get_total_norm``) with a single host sync for both; only on a fault are
the parameters walked one by one to name the offending gradient. It runs after each micro-batch's
backward, before the Trainer's clipping, because clipping multiplies every gradient by a NaN
coefficient and would hide which one was non-finite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneforge.errors import TuneforgeError

ROWS_KEY = "tuneforge_rows"
Policy = Literal["stop", "skip"]
SHOWN_ROWS = 8  # rows named in a message; the metrics row lists them all


class NonfiniteError(TuneforgeError):
    """Training produced NaN/inf; ``event`` is the metrics.jsonl row describing it."""

    def __init__(self, message: str, hint: str, event: dict) -> None:
        super().__init__(message, hint)
        self.event = event


class Tagged(NamedTuple):
    """A dataset item with its example index (for datasets of objects, where a column cannot be added)."""

    row: int
    item: Any


class TaggedDataset(torch.utils.data.Dataset):
    """Yields :class:`Tagged` items so the collator can say which examples formed a micro-batch."""

    def __init__(self, items: Sequence) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Tagged:
        return Tagged(i, self.items[i])


@dataclass
class RowTaggingCollator:
    """Wraps a collator: strips the example index from each feature and adds the batch's indices as :data:`ROWS_KEY`.

    Features without an index (validation) pass through unchanged, so eval batches stay as they were.
    """

    collate: Callable[[list], dict]

    def __call__(self, features: list) -> dict:
        rows: list[int] = []
        plain = []
        for f in features:
            if isinstance(f, Tagged):
                rows.append(f.row)
                plain.append(f.item)
            elif isinstance(f, dict) and ROWS_KEY in f:
                rows.append(int(f[ROWS_KEY]))
                plain.append({k: v for k, v in f.items() if k != ROWS_KEY})
            else:
                plain.append(f)
        batch = self.collate(plain)
        if rows and len(rows) == len(features):
            batch[ROWS_KEY] = torch.tensor(rows, dtype=torch.long)
        return batch


@dataclass
class NonfiniteState:
    """What the guard knows across micro-batches: the policy, the sources, the pending skip and the count."""

    policy: Policy = "stop"
    sources: list[str] = field(default_factory=list)
    pending: dict | None = None  # the fault of the current optimizer step, when skipping it
    skipped: int = 0
    skipped_steps: list[int] = field(default_factory=list)
    emit: Callable[[dict], None] = lambda event: None  # writes a metrics.jsonl row through the callbacks' on_log


def first_nonfinite_gradient(model: torch.nn.Module) -> str | None:
    """Name of the first parameter whose gradient holds NaN/inf (walked only after the fused check failed)."""
    for name, p in model.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return name
    return None


def nonfinite_check(loss: torch.Tensor, model: torch.nn.Module, *, gradients: bool = True) -> str | None:
    """``None`` when the loss and every gradient are finite, else ``"loss"`` or ``"gradient of NAME"``.

    One fused norm over the gradients and one host sync for loss and norm together: this runs every
    micro-batch. ``gradients=False`` under fp16, whose loss scaler overflows to inf on purpose while
    it searches for its scale and already skips those steps itself.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None] if gradients else []
    ok = torch.isfinite(loss.detach()).all()
    if grads:
        norm = torch.nn.utils.get_total_norm(grads)
        ok = ok & torch.isfinite(norm.to(ok.device))
    if bool(ok):
        return None
    if not bool(torch.isfinite(loss.detach()).all()):
        return "loss"
    return f"gradient of {first_nonfinite_gradient(model) or '(unnamed parameter)'}"


def describe_rows(rows: list[int], sources: Sequence[str]) -> list[str]:
    """The ``file:line`` sources of a micro-batch's example indices (the index itself if the source is unknown)."""
    return [sources[r] if 0 <= r < len(sources) else f"example {r}" for r in rows]


class NonfiniteGuardMixin:
    """A ``transformers.Trainer`` mixin: checks each micro-batch in ``training_step`` and acts on the policy.

    Put it before ``Trainer`` in the bases; call :meth:`setup_nonfinite` after ``Trainer.__init__``.
    """

    nonfinite: NonfiniteState

    def setup_nonfinite(self, policy: Policy, sources: Sequence[str]) -> None:
        self.nonfinite = NonfiniteState(policy, list(sources), emit=self._emit_nonfinite)
        self.add_callback(SkipNonfiniteStep(self.nonfinite))  # type: ignore[attr-defined]

    def training_step(self, model, inputs, num_items_in_batch=None):
        state = getattr(self, "nonfinite", None)
        rows_tensor = None
        if ROWS_KEY in inputs:
            inputs = dict(inputs)
            rows_tensor = inputs.pop(ROWS_KEY)
        loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        if state is None or state.pending is not None:
            return loss  # this step is already being skipped; its gradients are dropped anyway
        what = nonfinite_check(loss, model, gradients=not self.args.fp16)  # type: ignore[attr-defined]
        if what is not None:
            rows = rows_tensor.tolist() if rows_tensor is not None else []
            self._nonfinite_fault(state, what, describe_rows(rows, state.sources))
        return loss

    def _emit_nonfinite(self, event: dict) -> None:
        # on_log reaches MetricsLogger (the metrics.jsonl row) and RichProgress without touching
        # Trainer.log, whose log_history and the preference trainer's averaged stats are for train/eval rows.
        self.callback_handler.on_log(self.args, self.state, self.control, logs=event)  # type: ignore[attr-defined]

    def _nonfinite_fault(self, state: NonfiniteState, what: str, rows: list[str]) -> None:
        step = self.state.global_step + 1  # type: ignore[attr-defined]  # the optimizer step being computed
        event = {"nonfinite": what, "nonfinite_step": step, "action": state.policy, "rows": rows}
        if state.policy == "skip":
            state.pending = event
            return
        state.emit(event)
        shown = ", ".join(rows[:SHOWN_ROWS]) + (f" (+{len(rows) - SHOWN_ROWS} more)" if len(rows) > SHOWN_ROWS else "")
        raise NonfiniteError(
            f"non-finite {what} at step {step} (training.nonfinite=stop); micro-batch rows: {shown or 'unknown'}",
            "look at those rows and lower training.learning_rate, or set training.nonfinite: skip to drop such steps; "
            "the last committed checkpoint is untouched and no final weights were written",
            event=event,
        )


class SkipNonfiniteStep(TrainerCallback):
    """Drops the gradients of a step marked non-finite just before ``optimizer.step()``, so nothing updates."""

    def __init__(self, state: NonfiniteState) -> None:
        self.state = state

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        event = self.state.pending
        if event is None:
            return
        optimizer = kwargs.get("optimizer")
        model = kwargs.get("model")
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)  # a parameter without a gradient is left alone by the optimizer
        if model is not None:
            model.zero_grad(set_to_none=True)
        self.state.skipped += 1
        self.state.skipped_steps.append(event["nonfinite_step"])
        self.state.pending = None
        self.state.emit({**event, "nonfinite_skipped": self.state.skipped})


def nonfinite_summary(trainer: Any) -> dict:
    """The summary.json entry: how many optimizer steps were skipped for NaN/inf, and which."""
    state: NonfiniteState | None = getattr(trainer, "nonfinite", None)
    if state is None:
        return {}
    return {"nonfinite_policy": state.policy, "nonfinite_skipped": state.skipped, "nonfinite_skipped_steps": state.skipped_steps}

"""training.lr_scheduler / warmup_ratio, max_grad_norm and early_stopping_patience do what they say.

These options are pass-throughs to ``transformers.TrainingArguments`` (train/arguments.py), so a
wrong mapping (a ratio read as a step count, a dropped argument, a schedule that ignores warmup)
would train without an error and only show as a worse model. Each test runs a whole tiny recipe
through the public :func:`tuneforge.recipes.train` and reads what the optimizer actually did from a
``TrainerCallback``, then compares it with a closed form written here.

Facts these tests pin (transformers 5.x, read from its source and checked here):

- a ``warmup_steps`` below 1 is a ratio of the total optimizer steps, rounded *up*
  (``math.ceil(total * ratio)``, ``TrainingArguments.get_warmup_steps``);
- the ``constant`` schedule ignores warmup altogether (only ``constant_with_warmup`` warms up);
- the first warmup step runs at LR 0;
- ``learning_rate`` in metrics.jsonl at row ``step: k`` is the LR the k-th optimizer step used
  (the Trainer reads it before ``lr_scheduler.step()``), not the next step's;
- ``grad_norm`` in metrics.jsonl is the norm *before* clipping.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from tuneforge.config import load_recipe
from tuneforge.config.schema import Recipe
from tuneforge.errors import ConfigError
from tuneforge.recipes import train

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
VALIDATION_WORDS = ["nu", "xi", "omicron", "pi"]
LR = 1e-2
ADAM_EPS = 1e-8  # TrainingArguments' default adam_epsilon; tuneforge does not change it


def _rows(words: list[str]) -> str:
    return "".join(json.dumps({"instruction": "Repeat the word", "input": w, "output": w}) + "\n" for w in words)


def _recipe(tmp_path: Path, model_dir: Path, *overrides: str, validation: bool = False) -> Recipe:
    train_file = tmp_path / "train.jsonl"
    train_file.write_text(_rows(WORDS))
    data: dict = {"train": str(train_file), "max_length": 64}
    if validation:
        val_file = tmp_path / "validation.jsonl"
        val_file.write_text(_rows(VALIDATION_WORDS))
        data["validation"] = str(val_file)
    base = {
        "model": {"name": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": data,
        "training": {"batch_size": 2, "learning_rate": LR, "logging_steps": 1, "precision": "fp32", "threads": 1, "seed": 7},
        "output": {"dir": str(tmp_path / "run")},
    }
    return load_recipe(base=base, overrides=list(overrides))


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _grad_norm(params: list[torch.nn.Parameter]) -> float:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.double()) for p in params])).item()


class OptimizerSpy(TrainerCallback):
    """Records, around every optimizer step, the LR it uses, the gradients it receives and the update it makes.

    ``on_pre_optimizer_step`` runs after the Trainer has clipped the gradients and right before
    ``optimizer.step()``; ``on_optimizer_step`` runs right after it, before the scheduler steps.
    """

    def __init__(self, keep_tensors: bool = False) -> None:
        self.keep_tensors = keep_tensors
        self.lrs: list[float] = []
        self.grad_norms: list[float] = []  # of the gradients the optimizer step received
        self.steps: list[dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = []  # name -> (before, grad, after)
        self._before: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _trained(self, model) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])
        trained = self._trained(model)
        self.grad_norms.append(_grad_norm([p for _, p in trained]))
        if self.keep_tensors:
            self._before = {n: (p.detach().clone(), p.grad.detach().clone()) for n, p in trained}

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.keep_tensors:
            params = dict(model.named_parameters())
            self.steps.append({n: (w, g, params[n].detach().clone()) for n, (w, g) in self._before.items()})


# ---------------------------------------------------------------------------------------------
# (a) learning-rate schedules


def expected_lr(scheduler: str, base: float, k: int, total: int, warmup: int) -> float:
    """The LR of the optimizer step that follows ``k`` scheduler steps (k = 0 for the first step).

    Written out from the schedules' definitions: linear warmup from 0 over ``warmup`` steps, then
    linear decay to 0 at ``total`` (linear), half a cosine period to 0 (cosine) or flat (the
    constant ones). ``constant`` has no warmup at all, whatever warmup_ratio says.
    """
    if scheduler == "constant":
        return base
    if k < warmup:
        return base * k / warmup
    if scheduler == "constant_with_warmup":
        return base
    progress = (k - warmup) / (total - warmup)
    if scheduler == "linear":
        return base * (1.0 - progress)
    if scheduler == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise AssertionError(scheduler)


SCHEDULERS = ["linear", "cosine", "constant", "constant_with_warmup"]


@pytest.mark.parametrize("warmup_ratio", [0.0, 0.25], ids=["no-warmup", "warmup-0.25"])
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_lr_at_every_step_follows_the_schedule(tmp_path, tiny_model_dir, scheduler, warmup_ratio):
    total = 10
    overrides = [f"training.max_steps={total}", f"training.lr_scheduler={scheduler}", f"training.warmup_ratio={warmup_ratio}"]
    if scheduler == "constant" and warmup_ratio:  # transformers' constant schedule ignores warmup: refused up front
        with pytest.raises(ConfigError, match="warmup_ratio .* has no effect with training.lr_scheduler 'constant'"):
            _recipe(tmp_path, tiny_model_dir, *overrides)
        return
    recipe = _recipe(tmp_path, tiny_model_dir, *overrides)
    spy = OptimizerSpy()
    result = train(recipe, callbacks=[spy])

    # 0.25 of 10 steps is 2.5 warmup steps: transformers rounds up to 3 (int() or round() would give 2)
    warmup = math.ceil(total * warmup_ratio)
    assert warmup == (3 if warmup_ratio else 0)
    want = [expected_lr(scheduler, LR, k, total, warmup) for k in range(total)]
    assert spy.lrs == pytest.approx(want, rel=1e-9, abs=1e-15)
    if warmup and scheduler != "constant":
        assert spy.lrs[0] == 0.0 and spy.lrs[warmup] == pytest.approx(LR)  # the first warmup step is spent at LR 0
    if scheduler == "constant":
        assert set(spy.lrs) == {LR}  # warmup_ratio is ignored by the constant schedule

    # metrics.jsonl row "step: k" carries the LR the k-th optimizer step used (not the next one's)
    logged = {r["step"]: r["learning_rate"] for r in _metrics(result.run_dir) if "loss" in r}
    assert sorted(logged) == list(range(1, total + 1))
    assert [logged[k] for k in range(1, total + 1)] == pytest.approx(spy.lrs, rel=1e-12, abs=1e-15)


def test_warmup_ratio_counts_optimizer_steps_planned_from_epochs(tmp_path, tiny_model_dir):
    """Without max_steps the total comes from epochs x optimizer steps per epoch (micro-batches / grad_accum)."""
    recipe = _recipe(
        tmp_path, tiny_model_dir,
        "training.epochs=2", "training.grad_accum=2", "training.lr_scheduler=linear", "training.warmup_ratio=0.25",
    )  # fmt: skip
    spy = OptimizerSpy()
    result = train(recipe, callbacks=[spy])
    total = 2 * math.ceil(len(WORDS) / 2 / 2)  # 12 rows, batch 2, 2 micro-batches per step, 2 epochs = 6
    warmup = math.ceil(total * 0.25)  # 1.5 -> 2
    assert result.summary["steps"] == len(spy.lrs) == total
    assert spy.lrs == pytest.approx([expected_lr("linear", LR, k, total, warmup) for k in range(total)], rel=1e-9, abs=1e-15)
    assert spy.lrs[:3] == pytest.approx([0.0, LR / 2, LR])


# ---------------------------------------------------------------------------------------------
# (b) gradient clipping


def test_gradients_reach_the_optimizer_clipped_to_max_grad_norm(tmp_path, tiny_model_dir):
    """With max_grad_norm far below the raw norm, the optimizer gets gradients of norm max_grad_norm, and moves accordingly.

    AdamW's first step moves each weight by lr * g / (|g| + eps). For ordinary gradients that is about
    lr per weight whatever their scale, so clipping would be invisible in the update; with the clipped
    gradients far below eps it is lr * g / eps, so the step is about max_grad_norm / eps times smaller.
    """
    max_norm = 1e-9
    steps = 3
    recipe = _recipe(
        tmp_path, tiny_model_dir, f"training.max_steps={steps}", "training.lr_scheduler=constant", f"training.max_grad_norm={max_norm}"
    )
    spy = OptimizerSpy(keep_tensors=True)
    result = train(recipe, callbacks=[spy])

    logged = [r["grad_norm"] for r in _metrics(result.run_dir) if "loss" in r]
    assert len(logged) == len(spy.grad_norms) == steps
    for raw, used in zip(logged, spy.grad_norms):
        assert raw > 1e6 * max_norm  # the logged norm is the unclipped one ...
        assert used <= max_norm * (1 + 1e-6)  # ... the optimizer got the clipped gradients
        # and they are the raw ones scaled by torch's clip coefficient max_norm / (norm + 1e-6)
        assert used == pytest.approx(raw * max_norm / (raw + 1e-6), rel=1e-4)

    # The first AdamW step, in closed form from the gradients it received (weight decay 0, constant LR).
    first = spy.steps[0]
    update_sq = 0.0
    for name, (before, grad, after) in first.items():
        expected = before - LR * grad / (grad.abs() + ADAM_EPS)
        torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-9, msg=name)
        update_sq += float(((after - before).double() ** 2).sum())
    update_norm = math.sqrt(update_sq)
    assert 0 < update_norm <= LR * max_norm / ADAM_EPS * (1 + 1e-3)  # |dw_i| <= lr |g_i| / eps
    n_moving = sum(int((g != 0).sum()) for _, g, _ in first.values())
    assert update_norm < 1e-2 * LR * math.sqrt(n_moving)  # an unclipped first step moves ~lr per weight


def test_gradients_are_untouched_below_max_grad_norm(tmp_path, tiny_model_dir):
    """The control for the test above: the spy sees the raw gradients when max_grad_norm does not bind."""
    recipe = _recipe(tmp_path, tiny_model_dir, "training.max_steps=3", "training.max_grad_norm=1e9")
    spy = OptimizerSpy()
    result = train(recipe, callbacks=[spy])
    logged = [r["grad_norm"] for r in _metrics(result.run_dir) if "loss" in r]
    assert spy.grad_norms == pytest.approx(logged, rel=1e-5)
    assert min(logged) > 1e-3


# ---------------------------------------------------------------------------------------------
# (c) early stopping


class EvalLosses(TrainerCallback):
    """The validation loss of every evaluation, with the step it ran at."""

    def __init__(self) -> None:
        self.losses: list[tuple[int, float]] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.losses.append((state.global_step, metrics["eval_loss"]))


def stop_step(losses: list[tuple[int, float]], patience: int) -> int | None:
    """The step of the evaluation after which ``patience`` evaluations in a row have not beaten the best loss so far."""
    best, bad = math.inf, 0
    for step, loss in losses:
        if loss < best:
            best, bad = loss, 0
        else:
            bad += 1
            if bad >= patience:
                return step
    return None


@pytest.mark.parametrize("patience", [1, 3])
def test_training_stops_after_patience_evaluations_without_improvement(tmp_path, tiny_model_dir, patience):
    """A validation loss that cannot improve stops training after exactly 1 + patience evaluations.

    Full fine-tuning at LR 1e-30: every AdamW update (at most lr per weight) is far below the fp32
    spacing of the weights, so the weights, and with them the validation loss, stay bit-identical.
    """
    max_steps = 20
    recipe = _recipe(
        tmp_path, tiny_model_dir,
        "method.type=full", "training.learning_rate=1e-30", f"training.max_steps={max_steps}",
        f"training.early_stopping_patience={patience}", "training.eval_steps=1", "training.save_steps=1",
        validation=True,
    )  # fmt: skip
    evals = EvalLosses()
    result = train(recipe, callbacks=[evals])

    assert [step for step, _ in evals.losses] == list(range(1, patience + 2))
    assert len({loss for _, loss in evals.losses}) == 1  # the loss never moved, so it never improved
    assert result.summary["steps"] == patience + 1 < max_steps
    assert [r["step"] for r in _metrics(result.run_dir) if "eval_loss" in r] == list(range(1, patience + 2))


def test_early_stopping_resets_on_improvement_and_keeps_the_best_model(tmp_path, tiny_model_dir):
    """With a real (noisy) validation curve, training stops where the patience rule says, and the saved adapter is the best one.

    The run's curve (LR 5e-2, seed 1) gets worse, then improves, twice, before it gets worse twice in a
    row: each improvement must reset the count. load_best_model_at_end (set with early stopping) must
    leave the best evaluation's weights in adapter/, not the last step's.

    No save_steps: with eval_steps alone tuneforge keeps a checkpoint at each evaluation, which
    load_best_model_at_end needs; the default save_total_limit of 2 keeps the best one and the newest.
    """
    patience, max_steps = 2, 20
    recipe = _recipe(
        tmp_path, tiny_model_dir,
        "training.learning_rate=5e-2", "training.seed=1", "training.lr_scheduler=constant", f"training.max_steps={max_steps}",
        f"training.early_stopping_patience={patience}", "training.eval_steps=1",
        validation=True,
    )  # fmt: skip
    evals = EvalLosses()
    result = train(recipe, callbacks=[evals])

    expected = stop_step(evals.losses, patience)
    assert expected is not None and result.summary["steps"] == expected == evals.losses[-1][0] < max_steps
    # the count was reset at least once: some evaluation beat the best after a worse one
    losses = [loss for _, loss in evals.losses]
    improved = [i == 0 or loss < min(losses[:i]) for i, loss in enumerate(losses)]
    assert any(not improved[i] and any(improved[i + 1 :]) for i in range(len(losses)))

    best_step = min(evals.losses, key=lambda e: e[1])[0]  # min() keeps the first of equal losses, as the Trainer does
    assert best_step != expected  # otherwise "the best model" and "the last model" are the same thing
    final = load_file(str(result.run_dir / "adapter" / "adapter_model.safetensors"))
    best = load_file(str(result.run_dir / "checkpoints" / f"checkpoint-{best_step}" / "adapter_model.safetensors"))
    last = load_file(str(result.run_dir / "checkpoints" / f"checkpoint-{expected}" / "adapter_model.safetensors"))
    assert final.keys() == best.keys()
    for k in final:
        assert torch.equal(final[k], best[k]), k
    assert any(not torch.equal(final[k], last[k]) for k in final)

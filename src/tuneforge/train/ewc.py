"""EWC, elastic weight consolidation: a penalty that keeps the weights an earlier task relies on near its values.

Kirkpatrick et al. (PNAS 2017) add lambda/2 * sum_i F_i (theta_i - theta*_i)^2 to the new task's
loss: theta* are the weights after the earlier task, F the diagonal of the Fisher information on that
task's data. We estimate F as the empirical Fisher: the mean over examples of the squared gradient
of each example's log-likelihood, taken per example as the mean over its trained tokens (the same
normalisation as the training loss, so a lambda carries across sequence lengths). Only trainable
parameters count (for LoRA, the adapter matrices), which also keeps the files small.

Run A writes ``RUN/ewc/fisher.safetensors`` and ``RUN/ewc/anchor.safetensors`` (:func:`save_ewc`); run
B's :class:`EwcRegulariser` reads them and is added to the loss by
:class:`~tuneforge.train.trainer.TuneforgeTrainer` (its ``regularisers``, a public attribute of our
own subclass; nothing of transformers is patched). No maintained library offers EWC on a
transformers Trainer (avalanche's EWC plugin drives its own training loop), hence these ~100 lines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tuneforge.config.schema import TrainingSection
from tuneforge.data.render import IGNORE_INDEX, Tokenized
from tuneforge.errors import ConfigError
from tuneforge.methods.prompt import align_labels
from tuneforge.objectives.losses import causal_lm_loss

EWC_DIR = "ewc"
FISHER_FILE = "fisher.safetensors"
ANCHOR_FILE = "anchor.safetensors"


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters the optimizer updates, by name (the names the saved files use)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def example_loss(model: torch.nn.Module, example: Tokenized) -> torch.Tensor:
    """-(mean token log-likelihood) of one example's trained tokens."""
    device = next(model.parameters()).device
    input_ids = torch.tensor([example.input_ids], device=device)
    labels = torch.tensor([example.labels], device=device)
    logits = model(input_ids=input_ids, use_cache=False).logits
    return causal_lm_loss(logits, align_labels(logits, labels))  # virtual tokens (prompt tuning) carry no label


def diagonal_fisher(model: torch.nn.Module, examples: Sequence[Tokenized]) -> dict[str, torch.Tensor]:
    """F_i = mean over examples of (d log p(example) / d theta_i)^2, for every trainable parameter (fp32).

    The model runs in eval mode (no dropout): the Fisher of the model as it will be used.
    """
    params = trainable_parameters(model)
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    usable = [ex for ex in examples if any(label != IGNORE_INDEX for label in ex.labels[1:])]
    if not usable:
        raise ConfigError("training.ewc.save_fisher: no example has a trained token to estimate the Fisher from")
    was_training = model.training
    model.eval()
    try:
        for example in usable:
            grads = torch.autograd.grad(example_loss(model, example), list(params.values()), allow_unused=True)
            for name, grad in zip(params, grads):
                if grad is not None:
                    fisher[name] += grad.detach().float() ** 2
    finally:
        model.train(was_training)
    return {name: f / len(usable) for name, f in fisher.items()}


def ewc_penalty(
    params: Mapping[str, torch.Tensor], fisher: Mapping[str, torch.Tensor], anchor: Mapping[str, torch.Tensor], strength: float
) -> torch.Tensor:
    """lambda/2 * sum_i F_i (theta_i - theta*_i)^2 over the named parameters."""
    total = sum((fisher[name] * (p.float() - anchor[name]) ** 2).sum() for name, p in params.items())
    return strength / 2 * (total if torch.is_tensor(total) else torch.zeros(()))


def save_ewc(run_dir: Path, model: torch.nn.Module, examples: Sequence[Tokenized]) -> Path:
    """Estimate the Fisher on ``examples`` and save it with the current trainable weights to RUN/ewc/."""
    fisher = diagonal_fisher(model, examples)
    anchor = {name: p.detach().float().contiguous().cpu() for name, p in trainable_parameters(model).items()}
    out = Path(run_dir) / EWC_DIR
    out.mkdir(parents=True, exist_ok=True)
    meta = {"examples": str(len(examples)), "parameters": str(sum(t.numel() for t in anchor.values()))}
    save_file({k: v.contiguous().cpu() for k, v in fisher.items()}, str(out / FISHER_FILE), metadata=meta)
    save_file(anchor, str(out / ANCHOR_FILE), metadata=meta)
    (out / "fisher_stats.json").write_text(json.dumps(fisher_stats(fisher), indent=2))
    return out


def fisher_stats(fisher: Mapping[str, torch.Tensor]) -> dict:
    """Total, mean and max Fisher mass: enough to pick a lambda scale (the penalty is lambda/2 * F * delta^2)."""
    values = torch.cat([f.flatten() for f in fisher.values()]) if fisher else torch.zeros(1)
    return {"parameters": int(values.numel()), "sum": float(values.sum()), "mean": float(values.mean()), "max": float(values.max())}


def load_ewc(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The Fisher and anchor weights an earlier run saved, or an error saying how to make them."""
    folder = Path(run_dir) / EWC_DIR
    missing = [name for name in (FISHER_FILE, ANCHOR_FILE) if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"training.ewc.from_run: {run_dir} has no {EWC_DIR}/{missing[0]}",
            hint="train the earlier task with training.ewc.save_fisher: true (it writes RUN/ewc/ at the end of the run)",
        )
    return load_file(str(folder / FISHER_FILE)), load_file(str(folder / ANCHOR_FILE))


class EwcRegulariser:
    """The EWC penalty of one earlier task, called with the (unwrapped) model on every training micro-batch."""

    def __init__(self, model: torch.nn.Module, fisher: Mapping[str, torch.Tensor], anchor: Mapping[str, torch.Tensor], strength: float) -> None:
        params = trainable_parameters(model)
        check_same_parameters(params, fisher)
        device = next(iter(params.values())).device
        self.fisher = {name: fisher[name].to(device, torch.float32) for name in params}
        self.anchor = {name: anchor[name].to(device, torch.float32) for name in params}
        self.strength = strength

    def __call__(self, model: torch.nn.Module) -> torch.Tensor:
        return ewc_penalty(trainable_parameters(model), self.fisher, self.anchor, self.strength)

    @torch.no_grad()
    def start_at_anchor(self, model: torch.nn.Module) -> None:
        """Set the trainable weights to theta* (the earlier task's), where EWC's new task starts."""
        for name, p in trainable_parameters(model).items():
            p.copy_(self.anchor[name].to(p.dtype))


def check_same_parameters(params: Mapping[str, torch.Tensor], fisher: Mapping[str, torch.Tensor]) -> None:
    """The earlier run must have trained the same parameters (names and shapes), or the penalty means nothing."""
    missing = sorted(set(params) - set(fisher))
    extra = sorted(set(fisher) - set(params))
    wrong = [n for n in params if n in fisher and tuple(fisher[n].shape) != tuple(params[n].shape)]
    if missing or extra or wrong:
        first = (missing or extra or wrong)[0]
        raise ConfigError(
            f"training.ewc.from_run: the earlier run's trainable parameters differ from this run's "
            f"({len(missing)} missing, {len(extra)} not trained here, {len(wrong)} of another shape; e.g. {first})",
            hint="train both runs with the same model.name and method settings (e.g. the same method.lora.r and target modules)",
        )


def ewc_regularisers(training: TrainingSection, model: torch.nn.Module) -> list[EwcRegulariser]:
    """The recipe's EWC penalty (none without training.ewc.from_run); moves the model to theta* if asked."""
    options = training.ewc
    if not options.from_run:
        return []
    fisher, anchor = load_ewc(options.from_run)
    regulariser = EwcRegulariser(model, fisher, anchor, options.strength)
    if options.start_from_anchor:
        regulariser.start_at_anchor(model)
    return [regulariser]


def save_fisher_if_asked(run_dir: Path, training: TrainingSection, model: torch.nn.Module, examples: Sequence[Tokenized]) -> Path | None:
    """training.ewc.save_fisher: write RUN/ewc/ from the first fisher_examples training examples."""
    if not training.ewc.save_fisher:
        return None
    return save_ewc(run_dir, model, list(examples)[: training.ewc.fisher_examples])

"""EWC: the penalty and its gradient in closed form, the Fisher against a hand computation, the trainer hook, a run pair."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.tiny import tiny_llama
from tuneforge.config import load_recipe
from tuneforge.data.render import IGNORE_INDEX, Tokenized
from tuneforge.errors import ConfigError
from tuneforge.recipes import train
from tuneforge.train.arguments import TuneforgeTrainingArguments
from tuneforge.train.ewc import (
    EwcRegulariser,
    diagonal_fisher,
    ewc_penalty,
    load_ewc,
    save_ewc,
    trainable_parameters,
)
from tuneforge.train.trainer import make_trainer

EXAMPLES = [
    Tokenized([5, 9, 17, 33, 2], [IGNORE_INDEX, IGNORE_INDEX, 17, 33, 2], "a"),
    Tokenized([7, 8, 40, 2], [7, 8, 40, 2], "b"),
    Tokenized([11, 50, 60, 70, 80, 2], [IGNORE_INDEX, 50, 60, IGNORE_INDEX, 80, 2], "c"),
]


def small_model():
    model = tiny_llama(128, tie=False)
    for name, p in model.named_parameters():  # only the last layer's MLP and the head train
        p.requires_grad = name.startswith("model.layers.1.mlp") or name.startswith("lm_head")
    return model


def test_penalty_is_zero_at_the_anchor_and_its_gradient_is_lambda_f_delta():
    torch.manual_seed(0)
    params = {"w": torch.randn(3, 4, requires_grad=True), "b": torch.randn(5, requires_grad=True)}
    fisher = {k: torch.rand_like(v) for k, v in params.items()}
    anchor = {k: v.detach().clone() for k, v in params.items()}
    assert float(ewc_penalty(params, fisher, anchor, 7.0)) == 0.0
    moved = {k: (v.detach() + torch.randn_like(v)).requires_grad_() for k, v in params.items()}
    penalty = ewc_penalty(moved, fisher, anchor, 7.0)
    expected = sum(float((fisher[k] * (moved[k].detach() - anchor[k]) ** 2).sum()) for k in moved) * 7.0 / 2
    assert float(penalty) == pytest.approx(expected, rel=1e-6)
    penalty.backward()
    for k, p in moved.items():
        torch.testing.assert_close(p.grad, 7.0 * fisher[k] * (p.detach() - anchor[k]))


def hand_fisher(model, examples):
    """Per-example gradients with torch.autograd directly: loss_i = -mean log p of the trained next tokens."""
    params = dict(trainable_parameters(model))
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    for ex in examples:
        ids = torch.tensor([ex.input_ids])
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        terms = [logp[t - 1, ex.labels[t]] for t in range(1, len(ex.labels)) if ex.labels[t] != IGNORE_INDEX]
        loss = -torch.stack(terms).mean()
        grads = torch.autograd.grad(loss, list(params.values()))
        for k, g in zip(params, grads):
            total[k] += g**2
    return {k: v / len(examples) for k, v in total.items()}


def test_fisher_matches_a_hand_computation_on_trainable_parameters_only():
    model = small_model().eval()
    fisher = diagonal_fisher(model, EXAMPLES)
    assert set(fisher) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert "model.embed_tokens.weight" not in fisher
    expected = hand_fisher(model, EXAMPLES)
    for k in expected:
        torch.testing.assert_close(fisher[k], expected[k], rtol=1e-5, atol=1e-10)
    assert all(float(f.sum()) > 0 for f in fisher.values())


def test_saved_files_round_trip_and_the_regulariser_starts_at_the_anchor(tmp_path):
    model = small_model()
    out = save_ewc(tmp_path, model, EXAMPLES)
    assert {p.name for p in out.iterdir()} >= {"fisher.safetensors", "anchor.safetensors", "fisher_stats.json"}
    fisher, anchor = load_ewc(tmp_path)
    assert load_file(str(out / "anchor.safetensors")).keys() == trainable_parameters(model).keys()
    other = small_model()
    with torch.no_grad():
        for p in trainable_parameters(other).values():
            p.add_(1.0)
    reg = EwcRegulariser(other, fisher, anchor, 3.0)
    assert float(reg(other)) > 0
    reg.start_at_anchor(other)
    assert float(reg(other)) == 0.0
    with pytest.raises(ConfigError, match="save_fisher"):
        load_ewc(tmp_path / "nothing")
    wrong = tiny_llama(128, tie=False)  # every parameter trainable: names differ
    with pytest.raises(ConfigError, match="differ"):
        EwcRegulariser(wrong, fisher, anchor, 1.0)


def test_trainer_adds_the_penalty_in_training_mode_only(tmp_path, tokenizer):
    model = small_model()
    fisher = {k: torch.ones_like(v) for k, v in trainable_parameters(model).items()}
    anchor = {k: v.detach() + 0.5 for k, v in trainable_parameters(model).items()}
    reg = EwcRegulariser(model, fisher, anchor, 2.0)
    args = TuneforgeTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], gradient_accumulation_steps=2)
    with_reg = make_trainer(model, args, tokenizer, EXAMPLES, [], regularisers=[reg])
    without = make_trainer(model, args, tokenizer, EXAMPLES, [])
    batch = with_reg.data_collator([{"input_ids": e.input_ids, "labels": e.labels} for e in EXAMPLES[:2]])
    batch.pop("tuneforge_rows", None)
    model.train()
    expected_share = float(reg(model)) / 2  # one micro-batch's share of the step's penalty
    diff = float(with_reg.compute_loss(model, dict(batch))) - float(without.compute_loss(model, dict(batch)))
    assert diff == pytest.approx(expected_share, rel=1e-5)
    model.eval()
    assert float(with_reg.compute_loss(model, dict(batch))) == float(without.compute_loss(model, dict(batch)))


ROWS = [{"instruction": f"Say {w}", "output": w} for w in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]]


def _recipe(tmp_path: Path, model_dir: Path, name: str, **training):
    data = tmp_path / f"{name}.jsonl"
    rows = ROWS if name == "a" else [{"instruction": r["output"], "output": r["instruction"]} for r in ROWS]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_recipe(
        base={
            "model": {"name": str(model_dir)},
            "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
            "data": {"train": str(data), "max_length": 64},
            "training": {"max_steps": 6, "batch_size": 4, "learning_rate": 1e-2, "precision": "fp32", "compile": False, **training},
            "output": {"dir": str(tmp_path / f"run-{name}-{training.get('ewc', {}).get('strength', 'x')}")},
        }
    )


def _distance_from_anchor(run_dir: Path, anchor: dict) -> float:
    adapter = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    by_suffix = {k.split("base_model.model.")[-1].replace(".default", ""): v for k, v in anchor.items()}
    return sum(float(((adapter[k] - by_suffix[k.split("base_model.model.")[-1]]) ** 2).sum()) for k in adapter)


def test_run_a_saves_its_fisher_and_run_b_is_held_near_it(tmp_path, tiny_model_dir):
    run_a = train(_recipe(tmp_path, tiny_model_dir, "a", ewc={"save_fisher": True})).run_dir
    fisher, anchor = load_ewc(run_a)
    stats = json.loads((run_a / "ewc" / "fisher_stats.json").read_text())
    assert stats["sum"] > 0 and stats["parameters"] == sum(v.numel() for v in anchor.values())
    free = train(_recipe(tmp_path, tiny_model_dir, "b", ewc={"from_run": str(run_a), "strength": 0.0})).run_dir
    held = train(_recipe(tmp_path, tiny_model_dir, "b", ewc={"from_run": str(run_a), "strength": 1e7})).run_dir
    assert _distance_from_anchor(held, anchor) < 0.5 * _distance_from_anchor(free, anchor)


def test_ewc_is_refused_for_other_trainers():
    with pytest.raises(ConfigError, match="training.ewc applies"):
        load_recipe(base={"data": {"train": "p.jsonl"}, "objective": {"type": "dpo"}, "training": {"ewc": {"save_fisher": True}}})

"""Sharing a micro-batch's common leading tokens: the same loss and gradients as running every row in
full, the cases that fall back to the plain path, and when the speed plan turns it on."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.tiny import tiny_llama, tiny_lora
from tuneforge.config.schema import MethodSection, TrainingSection
from tuneforge.data.render import IGNORE_INDEX
from tuneforge.methods import apply_method
from tuneforge.models.precision import Precision
from tuneforge.objectives.losses import trained_positions_loss
from tuneforge.objectives.shared_prefix import (
    MIN_SHARED_TOKENS,
    batch_prefix_length,
    can_share,
    declared_randomness,
    examples_prefix_length,
    randomness_in_forward,
    shared_prefix_hidden,
)
from tuneforge.train.speed_plan import choose_share_prefix

VOCAB = 320
CPU = Precision("fp32", "cpu", "test")


# ------------------------------------------------------------------------------------------ lengths


def test_batch_prefix_length_counts_the_leading_columns_all_rows_share():
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 1, 9], [5, 6, 7, 8, 2]])
    assert batch_prefix_length(ids, torch.ones_like(ids)) == 3


def test_batch_prefix_length_stops_at_padding_and_leaves_one_token():
    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert batch_prefix_length(ids, mask) == 2  # row 1's third token is padding
    same = torch.tensor([[5, 6, 7], [5, 6, 7]])
    assert batch_prefix_length(same, torch.ones_like(same)) == 2  # identical rows: one left for the tail


def test_examples_prefix_length():
    assert examples_prefix_length([[1, 2, 3, 4], [1, 2, 3, 9, 9], [1, 2, 3]]) == 3
    assert examples_prefix_length([[1, 2], [3, 2]]) == 0
    assert examples_prefix_length([]) == 0


# ------------------------------------------------------------------------------------------ exactness


def lora_model(attention: str | None = None):
    return tiny_lora(VOCAB, attention)


def right_padded_batch(prefix: int = 20, lengths=(31, 27, 24, 35)):
    """Rows that share ``prefix`` tokens, then differ, right-padded; labels on the tail only."""
    torch.manual_seed(1)
    head = torch.randint(3, VOCAB, (prefix,))
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :prefix] = head
        ids[i, prefix:n] = torch.randint(3, VOCAB, (n - prefix,))
        mask[i, :n] = 1
    labels = ids.clone()
    labels[:, : prefix + 2] = IGNORE_INDEX
    labels[mask == 0] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": mask}, labels


def loss_and_grads(model, inputs, labels, share: bool):
    model.zero_grad()
    loss = trained_positions_loss(model.get_base_model(), dict(inputs), labels, share_prefix=share)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_shared_prefix_gives_the_same_loss_and_gradients(attention):
    model = lora_model(attention)
    inputs, labels = right_padded_batch()
    decoder = model.get_base_model().get_decoder()
    assert can_share(decoder, inputs) == 20
    plain_loss, plain_grads = loss_and_grads(model, inputs, labels, share=False)
    shared_loss, shared_grads = loss_and_grads(model, inputs, labels, share=True)
    assert torch.allclose(plain_loss, shared_loss, atol=1e-6, rtol=1e-5)
    assert plain_grads.keys() == shared_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, shared_grads[name], atol=1e-6, rtol=1e-4), name


def test_shared_prefix_hidden_states_equal_the_plain_decoder():
    model = lora_model()
    inputs, _ = right_padded_batch()
    decoder = model.get_base_model().get_decoder()
    with torch.no_grad():
        plain = decoder(**inputs, use_cache=False).last_hidden_state
        shared = shared_prefix_hidden(decoder, inputs, 20)
    real = inputs["attention_mask"].bool()
    assert shared.shape == plain.shape
    assert torch.allclose(plain[real], shared[real], atol=1e-5)  # padded positions are never read


def test_prefix_gradients_flow_into_the_shared_pass():
    """The embedding of a prefix token gets gradient from every row, as in the plain path."""
    torch.manual_seed(0)
    model = tiny_llama(VOCAB, tie=False)
    inputs, labels = right_padded_batch()
    grads = []
    for share in (False, True):
        model.zero_grad()
        trained_positions_loss(model, dict(inputs), labels, share_prefix=share).backward()
        grads.append(model.get_input_embeddings().weight.grad.clone())
    token = int(inputs["input_ids"][0, 3])
    assert grads[0][token].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_what_falls_back_to_the_plain_path():
    model = lora_model()
    decoder = model.get_base_model().get_decoder()
    inputs, _ = right_padded_batch()
    assert can_share(decoder, {k: v[:1] for k, v in inputs.items()}) == 0  # one row: nothing to share
    assert can_share(decoder, {**inputs, "position_ids": torch.zeros_like(inputs["input_ids"])}) == 0  # packed rows
    short, _ = right_padded_batch(prefix=MIN_SHARED_TOKENS - 1)
    assert can_share(decoder, short) == 0


def test_a_sliding_window_cache_falls_back():
    model = tiny_llama(VOCAB, tie=False)
    model.config.layer_types = ["sliding_attention"] * model.config.num_hidden_layers
    model.config.sliding_window = 8
    inputs, _ = right_padded_batch()
    assert shared_prefix_hidden(model.get_decoder(), inputs, 20) is None


# ------------------------------------------------------------------------------------------ randomness


def test_randomness_is_found_in_dropout_modules_config_and_neftune():
    assert randomness_in_forward(lora_model()) is None
    torch.manual_seed(0)
    dropped = apply_method(tiny_llama(VOCAB), MethodSection(type="lora", lora={"r": 4, "dropout": 0.1}))
    assert "dropout p=0.1" in randomness_in_forward(dropped)
    noisy = tiny_llama(VOCAB)
    noisy.config.attention_dropout = 0.2
    assert "attention_dropout=0.2" in randomness_in_forward(noisy)
    assert "NEFTune" in randomness_in_forward(lora_model(), neftune_alpha=5.0)


def test_declared_randomness_reads_the_recipe_before_a_model_exists():
    config = tiny_llama(VOCAB).config
    assert declared_randomness(MethodSection(type="lora", lora={"dropout": 0.0}), config) is None
    assert declared_randomness(MethodSection(type="lora"), config) == "method.lora.dropout=0.05"
    assert declared_randomness(MethodSection(type="full"), config) is None


# ------------------------------------------------------------------------------------------ the plan


def choose(training: TrainingSection | None = None, precision=CPU, shared=40, randomness=None, **kw):
    training = training or TrainingSection(batch_size=8)
    method = kw.pop("method", MethodSection(type="lora"))
    return choose_share_prefix(training, method, precision, kw.pop("objective", "sft"), kw.pop("compiled", False), shared, randomness)


def test_auto_shares_on_cpu_when_examples_share_enough_and_nothing_is_random():
    on, why = choose()
    assert on and "40 tokens" in why
    assert choose(shared=MIN_SHARED_TOKENS - 1) == (False, f"the examples share {MIN_SHARED_TOKENS - 1} leading tokens (auto needs {MIN_SHARED_TOKENS})")
    assert not choose(randomness="dropout p=0.05 in x")[0]
    assert not choose(precision=Precision("bf16", "cuda", "test"))[0]


@pytest.mark.parametrize(
    "kw",
    [
        {"training": TrainingSection(batch_size=8, packing=True)},
        {"training": TrainingSection(batch_size=8, activation_checkpointing=True)},
        {"training": TrainingSection(batch_size=1)},
        {"training": TrainingSection(batch_size=8, share_prefix=False)},
        {"compiled": True},
        {"objective": "dpo"},
        {"method": MethodSection(type="prompt_tuning")},
    ],
)
def test_what_keeps_sharing_off(kw):
    assert choose(**kw)[0] is False


def test_true_shares_despite_dropout_and_says_so():
    on, why = choose(TrainingSection(batch_size=8, share_prefix=True), randomness="dropout p=0.05 in x", shared=0)
    assert on and "one draw of dropout" in why


# ------------------------------------------------------------------------------------------ a run


def test_a_run_trains_the_same_with_and_without_sharing(tmp_path, tiny_model_dir):
    import json

    from tuneforge.config import load_recipe
    from tuneforge.recipes import train

    instruction = "Repeat the word below exactly as it is written, and return it as a JSON object with the key word."
    rows = [{"instruction": instruction, "input": w, "output": json.dumps({"word": w})} for w in
            ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]]  # fmt: skip
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    losses, plans = {}, {}
    for share in ("auto", False):
        recipe = load_recipe(
            base={
                "model": {"name": str(tiny_model_dir)},
                "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
                "data": {"train": str(data), "val_fraction": 0.0, "max_length": 128},
                "training": {"epochs": 1, "batch_size": 3, "learning_rate": 1e-2, "logging_steps": 1, "precision": "fp32",
                             "share_prefix": share, "seed": 3},
                "output": {"dir": str(tmp_path / f"run-{share}")},
            }
        )  # fmt: skip
        run = train(recipe).run_dir
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses[share] = [m["loss"] for m in metrics if "loss" in m]
        plans[share] = json.loads((run / "summary.json").read_text())["speed_plan"]
    assert "prompt prefix shared (every example starts with the same" in plans["auto"]
    assert "prompt prefix not shared" in plans[False]
    assert len(losses["auto"]) == 3
    assert losses["auto"] == pytest.approx(losses[False], rel=1e-4)

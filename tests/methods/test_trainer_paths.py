"""The parts of training that depend on the method: the prompt-learning loss path, LoRA+ optimizer
groups, AdaLoRA's per-step rank reallocation and orthogonality penalty."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import PrinterCallback

from tests.helpers.tiny import tiny_llama
from tests.methods.helpers import VOCAB, build, ids
from tuneforge.data.collate import PadCollator
from tuneforge.methods import method_callbacks
from tuneforge.methods.adalora import active_ranks, orthogonal_regularization
from tuneforge.objectives.losses import causal_lm_loss, trainer_loss
from tuneforge.train.arguments import TuneforgeTrainingArguments
from tuneforge.train.trainer import TuneforgeTrainer


def sft_batch(seed: int = 5) -> dict[str, torch.Tensor]:
    x = ids(batch=2, length=10, seed=seed)
    labels = x.clone()
    labels[:, :4] = -100  # prompt positions carry no label, as in SFT
    return {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": labels}


def trainer_for(model, tmp_path, rows=None, **args) -> TuneforgeTrainer:
    defaults = {"output_dir": str(tmp_path), "use_cpu": True, "report_to": [], "disable_tqdm": True, "remove_unused_columns": False,
                "learning_rate": 1e-2, "lr_scheduler_type": "constant", "save_strategy": "no", "logging_strategy": "no"}  # fmt: skip
    defaults.update(args)
    trainer = TuneforgeTrainer(
        model=model,
        args=TuneforgeTrainingArguments(**defaults),
        train_dataset=Dataset.from_list(rows) if rows else None,
        data_collator=PadCollator(0),
        compute_loss_func=trainer_loss,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


@pytest.mark.parametrize(
    "cfg",
    [
        {"type": "prefix_tuning", "prefix": {"num_virtual_tokens": 4}},
        {
            "type": "p_tuning_v2",
            "prefix": {"num_virtual_tokens": 4, "encoder_hidden_size": 16},
        },
        {"type": "prompt_tuning", "prompt_tuning": {"num_virtual_tokens": 4}},
        {
            "type": "p_tuning",
            "p_tuning": {"num_virtual_tokens": 4, "encoder_hidden_size": 16},
        },
    ],
    ids=lambda c: c["type"],
)
def test_prompt_learning_loss_goes_through_the_peft_forward(tmp_path, cfg):
    model = build(tiny_llama(VOCAB), cfg)
    model.train()
    batch = sft_batch()
    own = model(
        **batch
    ).loss  # peft's own forward: virtual tokens + the model's mean token loss
    ours = trainer_for(model, tmp_path).compute_loss(model, dict(batch))
    torch.testing.assert_close(ours, own, atol=1e-6, rtol=1e-6)
    # The decoder alone (the fast path used for weight-space methods) would miss the virtual tokens.
    with model.disable_adapter():
        plain = model(**batch).loss
    assert abs(float(plain) - float(own)) > 1e-4


def test_loraplus_gives_b_matrices_their_own_learning_rate(tmp_path):
    model = build(
        tiny_llama(VOCAB),
        {"type": "loraplus", "lora": {"r": 4, "loraplus_lr_ratio": 8}},
    )
    trainer = trainer_for(model, tmp_path, learning_rate=1e-3, loraplus_lr_ratio=8.0)
    optimizer = trainer.create_optimizer()
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    names = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(
        id(p) in lr_of for p in names.values()
    )  # every trainable parameter is optimised
    for n, p in names.items():
        assert lr_of[id(p)] == pytest.approx(8e-3 if "lora_B" in n else 1e-3), n


def test_plain_lora_keeps_one_learning_rate(tmp_path):
    model = build(tiny_llama(VOCAB), {"type": "lora", "lora": {"r": 4}})
    optimizer = trainer_for(model, tmp_path, learning_rate=1e-3).create_optimizer()
    assert {g["lr"] for g in optimizer.param_groups} == {1e-3}


def test_adalora_orthogonality_penalty_matches_peft(tmp_path):
    model = build(
        tiny_llama(VOCAB),
        {
            "type": "adalora",
            "adalora": {"init_r": 4, "target_r": 2, "orth_reg_weight": 0.3},
        },
    )
    with torch.no_grad():  # make P, Q far from orthogonal so the penalty is large
        for n, p in model.named_parameters():
            if "lora_A" in n or "lora_B" in n:
                p.add_(0.5)
    model.train()
    x = ids(batch=2, length=10)
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": x}
    peft_loss = model(
        **batch
    ).loss  # peft adds orth_reg_weight * mean ||P P^T - I||_F when it computes the loss
    ce = causal_lm_loss(
        model(input_ids=x, attention_mask=batch["attention_mask"]).logits, x
    )
    penalty = orthogonal_regularization(model)
    assert float(penalty) > 0.1
    torch.testing.assert_close(ce + penalty, peft_loss, atol=1e-5, rtol=1e-5)
    # and the trainer adds it on its fast path
    trainer = trainer_for(model, tmp_path)
    torch.testing.assert_close(
        trainer.compute_loss(model, dict(batch)), peft_loss, atol=1e-5, rtol=1e-5
    )


def _adalora_run(tmp_path, with_callback: bool):
    init_r, target_r, steps = 4, 2, 12
    cfg = {"type": "adalora", "adalora": {"init_r": init_r, "target_r": target_r, "tinit": 2, "tfinal": 3, "delta_t": 1,
                                          "target_modules": ["q_proj", "v_proj"]}}  # fmt: skip
    model = build(tiny_llama(VOCAB), cfg, total_steps=steps)
    rows = [
        {
            "input_ids": ids(1, 10, seed=s)[0].tolist(),
            "labels": ids(1, 10, seed=s)[0].tolist(),
        }
        for s in range(4)
    ]
    trainer = trainer_for(
        model, tmp_path, rows, max_steps=steps, per_device_train_batch_size=2
    )
    if with_callback:
        from tuneforge.methods import MethodSection

        for callback in method_callbacks(model, MethodSection(**cfg)):
            trainer.add_callback(callback)
    trainer.train()
    return model, init_r, target_r


def test_adalora_ranks_fall_to_target_by_the_end_of_the_budget_schedule(tmp_path):
    model, _init_r, target_r = _adalora_run(tmp_path, with_callback=True)
    layers = 2 * 2  # q_proj and v_proj in 2 blocks
    ranks = active_ranks(model)
    assert len(ranks) == layers
    assert (
        sum(ranks.values()) == target_r * layers
    )  # the budget, spread unevenly over layers by importance
    pattern = model.peft_config[
        "default"
    ].rank_pattern  # fixed at total_step - tfinal and saved with the adapter
    assert (
        pattern
        and sum(sum(bool(v) for v in kept) for kept in pattern.values())
        == target_r * layers
    )


def test_adalora_without_the_callback_keeps_every_rank(tmp_path):
    # The control: what the callback prevents. peft only reallocates when update_and_allocate is called.
    model, init_r, _ = _adalora_run(tmp_path, with_callback=False)
    assert sum(active_ranks(model).values()) == init_r * 4


def test_held_out_loss_of_prompt_tuning_includes_the_virtual_tokens():
    # Held-out loss must see what a prompt-learning method learned, not the bare decoder.
    from tuneforge.data.render import Tokenized
    from tuneforge.evaluate.loss import evaluate_loss

    model = build(tiny_llama(VOCAB), {"type": "prompt_tuning", "prompt_tuning": {"num_virtual_tokens": 4}})
    batch = sft_batch()
    examples = [Tokenized(input_ids=row.tolist(), labels=lab.tolist(), source=f"t:{i}") for i, (row, lab) in enumerate(zip(batch["input_ids"], batch["labels"]))]
    got = evaluate_loss(model, examples, pad_token_id=0, batch_size=2)["eval_loss"]
    model.eval()
    with torch.no_grad():
        own = float(model(**batch).loss)  # peft labels the virtual positions itself
        with model.disable_adapter():
            base = float(model(**batch).loss)
    assert got == pytest.approx(own, rel=1e-5)
    assert abs(got - base) > 1e-4

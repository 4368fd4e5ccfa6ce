"""Packing without cross-contamination: a packed forward equals per-example forwards."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.tiny import tiny_llama
from tuneforge.data.collate import PadCollator
from tuneforge.data.packing import PackedCollator, model_inputs
from tuneforge.data.render import IGNORE_INDEX
from tuneforge.objectives.losses import causal_lm_loss, trained_positions_loss

VOCAB = 320


def _features(lengths=(7, 12, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = []
    for n in lengths:
        ids = torch.randint(3, VOCAB, (n,), generator=g).tolist()
        labels = [IGNORE_INDEX] * (n // 2) + ids[
            n // 2 :
        ]  # prompt untrained, answer trained
        feats.append({"input_ids": ids, "labels": labels})
    return feats


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_per_example_logits(attn):
    model = tiny_llama(VOCAB, seed=1)
    model.set_attn_implementation(attn)
    feats = _features()
    batch = model_inputs(PackedCollator()(feats))
    assert "attention_mask" not in batch and batch["input_ids"].shape == (1, 24)
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            use_cache=False,
        ).logits[0]
        start = 0
        for f in feats:
            n = len(f["input_ids"])
            alone = model(
                input_ids=torch.tensor([f["input_ids"]]), use_cache=False
            ).logits[0]
            assert torch.allclose(packed[start : start + n], alone, atol=1e-5), (
                f"segment at {start} attends across examples"
            )
            start += n


def test_packing_is_needed_for_the_test_to_pass():
    """Without position ids the same row mixes examples, so the equality test above can fail."""
    model = tiny_llama(VOCAB, seed=1)
    feats = _features()
    batch = PackedCollator()(feats)
    with torch.no_grad():
        mixed = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
        second = model(
            input_ids=torch.tensor([feats[1]["input_ids"]]), use_cache=False
        ).logits[0]
    assert not torch.allclose(mixed[7:19], second, atol=1e-3)


def test_packed_loss_and_gradients_equal_padded():
    from tuneforge.config.schema import MethodSection
    from tuneforge.methods import apply_method

    torch.manual_seed(0)
    model = apply_method(
        tiny_llama(VOCAB, tie=False),
        MethodSection(type="lora", lora={"r": 4, "dropout": 0.0}),
    )
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    feats = _features((9, 4, 13, 6))
    padded = PadCollator(pad_token_id=0)(feats)
    n_items = int(padded["labels"][:, 1:].ne(IGNORE_INDEX).sum())
    ref = causal_lm_loss(
        model(
            input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]
        ).logits,
        padded["labels"],
        n_items,
    )
    ref.backward()
    g_ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()

    packed = PackedCollator()(feats)
    assert (
        int(packed["labels"][:, 1:].ne(IGNORE_INDEX).sum()) == n_items
    )  # no label lost or added at the seams
    assert int(packed["attention_mask"].sum()) == sum(
        len(f["input_ids"]) for f in feats
    )
    inputs = model_inputs(packed)
    labels = inputs.pop("labels")
    loss = trained_positions_loss(model.get_base_model(), inputs, labels, n_items)
    loss.backward()
    assert torch.allclose(loss, ref, atol=1e-6)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p.grad, g_ref[n], atol=1e-6), n


def test_boundary_label_is_ignored_for_fully_trained_text():
    feats = [
        {"input_ids": [5, 6, 7], "labels": [5, 6, 7]},
        {"input_ids": [8, 9], "labels": [8, 9]},
    ]
    out = PackedCollator()(feats)
    assert out["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 0, 1]]


def test_bad_batches_are_rejected():
    with pytest.raises(ValueError):
        PackedCollator()([])
    with pytest.raises(ValueError):
        PackedCollator()([{"input_ids": [1, 2], "labels": [1]}])


def test_trainer_compute_loss_on_packed_batch_equals_padded(tmp_path, tokenizer):
    """The real Trainer path (mask removal, trained-positions head) on a packed batch gives the padded loss."""
    from tuneforge.config.schema import MethodSection
    from tuneforge.data.render import Tokenized
    from tuneforge.methods import apply_method
    from tuneforge.train.arguments import TuneforgeTrainingArguments
    from tuneforge.train.trainer import make_trainer

    model = apply_method(
        tiny_llama(len(tokenizer), tie=False),
        MethodSection(type="lora", lora={"r": 4, "dropout": 0.0}),
    )
    model.config.use_cache = False
    feats = _features((9, 4, 13, 6))
    examples = [
        Tokenized(input_ids=f["input_ids"], labels=f["labels"], source="t")
        for f in feats
    ]
    args = TuneforgeTrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to=[],
        remove_unused_columns=False,
    )
    losses = {}
    for packing in (False, True):
        trainer = make_trainer(
            model,
            args,
            tokenizer,
            examples,
            [],
            packing=packing,
        )
        batch = trainer.data_collator(feats)
        assert ("position_ids" in batch) == packing
        n_items = int(batch["labels"][:, 1:].ne(IGNORE_INDEX).sum())
        losses[packing] = trainer.compute_loss(
            trainer.model, batch, num_items_in_batch=n_items
        )
    assert torch.allclose(losses[True], losses[False], atol=1e-6)

"""The per-run speed plan: which attention kernel and frozen-weight storage a run gets, and that the
frozen-weight storage changes no number (bit-identical loss and gradients under autocast)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers.tiny import tiny_llama
from tests.methods.helpers import VOCAB, build, ids
from tuneforge.config.method_table import METHOD_TYPES, types_where
from tuneforge.config.schema import MethodSection, TrainingSection
from tuneforge.objectives.losses import trained_positions_loss
from tuneforge.models.precision import Precision
from tuneforge.train.speed_plan import (
    COMPILE_MIN_TOKENS,
    COMPILE_MIN_TOKENS_FP32,
    EAGER_MAX_LENGTH,
    EAGER_MEMORY_BUDGET,
    SpeedPlan,
    applied,
    choose_attention,
    choose_compile,
    choose_frozen_dtype,
    compile_blocks,
    eager_attention_bytes,
    frozen_linears,
    plan_speed,
    planned_tokens,
    store_frozen_linears,
    uncompiled,
)

CPU_BF16 = Precision("bf16", "cpu", "test")
CPU_FP32 = Precision("fp32", "cpu", "test")
CUDA_BF16 = Precision("bf16", "cuda", "test")


def config():
    return tiny_llama(VOCAB).config  # 2 layers, 4 heads


# ------------------------------------------------------------------------------------------ attention


def test_auto_attention_is_eager_for_short_rows_on_cpu():
    impl, why = choose_attention("auto", CPU_BF16, config(), 8, 200, packing=False)
    assert impl == "eager" and "200 tokens" in why


def test_auto_attention_keeps_the_model_kernel_for_long_rows_packing_and_cuda():
    assert choose_attention("auto", CPU_BF16, config(), 8, EAGER_MAX_LENGTH + 1, False)[0] is None
    assert choose_attention("auto", CPU_BF16, config(), 8, 100, packing=True)[0] is None
    assert choose_attention("auto", CUDA_BF16, config(), 8, 100, False)[0] is None


def test_auto_attention_respects_the_memory_budget():
    cfg = config()
    # batch x heads x L^2 x 6 bytes x layers, exactly
    assert eager_attention_bytes(cfg, 3, 100) == 3 * 4 * 100 * 100 * 6 * 2
    length = 200
    fits = EAGER_MEMORY_BUDGET // eager_attention_bytes(cfg, 1, length)
    assert choose_attention("auto", CPU_BF16, cfg, fits, length, False)[0] == "eager"
    impl, why = choose_attention("auto", CPU_BF16, cfg, fits + 1, length, False)
    assert impl is None and "MiB" in why


def test_explicit_attention_is_used_as_given():
    assert choose_attention("sdpa", CPU_BF16, config(), 8, 10, False) == ("sdpa", "set by training.attention")
    assert choose_attention("eager", CUDA_BF16, config(), 8, 4096, True)[0] == "eager"


def test_attention_is_switched_for_training_and_given_back():
    model = tiny_llama(VOCAB)
    model.set_attn_implementation("sdpa")
    plan = SpeedPlan("eager", "test", None, "test")
    with applied(model, plan):
        assert model.config._attn_implementation == "eager"
        assert all(layer.self_attn.config._attn_implementation == "eager" for layer in model.model.layers)
    assert model.config._attn_implementation == "sdpa"


def test_eager_and_sdpa_give_the_same_trained_positions_loss():
    model = tiny_llama(VOCAB).train()
    x = ids(batch=3, length=12)
    mask = torch.ones_like(x)
    mask[0, :5] = 0  # left padding in one row
    labels = x.clone()
    labels[:, :6] = -100
    losses = {}
    for impl in ("sdpa", "eager"):
        model.set_attn_implementation(impl)
        losses[impl] = trained_positions_loss(model, {"input_ids": x, "attention_mask": mask}, labels)
    torch.testing.assert_close(losses["eager"], losses["sdpa"], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------- frozen weights


@pytest.mark.parametrize("method_type", ["full", "freeze", "moe"])
def test_whole_model_methods_keep_fp32_weights(method_type):
    dtype, why = choose_frozen_dtype(MethodSection(type=method_type), CPU_BF16)
    assert dtype is None and "whole model" in why


def test_frozen_storage_needs_autocast_and_no_dora_and_no_sharding():
    assert choose_frozen_dtype(MethodSection(type="lora"), CPU_BF16)[0] is torch.bfloat16
    assert choose_frozen_dtype(MethodSection(type="lora"), Precision("fp16", "cuda", "t"))[0] is torch.float16
    assert choose_frozen_dtype(MethodSection(type="lora"), CPU_FP32)[0] is None
    assert choose_frozen_dtype(MethodSection(type="dora"), CPU_BF16)[0] is None
    assert choose_frozen_dtype(MethodSection(type="lora"), CPU_BF16, sharded=True)[0] is None


def test_plan_uses_the_longest_row_and_the_batch_size():
    training = TrainingSection(batch_size=2)
    plan = plan_speed(training, MethodSection(type="lora"), CPU_BF16, config(), [10, 50, 30])
    assert plan.attention == "eager" and "50 tokens" in plan.attention_reason
    assert plan.frozen_dtype is torch.bfloat16
    assert "eager" in plan.describe() and "bfloat16" in plan.describe()


def test_frozen_linears_are_the_frozen_base_layers_not_adapters_or_a_tied_head():
    model = build(tiny_llama(VOCAB, tie=True), {"type": "lora", "lora": {"r": 2, "target_modules": ["q_proj", "v_proj"]}})
    found = list(frozen_linears(model))
    assert len(found) == 7 * 2  # every block linear (q/v are the LoRA base layers), nothing else
    assert all(not p.requires_grad for m in found for p in m.parameters())
    head = model.get_output_embeddings()
    assert all(m is not head for m in found)  # tied to the embedding: stays fp32
    untied = build(tiny_llama(VOCAB, tie=False), {"type": "lora", "lora": {"r": 2}})
    assert any(m is untied.get_output_embeddings() for m in frozen_linears(untied))


def test_store_frozen_linears_halves_their_bytes_and_leaves_trainable_weights_fp32():
    model = build(tiny_llama(VOCAB), {"type": "lora", "lora": {"r": 2}})
    before = sum(m.weight.numel() for m in frozen_linears(model))
    freed = store_frozen_linears(model, torch.bfloat16)
    assert freed == before * 2
    assert not list(frozen_linears(model))  # nothing fp32 and frozen is left
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    assert model.get_input_embeddings().weight.dtype == torch.float32


ADAPTER_METHODS = [
    {"type": "lora", "lora": {"r": 4, "dropout": 0.1}},
    {"type": "rslora", "lora": {"r": 4}},
    {"type": "pissa", "lora": {"r": 4}},
    {"type": "adalora", "adalora": {"init_r": 4, "target_r": 2, "tinit": 1, "tfinal": 1}},
    {"type": "vera"},
    {"type": "ia3"},
    {"type": "loha", "loha": {"r": 4}},
    {"type": "lokr"},
    {"type": "oft"},
    {"type": "prefix_tuning", "prefix": {"num_virtual_tokens": 4}},
    {"type": "p_tuning_v2", "prefix": {"num_virtual_tokens": 4}},
    {"type": "prompt_tuning", "prompt_tuning": {"num_virtual_tokens": 4}},
    {"type": "p_tuning"},
    {"type": "bottleneck", "bottleneck": {"reduction_factor": 8}},
]


def _loss_and_grads(model, x, labels):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)  # same dropout masks in both runs
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what accelerate wraps forward in under bf16
        loss = model(input_ids=x, labels=labels).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("cfg", ADAPTER_METHODS, ids=[m["type"] for m in ADAPTER_METHODS])
def test_frozen_storage_is_bit_identical_under_autocast(cfg):
    """The claim the plan rests on: storing frozen weights in bf16 once = autocast casting them every step."""
    assert choose_frozen_dtype(MethodSection(**cfg), CPU_BF16)[0] is torch.bfloat16
    model = build(tiny_llama(VOCAB), cfg).train()
    x = ids(batch=2, length=10)
    labels = x.clone()
    labels[:, :4] = -100
    loss_fp32, grads_fp32 = _loss_and_grads(model, x, labels)
    assert store_frozen_linears(model, torch.bfloat16) > 0
    loss_bf16, grads_bf16 = _loss_and_grads(model, x, labels)
    assert grads_fp32 and grads_fp32.keys() == grads_bf16.keys()
    assert torch.equal(loss_fp32, loss_bf16)
    for name, grad in grads_fp32.items():
        assert torch.equal(grad, grads_bf16[name]), name


def test_trained_positions_path_is_bit_identical_with_frozen_storage():
    model = build(tiny_llama(VOCAB), {"type": "lora", "lora": {"r": 4, "dropout": 0.0}}).train()
    x = ids(batch=2, length=10)
    labels = x.clone()
    labels[:, :4] = -100
    base = model.get_base_model()

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return trained_positions_loss(base, {"input_ids": x, "attention_mask": torch.ones_like(x)}, labels)

    before = run()
    store_frozen_linears(model, torch.bfloat16)
    assert torch.equal(before, run())


def test_frozen_storage_without_autocast_would_fail_loudly():
    """Why the plan needs autocast: an fp32 activation cannot meet a bf16 weight outside it."""
    layer = nn.Linear(4, 4).requires_grad_(False)
    store_frozen_linears(layer, torch.bfloat16)
    with pytest.raises(RuntimeError):
        layer(torch.randn(2, 4))


def test_dora_would_change_the_loss_which_is_why_it_keeps_fp32_weights():
    model = build(tiny_llama(VOCAB), {"type": "dora", "lora": {"r": 4}}).train()
    x = ids(batch=2, length=10)
    loss_fp32, _ = _loss_and_grads(model, x, x)
    store_frozen_linears(model, torch.bfloat16)
    loss_bf16, _ = _loss_and_grads(model, x, x)
    assert not torch.equal(loss_fp32, loss_bf16)
    assert choose_frozen_dtype(MethodSection(type="dora"), CPU_BF16)[0] is None


@pytest.mark.parametrize("cfg", [{"type": "lora", "lora": {"use_dora": True}}, {"type": "qlora", "lora": {"use_dora": True}}])
def test_dora_through_the_lora_option_keeps_fp32_weights_too(cfg):
    """``lora.use_dora`` trains the same DoRA layers as ``type: dora`` (config/method_table.uses_dora)."""
    dtype, why = choose_frozen_dtype(MethodSection(**cfg), CPU_BF16)
    assert dtype is None and "DoRA" in why


# --------------------------------------------------------------------------------------------- compile


def test_auto_compile_needs_enough_tokens_on_cpu():
    lora = MethodSection(type="lora")
    assert choose_compile("auto", lora, CPU_BF16, COMPILE_MIN_TOKENS)[0] is True
    on, why = choose_compile("auto", lora, CPU_BF16, COMPILE_MIN_TOKENS - 1)
    assert on is False and "repay" in why
    assert choose_compile("auto", lora, CUDA_BF16, 10**9)[0] is False
    assert choose_compile(True, lora, CPU_BF16, 10)[0] is True
    assert choose_compile(False, lora, CPU_BF16, 10**9)[0] is False
    on, why = choose_compile("auto", lora, CPU_BF16, 10**9, distributed=True)
    assert on is False and "single process only" in why


def test_auto_compile_under_fp32_needs_more_tokens_and_gives_way_to_prefix_sharing():
    lora = MethodSection(type="lora")
    on, why = choose_compile("auto", lora, CPU_FP32, COMPILE_MIN_TOKENS)
    assert on is False and "under fp32" in why
    assert choose_compile("auto", lora, CPU_FP32, COMPILE_MIN_TOKENS_FP32)[0] is True
    lengths = [200] * (COMPILE_MIN_TOKENS_FP32 // 200 + 1)
    shared = plan_speed(TrainingSection(batch_size=8), lora, CPU_FP32, config(), lengths, shared_tokens=40)
    assert not shared.compile and shared.share_prefix and "sharing the prompt prefix" in shared.compile_reason
    unshared = plan_speed(TrainingSection(batch_size=8), lora, CPU_FP32, config(), lengths, shared_tokens=0)
    assert unshared.compile and not unshared.share_prefix
    asked = plan_speed(TrainingSection(batch_size=8, compile=True), lora, CPU_FP32, config(), lengths, shared_tokens=40)
    assert asked.compile and not asked.share_prefix  # an explicit compile: true is kept
    bf16 = plan_speed(TrainingSection(batch_size=8), lora, CPU_BF16, config(), lengths, shared_tokens=40)
    assert bf16.compile and not bf16.share_prefix  # compile measured 1.21-1.34x under bf16: kept


@pytest.mark.parametrize("method_type", ["prompt_tuning", "prefix_tuning", "qlora"])
def test_compile_is_never_planned_for_methods_that_run_eagerly(method_type):
    assert choose_compile(True, MethodSection(type=method_type), CPU_BF16, 10**9)[0] is False


def test_the_methods_that_run_eagerly_are_the_table_entries_that_do_not_compile():
    eager = {t for t in METHOD_TYPES if choose_compile("auto", MethodSection(type=t), CPU_BF16, 10**9)[0] is False}
    assert eager == set(types_where("compiles", False)) == {"qlora", "prefix_tuning", "p_tuning_v2", "prompt_tuning", "p_tuning"}


def test_planned_tokens_counts_epochs_or_max_steps():
    assert planned_tokens(TrainingSection(epochs=2), [10, 30]) == 80
    # 5 steps x 2 accumulated x 4 rows x mean length 20
    assert planned_tokens(TrainingSection(max_steps=5, grad_accum=2, batch_size=4), [10, 30]) == 800
    assert planned_tokens(TrainingSection(), []) == 0


@pytest.mark.slow
def test_compiled_blocks_train_like_eager_ones_and_keep_their_names():
    """Compiling in place changes neither the module tree nor the numbers (fp32: to rounding)."""
    torch._dynamo.reset()
    eager = build(tiny_llama(VOCAB), {"type": "lora", "lora": {"r": 4, "dropout": 0.0}}).train()
    compiled = build(tiny_llama(VOCAB), {"type": "lora", "lora": {"r": 4, "dropout": 0.0}}).train()
    keys = list(compiled.state_dict())
    assert compile_blocks(compiled) == 2
    assert list(compiled.state_dict()) == keys
    for length in (10, 13):  # a second length must not fail (dynamic shapes)
        x = ids(batch=2, length=length)
        labels = x.clone()
        labels[:, :4] = -100
        for model in (eager, compiled):
            model.zero_grad(set_to_none=True)
        out = {}
        for name, model in (("eager", eager), ("compiled", compiled)):
            loss = trained_positions_loss(model.get_base_model(), {"input_ids": x, "attention_mask": torch.ones_like(x)}, labels)
            loss.backward()
            out[name] = (loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad})
        torch.testing.assert_close(out["compiled"][0], out["eager"][0], rtol=1e-5, atol=1e-6)
        for n, g in out["eager"][1].items():
            torch.testing.assert_close(out["compiled"][1][n], g, rtol=1e-4, atol=1e-6)
    with uncompiled(), torch.no_grad():  # evaluation/generation path: plain eager code, same numbers
        compiled.eval()
        eager.eval()
        x = ids(batch=1, length=7)
        torch.testing.assert_close(compiled(input_ids=x).logits, eager(input_ids=x).logits, rtol=1e-5, atol=1e-5)


def test_frozen_weights_get_their_own_storage_with_values_and_ties_kept(tmp_path):
    """After the cast nothing may view the loaded checkpoint's memory, so its mapping can go."""
    from tuneforge.models.load import load_model

    tiny_llama(VOCAB, tie=True).save_pretrained(tmp_path / "m")
    model = build(load_model(str(tmp_path / "m")), {"type": "lora", "lora": {"r": 2}})
    embed = model.get_input_embeddings().weight
    before = {n: (p.data_ptr(), p.detach().clone()) for n, p in model.named_parameters() if not p.requires_grad}
    store_frozen_linears(model, torch.bfloat16)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight is embed  # still tied
    for name, p in model.named_parameters():
        if name in before and p.dtype == torch.float32:
            ptr, value = before[name]
            assert p.data_ptr() != ptr, name  # its own storage now
            assert torch.equal(p, value), name

"""QLoRA: LoRA on a 4-bit NF4 base (bitsandbytes). CPU tests run where bitsandbytes' CPU backend is
installed; the CUDA test runs on a GPU and skips cleanly without one."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tests.methods.helpers import LAYERS, LINEARS, ids, logits, method, train_steps
from tuneforge.export.merge import merge_adapter
from tuneforge.methods import apply_method, count_parameters, load_method, save_method
from tuneforge.methods.qlora import bitsandbytes_available

needs_bnb = pytest.mark.skipif(
    not bitsandbytes_available(),
    reason="bitsandbytes is not installed (pip install 'tuneforge[qlora]')",
)

CFG = {
    "type": "qlora",
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    "qlora": {"compute_dtype": "fp32"},
}


def fp32_base(model_dir):
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


@needs_bnb
def test_qlora_quantises_the_base_and_trains_lora_after_an_eval_pass(tiny_model_dir):
    import bitsandbytes as bnb

    model = apply_method(fp32_base(tiny_model_dir), method(CFG))
    quantised = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantised) == LAYERS * len(LINEARS)
    assert quantised[0].weight.quant_state.quant_type == "nf4"
    trainable, _ = count_parameters(model)
    assert trainable == LAYERS * sum(4 * (i + o) for _, i, o in LINEARS)
    # The CPU trap: a no-grad forward in eval mode used to repack the 4-bit weights and cut gradients.
    logits(model, ids())
    model.train()
    x = ids(seed=11)
    model(input_ids=x, labels=x).loss.backward()
    # B starts at zero, so q/k/v's B only get a gradient if it flows back through the 4-bit o_proj.
    b_grads = {
        n: float(p.grad.abs().sum())
        for n, p in model.named_parameters()
        if "lora_B" in n
    }
    assert b_grads and all(g > 0 for g in b_grads.values()), [
        n for n, g in b_grads.items() if g == 0
    ][:3]
    model.zero_grad()
    before = {
        n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
    }
    train_steps(model, steps=2)
    for n, p in model.named_parameters():
        if n in before:
            assert not torch.equal(p, before[n]), f"{n} did not train"


@needs_bnb
def test_qlora_save_load_and_merge_into_full_precision_base(tiny_model_dir, tmp_path):
    model = apply_method(fp32_base(tiny_model_dir), method(CFG))
    train_steps(model, steps=2)
    x = ids(seed=3)
    trained = logits(model, x)
    save_method(model, tmp_path / "adapter", method(CFG))
    loaded = load_method(fp32_base(tiny_model_dir), tmp_path / "adapter", method(CFG))
    torch.testing.assert_close(
        logits(loaded, x), trained, atol=1e-6, rtol=0
    )  # re-quantised identically
    # The export merges into the unquantised base: equal to fp32 base + adapter, not to the 4-bit model.
    reference = PeftModel.from_pretrained(
        fp32_base(tiny_model_dir), str(tmp_path / "adapter")
    ).eval()
    merged = merge_adapter(loaded)
    assert not any("Linear4bit" in type(m).__name__ for m in merged.modules())
    torch.testing.assert_close(
        logits(merged, x), logits(reference, x), atol=1e-4, rtol=1e-4
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@needs_bnb
def test_qlora_trains_on_cuda(tiny_model_dir):
    cfg = {**CFG, "qlora": {"compute_dtype": "bf16"}}
    model = apply_method(fp32_base(tiny_model_dir), method(cfg))
    assert next(p for p in model.parameters() if p.requires_grad).device.type == "cuda"
    before = {
        n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
    }
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    x = ids().cuda()
    model.train()
    for _ in range(2):
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    assert all(
        not torch.equal(p, before[n])
        for n, p in model.named_parameters()
        if n in before
    )


@needs_bnb
def test_runner_loads_the_4bit_base_directly(tiny_model_dir):
    from tuneforge.methods import load_base_model
    from tuneforge.methods.qlora import is_quantized

    base = load_base_model(str(tiny_model_dir), method(CFG))
    assert is_quantized(base)
    assert sum(
        "Linear4bit" in type(m).__name__ for m in base.modules()
    ) == LAYERS * len(LINEARS)
    model = apply_method(
        base, method(CFG)
    )  # no second load: the quantised base is used as is
    assert model.get_base_model() is base


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(["amx_bf16"], torch.bfloat16), (["avx512_bf16"], torch.bfloat16), ([], torch.float32)],
    ids=["amx", "avx512-bf16", "avx2-only"],
)
def test_auto_compute_dtype_follows_the_cpu(monkeypatch, flags, expected):
    """bf16 is emulated (about 400x slower matmuls) on CPUs without native bf16: auto must pick fp32 there."""
    from tuneforge.config.schema import MethodSection
    from tuneforge.methods.qlora import compute_dtype
    from tuneforge.models import precision

    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)
    method = MethodSection(type="qlora")
    assert method.qlora.compute_dtype == "auto"
    assert compute_dtype(method, device="cpu") == expected
    assert compute_dtype(MethodSection(type="qlora", qlora={"compute_dtype": "bf16"}), device="cpu") == torch.bfloat16

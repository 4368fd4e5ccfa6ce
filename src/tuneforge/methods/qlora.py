"""QLoRA: LoRA on a frozen base stored as 4-bit NormalFloat (bitsandbytes).

The base weights take ~4.5 bits each instead of 32 (fp32) or 16, which is what lets a 7B model be
tuned on one consumer GPU. On CUDA this is bitsandbytes' native path. On CPU, bitsandbytes >= 0.50
ships a CPU backend; on this project's reference CPU (AVX512-BF16) it trains correctly, with one
trap handled here: in eval mode with no gradient, ``Linear4bit`` repacks its weights into a
CPU-inference layout, after which no gradient flows through the layer (the LoRA loss goes flat).
We switch that repacking off through the layer's public ``support_avx512bf16_for_cpu`` flag, so
evaluation during training cannot break the run. See docs/METHODS.md for the measured memory saving
and the alternatives tried (torchao, optimum-quanto).

The base is quantised while loading (``from_pretrained(..., quantization_config=...)``), the only
public path, so the model handed in is reloaded from its directory.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedModel

from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError
from tuneforge.methods.lora import apply_lora
from tuneforge.models.load import resolve_model
from tuneforge.models.precision import choose_precision

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def bitsandbytes_available() -> bool:
    """Whether the optional ``tuneforge[qlora]`` dependency imports (it may be absent, or fail on a platform)."""
    try:
        # lazy: bitsandbytes is an optional extra; importing it here is the availability probe itself
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True


def compute_dtype(method: MethodSection, device: str | None = None) -> torch.dtype:
    """The dtype 4-bit weights are dequantised to; ``auto`` follows the machine as ``training.precision: auto`` does.

    A fixed bf16 default made QLoRA unusable on CPUs without native bf16, where bf16 matmuls are emulated.
    """
    name = method.qlora.compute_dtype
    if name == "auto":
        name = choose_precision("auto", device).name
    return _DTYPES[name]


def quantization_config(method: MethodSection) -> BitsAndBytesConfig:
    q = method.qlora
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=compute_dtype(method),
    )


def load_quantized(source: str | Path, method: MethodSection) -> PreTrainedModel:
    """Load the model in ``source`` (a local HF directory) with a 4-bit base, ready for k-bit training."""
    if not bitsandbytes_available():
        raise ConfigError(
            "method.type 'qlora' needs bitsandbytes, which is not installed",
            hint="pip install 'tuneforge[qlora]' (bitsandbytes >= 0.50 has a CPU backend), or use method.type: lora",
        )
    if Path(source).exists() and not (Path(source) / "config.json").is_file():
        raise ConfigError(
            f"method.type 'qlora' quantises the base while loading it, but {source} is not a model directory with config.json",
            hint="use the built-in model, a local HF directory or a hub id (GGUF files are already quantised: use method.type lora on them)",
        )
    kwargs = (
        {"device_map": {"": torch.cuda.current_device()}}
        if torch.cuda.is_available()
        else {}
    )
    model = AutoModelForCausalLM.from_pretrained(
        str(source),
        quantization_config=quantization_config(method),
        dtype=torch.float32,
        **kwargs,
    )
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    keep_cpu_weights_trainable(model)
    return model


def keep_cpu_weights_trainable(model: torch.nn.Module) -> None:
    """Stop bitsandbytes' CPU inference repacking, which silently cuts gradients (see module docstring)."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def is_quantized(model: torch.nn.Module) -> bool:
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    return bool(
        getattr(base, "is_loaded_in_4bit", False)
        or getattr(base, "quantization_method", None)
    )


def load_quantized_base(spec: str) -> str:
    """The directory or hub id to load a 4-bit base from, for a user's model spec."""
    source = resolve_model(spec)
    if source.kind == "gguf":
        raise ConfigError(
            f"method.type 'qlora' quantises the base while loading it, but {spec} is a GGUF file (already quantised)",
            hint="use method.type lora on a GGUF model, or point model.name at the original HF model",
        )
    return source.path


def apply_qlora(model: PreTrainedModel, method: MethodSection) -> PeftModel:
    """LoRA on a 4-bit base. ``model`` is best already loaded quantised (:func:`load_quantized`, as
    the recipes do, so the full-precision weights never sit in memory); a full-precision model is
    re-loaded quantised from its directory."""
    if not is_quantized(model):
        use_cache = model.config.use_cache
        model = load_quantized(model.name_or_path, method)
        model.config.use_cache = use_cache
    return apply_lora(model, method)

"""Linear weights cast to the autocast dtype once per inference call instead of on every step.

Under bf16 (or fp16) autocast every matmul casts its fp32 weight on each call. Autocast caches a cast
only for a leaf weight that requires grad, which a frozen weight (an adapter run's base, a tied head)
never is, and under ``inference_mode`` the cache does not save a trainable one either (measured: a
fresh model's trainable head gained as much as a frozen one). In generation that is a cast of every
weight on **every decoding step**: a memory-bound copy as large as the weight, which at batch 1 costs
more than the matmul itself. Measured per call on a 2-core Intel Xeon with AMX (docs/SPEED.md, "AMX"):
a 1536 x 576 linear at batch 1 took 33 us in fp32 and 69 us from a stored bf16 weight, but 202-368 us
under autocast from its fp32 weight; the 49152 x 576 head 2.2 ms from bf16 against 24 ms.

Inside :func:`weights_cast_once` the plain ``nn.Linear`` layers compute from bf16 copies of their
fp32 weights and biases, made once; on exit the original parameters are put back, so ties (a head
sharing the input embedding), trainable weights and anything saved afterwards are unchanged. The
matmuls are bit-identical to autocast's own per-call cast (the same round-to-nearest conversion).

Where a copy could change a result or go stale, nothing is copied: no autocast; a weight that could
train inside the context (grad enabled and it requires grad); weights already in the autocast dtype
(the training speed plan stores frozen linears in bf16 for good, train/speed_plan.py); subclasses of
``nn.Linear`` (4-bit layers, peft layers hold other data; a plain LoRA's ``base_layer``, ``lora_A``
and ``lora_B`` are plain linears and are copied); and, for peft models with adapters other than plain
LoRA (DoRA reads its base weight outside a matmul), every layer but the output head. Models whose
parameters a sharding engine manages (FSDP, DTensor parameters, DeepSpeed ZeRO-3) get no copies at
all: those engines gather and re-assign the parameters around each forward, which a swapped
parameter would escape.

The copies cost memory while the call runs (half of the fp32 linear weights: 270 MB for the built-in
135M model). When they would take more than a quarter of the free memory where they live (the
system's available memory, or the CUDA device's free memory), only the output head is copied (the
largest single weight of a small model, and the one cast most).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from peft import PeftType
from torch import nn

from tuneforge.models.free_memory import free_memory_bytes

# Scopes of weights_cast_once: every eligible plain linear layer, only the output head, or nothing.
SCOPES = ("linears", "head", "none")
# Share of the available memory the copies may take before the scope falls back to the head only.
MEMORY_SHARE = 0.25


def _plain_head(model: nn.Module) -> nn.Linear | None:
    """The model's output head when it is a plain ``nn.Linear`` (peft-wrapped heads hold adapter weights)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    return head if type(head) is nn.Linear else None


def _plain_lora_or_none(model: nn.Module) -> bool:
    """No peft adapters, or only plain LoRA ones (whose layers compute from their weights only by matmul)."""
    configs = getattr(model, "peft_config", None)
    if not configs:
        return True
    return all(c.peft_type == PeftType.LORA and not getattr(c, "use_dora", False) for c in configs.values())


def _castable(module: nn.Linear) -> bool:
    weight = module.weight
    if weight is None or weight.dtype != torch.float32 or weight.device.type == "meta":
        return False
    grad = torch.is_grad_enabled()
    return not any(grad and p.requires_grad for p in module.parameters(recurse=False))


def _sharded(model: nn.Module) -> bool:
    """Whether a sharding engine manages ``model``'s parameters (FSDP, DTensor, DeepSpeed ZeRO-3)."""
    if not torch.distributed.is_available():
        return False
    # lazy: torch.distributed's submodules are not imported by `import torch` on every build
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.tensor import DTensor

    if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        return True
    return any(isinstance(p, DTensor) or hasattr(p, "ds_id") for p in model.parameters())


def castable_linears(model: nn.Module, scope: str = "linears") -> list[nn.Linear]:
    """The layers :func:`weights_cast_once` copies for ``scope`` (before the memory check)."""
    if scope not in SCOPES:
        raise ValueError(f"cast scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if scope == "none" or _sharded(model):
        return []
    head = _plain_head(model)
    if scope == "head" or not _plain_lora_or_none(model):
        return [head] if head is not None and _castable(head) else []
    return [m for m in model.modules() if type(m) is nn.Linear and _castable(m)]


def _copy_bytes(layers: list[nn.Linear], dtype: torch.dtype) -> int:
    """Bytes the ``dtype`` copies of ``layers``' parameters take, a shared parameter counted once."""
    unique = {id(p): p for layer in layers for p in layer.parameters(recurse=False)}
    return sum(p.numel() for p in unique.values()) * torch.empty((), dtype=dtype).element_size()


@contextmanager
def weights_cast_once(model: nn.Module, dtype: torch.dtype | None, scope: str = "linears") -> Iterator[int]:
    """Inside this, the eligible linear layers (module docstring) compute from ``dtype`` copies.

    Yields the bytes the copies take (0 when nothing was copied). A parameter shared by several layers
    is copied once. On exit, also after an error, every layer gets its original parameters back.
    """
    layers = castable_linears(model, scope) if dtype is not None else []
    if scope == "linears" and len(layers) > 1:
        available = free_memory_bytes(layers[0].weight.device)
        if available is not None and _copy_bytes(layers, dtype) > MEMORY_SHARE * available:
            layers = castable_linears(model, "head")
    copies: dict[int, nn.Parameter] = {}
    swapped: list[tuple[nn.Module, str, nn.Parameter]] = []
    try:
        for layer in layers:
            for name, param in list(layer.named_parameters(recurse=False)):
                copy = copies.get(id(param))
                if copy is None:
                    copy = copies[id(param)] = nn.Parameter(param.detach().to(dtype), requires_grad=False)
                swapped.append((layer, name, param))
                setattr(layer, name, copy)
        yield sum(c.numel() * c.element_size() for c in copies.values())
    finally:
        for layer, name, param in reversed(swapped):
            setattr(layer, name, param)

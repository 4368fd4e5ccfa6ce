"""Choosing the training precision.

``auto`` picks bf16 wherever the hardware does bf16 math natively (CUDA with bf16 support; CPUs with
AVX512-BF16 or AMX), because it is several times faster there and, as autocast with fp32 master
weights, trains as well as fp32. Everywhere else it picks fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16
    device: str  # cpu | cuda
    reason: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)


def cpu_bf16_flags() -> list[str]:
    """Native bf16 instruction-set flags of this CPU (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return [f for f in BF16_CPU_FLAGS if f in flags]


def choose_precision(requested: str, device: str | None = None) -> Precision:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if requested != "auto":
        if requested == "fp16" and device == "cpu":
            return Precision("bf16", device, "fp16 is not supported for CPU training; using bf16 instead")
        return Precision(requested, device, "set by training.precision")
    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", device, "CUDA device supports bf16")
        return Precision("fp16", device, "CUDA device without bf16; using fp16 with loss scaling")
    flags = cpu_bf16_flags()
    if flags:
        return Precision("bf16", device, f"CPU has native bf16 ({', '.join(flags)})")
    return Precision("fp32", device, "CPU has no native bf16 instructions")

"""How much memory is free where a tensor would be allocated, for code that makes temporary copies of
weights (merging adapters for inference, casting linears once per call) and must not run a machine
out of memory doing so."""

from __future__ import annotations

from pathlib import Path

import torch


def free_memory_bytes(device: torch.device) -> int | None:
    """Free memory on ``device``: CUDA's free device memory, else the system's MemAvailable from
    /proc/meminfo (Linux). None where it cannot be read (another OS, an unknown device type)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None

"""Speed options chosen for the machine at hand: native bf16, DataLoader workers."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

# /proc/cpuinfo flags of CPUs that compute bf16 natively; elsewhere autocast emulates it slowly.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16(accelerator: str = "cpu") -> bool:
    """Whether bf16 runs natively: a CUDA GPU that supports it, or a CPU with bf16 instructions."""
    if accelerator in ("gpu", "cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(NATIVE_BF16_FLAGS & cpu_flags())

"""Speed options chosen for the machine at hand: native bf16, DataLoader workers."""

from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# /proc/cpuinfo flags of CPUs that compute bf16 natively; elsewhere autocast emulates it slowly.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask (a container's, a job's share)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cores_per_process(processes: int) -> int:
    """This node's cores shared by its `processes` training processes, at least one each.

    Under SLURM each rank is a task with `--cpus-per-task` cores of its own.
    """
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return max(1, int(os.environ["SLURM_CPUS_PER_TASK"]))
    return max(1, usable_cores() // max(1, processes))


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


def warn_if_bf16_emulated(precision: str, accelerator: str) -> bool:
    """Warn when bf16 is asked for on a CPU that lacks bf16 instructions; True if it warned.

    There autocast emulates bf16, many times slower than fp32 (PITFALLS.md: seen on AVX2-only
    machines), so the setting would slow training down instead of speeding it up.
    """
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if not str(precision).startswith("bf16") or not on_cpu or native_bf16("cpu"):
        return False
    log.warning(
        "trainer.precision=%s on a CPU without native bf16 (no %s flag): bf16 is emulated and "
        "much slower than fp32 here; use trainer.precision=32-true",
        precision,
        " or ".join(sorted(NATIVE_BF16_FLAGS)),
    )
    return True

"""The machine at hand: cores, workers, batch shares, native bf16, glibc's memory settings."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from functools import cache
from pathlib import Path

from significance.errors import ConfigurationError

log = logging.getLogger(__name__)

# /proc/cpuinfo flags of CPUs that compute bf16 natively; elsewhere autocast emulates it slowly.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# mallopt parameters of glibc (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


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


def resolve_num_workers(num_workers: int | str, processes: int, cached: bool = False) -> int:
    """`auto`: the CPU cores left per training process of this node after it, at most 8.

    From the image cache a sample is a copy out of a memory map, so a worker pays off only with
    two cores to spare (measured: experiments/speed.md), and two are plenty.
    """
    if num_workers != "auto":
        return int(num_workers)
    spare = cores_per_process(processes) - 1
    if cached:
        return 0 if spare < 2 else 2
    return max(0, min(8, spare))


def check_global_batch(batch_size: int, world_size: int) -> None:
    """Refuse a global batch that the processes cannot share evenly."""
    if batch_size % world_size:
        raise ConfigurationError(
            f"data.batch_size={batch_size} is the global batch and must divide "
            f"evenly over trainer.devices x num_nodes = {world_size}"
        )


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
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(NATIVE_BF16_FLAGS & cpu_flags())


def warn_if_bf16_emulated(precision: str, accelerator: str) -> bool:
    """Warn when bf16 is asked for on a CPU that lacks bf16 instructions; True if it warned.

    There autocast emulates bf16, many times slower than fp32, so the setting would slow
    training down instead of speeding it up.
    """
    import torch

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


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the system.

    Every training step frees and reallocates the same large buffers; by default glibc unmaps
    each block above 32 MB and the next step faults it back in page by page (what that cost:
    experiments/speed.md). Returns False where libc is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):
        log.debug("mallopt is not available: memory settings left as they are")
        return False

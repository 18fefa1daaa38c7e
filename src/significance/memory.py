"""Process-wide memory settings that make CPU training faster."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt parameters of glibc (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the system.

    Every training step frees and reallocates the same large buffers (VGG16's 400 MB gradient
    of its first linear layer among them). By default glibc unmaps each block above 32 MB and
    the next step faults it back in page by page: on a 2-core CPU that was 40% of a VGG16 step
    at batch 32 (0.92 s -> 0.54 s with this setting). Returns False where libc is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):
        log.debug("mallopt is not available: memory settings left as they are")
        return False

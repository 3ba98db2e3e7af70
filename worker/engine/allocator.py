"""Keep freed memory in the process instead of handing it back to the kernel at every step.

A decode step allocates and frees the same large buffers over and over: the logits of a 128-row batch
(25 MB in float32), the sampler's copies of them, the KV cache rows kept when finished rows leave, the
attention kernel's accumulators. glibc's malloc serves blocks above its mmap threshold with a fresh ``mmap``
and gives them back with ``munmap`` when freed, and trims the top of its heap whenever more than its trim
threshold is free, so the next step touches new pages and pays a page fault per 4 KiB (the profile's
``fill_`` and ``copy_`` time, much of the sampler's). Its dynamic threshold only adapts after a block has
been freed, and trimming still returns the heap's top.

:func:`retain_freed_memory` raises both thresholds once per process (``mallopt``), so those buffers are
reused from the heap. Nothing computed changes (PyTorch aligns its buffers itself); the cost is that up to
``trim_threshold`` bytes of freed memory stay with the process rather than going back to the system.
Elsewhere than glibc (macOS, musl) it does nothing and says so in the debug log.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit systems.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024

_applied = False


def retain_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Raise glibc's mmap and trim thresholds for this process; ``True`` when they are set (now or before)."""
    global _applied
    if _applied:
        return True
    mallopt = _glibc_mallopt()
    if mallopt is None:
        logger.debug("not glibc: the allocator's thresholds are left as they are")
        return False
    # The mmap threshold first: glibc refuses one above its limit and then changes nothing, while a trim threshold
    # is always taken and turns off the dynamic mmap threshold, which alone would be worse than the default.
    if not mallopt(M_MMAP_THRESHOLD, mmap_threshold):
        logger.warning("mallopt refused an mmap threshold of %d bytes; the allocator is left as it is", mmap_threshold)
        return False
    if not mallopt(M_TRIM_THRESHOLD, trim_threshold):
        logger.warning("mallopt refused a trim threshold of %d bytes (the mmap threshold is set)", trim_threshold)
        return False
    _applied = True
    logger.debug("allocator keeps freed memory: mmap threshold %d, trim threshold %d", mmap_threshold, trim_threshold)
    return True


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: its C library among them
        libc.gnu_get_libc_version  # only glibc has it  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt  # type: ignore[no-any-return]

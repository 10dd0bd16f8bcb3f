"""Keeps glibc's allocator from holding on to the memory of large answers.

glibc serves allocations above its mmap threshold with their own mappings and returns them on
free, but it raises that threshold each time such a block is freed (up to 32 MiB). After a few
large upstream answers (the gateway reads up to 32 MiB), every later large buffer comes from the
heap instead, and a fragmented heap is not given back: a worker that once relayed a burst of
huge answers stays at a gigabyte of resident memory. A fixed threshold turns the adjustment
off. Chat answers and stream chunks are far below it, so the hot path never pays a system call
for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

logger = logging.getLogger(__name__)

# mallopt parameters, from glibc's malloc.h.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold; False where the C library is not glibc (or refuses)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    library = ctypes.util.find_library("c")
    if library is None:
        return False
    libc = ctypes.CDLL(library)
    applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not applied:
        logger.warning("glibc refused the allocator settings; large answers may inflate memory")
    return applied

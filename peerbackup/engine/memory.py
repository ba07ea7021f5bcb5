"""Process memory tuning for the backup pipeline (glibc only; elsewhere a no-op).

glibc raises its mmap threshold each time a large block is freed, after which
chunk- and pack-sized buffers come from the heap arenas of the worker threads
and stay resident after they are freed. Fixing the threshold keeps buffers of
MMAP_THRESHOLD and up in their own mappings, returned to the system on free,
and a single arena lets every thread reuse the chunk-sized buffers others
freed. Measured on the 1 GiB office set: peak RSS 156 -> ~128 MiB; a 1 MiB
threshold gives ~112 MiB but costs a second of page faults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 4 * 1024 * 1024
_done = False


def tune_allocator(threshold: int = MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold; True if it was applied."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # musl and others: no mallopt, nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # One arena: freed chunk buffers are reused by whichever thread allocates next
    # instead of piling up in per-thread arenas.
    mallopt(_M_ARENA_MAX, 1)
    _done = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    return _done

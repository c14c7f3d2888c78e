"""Process-wide tuning of the C allocator for streaming large frames.

A frame's buffers (6 MB at 1080p, 25 MB at 4K) are allocated and freed up to 60 times a second
on each side of a session. glibc serves blocks that large with mmap and unmaps them when they
are freed, so every new buffer faults its pages in again, zeroed by the kernel. Raising the
thresholds keeps such blocks in the heap, where the next frame reuses them. One run of
`ra-bench e2e --workload full --seconds 5` (1080p, every process of it) took 160,960 minor page
faults with this and 446,358 without; the CPU a frame moved by 2 to 3 % (sharer 14.2 ms
against 14.5, client 10.1 against 10.4), within the machine's noise.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks below this come from the heap: a 4K screen sent whole (25 MB) with room to spare.
# The largest frames (8K) still get their own mapping.
MMAP_THRESHOLD = 64 * 1024 * 1024
# Free memory at the top of the heap is handed back to the system past this much: a session
# keeps what it reuses, not every peak.
TRIM_THRESHOLD = 128 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Tune malloc as the module says, for this process; False where the C library has no
    such knobs (the program then works as before, a little slower on large frames)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

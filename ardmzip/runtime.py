"""Process-wide settings for ardmzip's own processes (the CLI and its worker processes).

Not applied on ``import ardmzip``: a library should not change how its host process
allocates memory. Here it pays: the trunk allocates and frees multi-megabyte tensors many
times per network call, and glibc hands blocks that large to mmap, so every call gets fresh
pages from the kernel and faults them in again (~650,000 minor page faults per network
call on a 0.47 MP photo). Keeping freed memory in the heap cut them to ~170,000 and a
network call's time by ~10% (1.15 -> 1.03 s, same integers), for 8-15% more peak memory
(benchmarks/results/2026-11-30-speed-v5).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks below 1 GiB from the heap and not to return freed heap memory
    to the kernel while the process runs. True if applied (Linux with glibc), else a no-op."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):        # musl and others have no mallopt: nothing to tune
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))

"""Compiled CPU kernels (numba): what torch would do in several passes over memory, in one.

numba is a dependency (it compiles to machine code through LLVM, which beats keeping a C
extension and a compiler on every machine); if it cannot be imported, or ARDMZIP_JIT=0, every
caller falls back to its torch path, which computes the same integers. Starting numba costs a
process ~0.9 s (its import, then its compiler's first start even for cached kernels) and
~100 MB, more than it saves on a small job, so by default a process switches to the kernels
once the codec has announced WARM_AFTER pixel-steps of work (``expect``: pixels x steps of
each batch it codes) and stays there: a photo of 0.13 MP or more at once, a dataset within
its first ~130 thumbnails, a lone thumbnail never. ``start()`` switches now (long jobs,
benchmarks' warm-up); ARDMZIP_JIT=1 uses the kernels from the start (the tests), 0 never.
"""
from __future__ import annotations

import functools
import os
import threading

import numpy as np

# numba's default thread pool (workqueue) must not be entered by two threads at once
LOCK = threading.Lock()


@functools.cache
def numba():
    """The numba module, or None where it cannot be imported."""
    try:
        import numba as nb
    except ImportError:                # pragma: no cover - depends on the installation
        return None
    return nb


def installed() -> bool:
    return numba() is not None


WARM_AFTER = 1 << 21       # pixel-steps: where the kernels' savings (~0.45 us each) pass the start
_state = {"seen": 0, "warm": False}


def available() -> bool:
    """Whether the compiled kernels run now: ARDMZIP_JIT=1, or by default once ``use`` has
    switched this process to them (never with ARDMZIP_JIT=0 or without numba)."""
    mode = os.environ.get("ARDMZIP_JIT", "")
    if mode == "0":
        return False
    return (mode == "1" or _state["warm"]) and installed()


def expect(work: int) -> None:
    """Count ``work`` pixel-steps (a batch about to be coded) towards the switch."""
    if not _state["warm"]:
        _state["seen"] += work
        if _state["seen"] >= WARM_AFTER:
            start()


def start() -> bool:
    """Switch this process to the kernels now (where numba is installed); whether it did."""
    if installed():
        _state["warm"] = True
    return _state["warm"]


def njit(parallel: bool = False, inline: bool = False):
    """numba.njit with ardmzip's settings (cached, no GIL), or the plain function without numba."""
    def wrap(fn):
        nb = numba()
        if nb is None:
            return fn
        if inline:
            return nb.njit(inline="always")(fn)
        try:
            return nb.njit(parallel=parallel, cache=True, nogil=True)(fn)
        except RuntimeError:            # no writable cache directory anywhere: compiled per process
            return nb.njit(parallel=parallel, nogil=True)(fn)
    return wrap


def run(kernel, *args):
    """A parallel kernel on as many threads as torch uses (torch.set_num_threads, the CLI's
    -T), under the lock: numba's default thread pool must not be entered twice at once."""
    import torch
    nb = numba()
    with LOCK:
        nb.set_num_threads(max(1, min(torch.get_num_threads(), nb.config.NUMBA_NUM_THREADS)))
        return kernel(*args)


@functools.cache
def _add_kernel():
    return njit()(_add_clamped_int8)


@functools.cache
def _add_in_place_kernel():
    return njit()(_add_clamped_int8_in_place)


def _add_clamped_int8(x, conv, out):                # pragma: no cover - compiled
    for i in range(x.size):          # int16 throughout and ternaries: what LLVM vectorizes (3x)
        a, b = np.int16(x[i]), np.int16(conv[i])
        b = b if b > -127 else np.int16(-127)
        s = np.int16(a + b)
        s = s if s > -127 else np.int16(-127)
        out[i] = np.int8(s if s < 127 else np.int16(127))


def _add_clamped_int8_in_place(x, conv):           # pragma: no cover - compiled
    for i in range(x.size):
        a, b = np.int16(x[i]), np.int16(conv[i])
        b = b if b > -127 else np.int16(-127)
        s = np.int16(a + b)
        s = s if s > -127 else np.int16(-127)
        x[i] = np.int8(s if s < 127 else np.int16(127))


def add_clamped_int8(x: np.ndarray, conv: np.ndarray, out: np.ndarray) -> None:
    """out = clamp(x + clamp(conv, -127, 127), -127, 127) for 1-D int8 arrays (out may be x)."""
    if x.ctypes.data == out.ctypes.data and x.shape == out.shape:
        _add_in_place_kernel()(x, conv)     # in place: one array, a loop LLVM vectorizes (out
    else:                                   # aliasing x fails its overlap check: scalar, 3x slower)
        _add_kernel()(x.copy() if np.shares_memory(x, out) else x, conv, out)

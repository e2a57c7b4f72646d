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


def pitched(t) -> tuple[np.ndarray, int, int] | None:
    """A channels-last int8 view t (B, C, N, W) whose B N rows of W C elements lie ``pitch``
    elements apart (a buffer with zero columns either side of each row, or contiguous:
    pitch = W C) as (a flat numpy view from its first element, W C, pitch); None otherwise."""
    import torch
    b, c, n, w = t.shape
    if t.numel() == 0 or t.stride(1) != 1 or (w > 1 and t.stride(3) != c):
        return None
    pitch = t.stride(2) if n > 1 else (t.stride(0) if b > 1 else w * c)
    if pitch < w * c or (b > 1 and n > 1 and t.stride(0) != n * pitch):
        return None
    span = (b * n - 1) * pitch + w * c
    return torch.as_strided(t, (span,), (1,), t.storage_offset()).numpy(), w * c, pitch


def add_clamped_relu_int8(x: np.ndarray, conv: np.ndarray, out: np.ndarray | None, relu: np.ndarray,
                          n: int = 0, pitch: int = 0) -> None:
    """out = clamp(x + clamp(conv, -127, 127), -127, 127) and relu = max(out, 0) for 1-D int8
    arrays, in one pass (the next layer's input with the stream: no pass of its own); ``out``
    None: the ReLU alone. ``pitch`` > ``n``: relu's rows of n elements lie ``pitch`` apart
    (``pitched``), the others' are contiguous. Inputs that overlap an output are copied
    first (then every element reads the inputs' own values, and no loop falls back from
    vectors to scalars)."""
    from . import stream_jit         # (numba is imported on first use)
    outs = [relu] if out is None else [out, relu]
    x, conv = (a.copy() if any(np.may_share_memory(a, o) for o in outs) else a for a in (x, conv))
    if pitch > n:
        if out is None:
            run(stream_jit.add_clamped_relu_only_rows, x, conv, relu, n, pitch)
        else:
            run(stream_jit.add_clamped_relu_rows, x, conv, out, relu, n, pitch)
    elif out is None:
        run(stream_jit.add_clamped_relu_only, x, conv, relu)
    else:
        run(stream_jit.add_clamped_relu, x, conv, out, relu)


def scaled_floor_relu_int8(acc: np.ndarray, scale: np.ndarray, lo: int, hi: int, out: np.ndarray,
                           relu: np.ndarray, w: int = 0, pitch: int = 0) -> None:
    """out = clamp(floor(acc * scale), lo, hi) and relu = max(out, 0), int8, in one pass:
    acc (N, C) float32 integers, scale (C,) float32 powers of two, -128 <= lo <= hi <= 127.
    ``pitch`` > ``w``: relu's rows of w pixels start ``pitch`` pixels apart (``pitched``)."""
    from . import stream_jit
    if pitch > w:
        run(stream_jit.scaled_floor_relu_rows, acc, scale, np.float32(lo), np.float32(hi), out, relu, w, pitch)
    else:
        run(stream_jit.scaled_floor_relu, acc, scale, np.float32(lo), np.float32(hi), out, relu)

"""The int8 residual stream's addition as compiled CPU kernels (model._add_clamped_relu).

out = clamp(x + clamp(conv, -127, 127), -127, 127) and relu = max(out, 0) in one pass: the
stream for the layer after next and the ReLU the next layer reads, for the cost of about one
torch pass of the three this takes there. Memory-bound, so the loop is split into spans over
numba's threads (2x on two cores against one); each span is a serial function, whose loop
LLVM vectorizes (a loop inside prange's body does not). Elementwise, so the values do not
depend on the thread count. Imported only where numba is (jit.add_clamped_relu_int8).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .jit import njit

SPAN = 1 << 15       # elements per parallel task


@njit()
def _add_span(x, conv, out, relu):                  # pragma: no cover - compiled
    for i in range(x.size):          # int16 throughout and ternaries: what LLVM vectorizes (3x)
        a, b = np.int16(x[i]), np.int16(conv[i])
        b = b if b > -127 else np.int16(-127)
        s = np.int16(a + b)
        s = s if s > -127 else np.int16(-127)
        s = s if s < 127 else np.int16(127)
        out[i] = np.int8(s)
        relu[i] = np.int8(s if s > 0 else np.int16(0))


@njit()
def _relu_span(x, conv, relu):                      # pragma: no cover - compiled
    for i in range(x.size):
        a, b = np.int16(x[i]), np.int16(conv[i])
        b = b if b > -127 else np.int16(-127)
        s = np.int16(a + b)
        s = s if s > 0 else np.int16(0)
        relu[i] = np.int8(s if s < 127 else np.int16(127))


@njit(parallel=True)
def add_clamped_relu(x, conv, out, relu):           # pragma: no cover - compiled
    """1-D int8 arrays, no output overlapping an input."""
    n = x.size
    for j in prange((n + SPAN - 1) // SPAN):
        lo, hi = j * SPAN, min(n, (j + 1) * SPAN)
        _add_span(x[lo:hi], conv[lo:hi], out[lo:hi], relu[lo:hi])


@njit(parallel=True)
def add_clamped_relu_only(x, conv, relu):           # pragma: no cover - compiled
    """``add_clamped_relu`` without the stream: relu = clamp(x + clamp(conv, -127, 127), 0, 127)."""
    n = x.size
    for j in prange((n + SPAN - 1) // SPAN):
        lo, hi = j * SPAN, min(n, (j + 1) * SPAN)
        _relu_span(x[lo:hi], conv[lo:hi], relu[lo:hi])


@njit()
def _floor_span(acc, scale, lo, hi, out, relu):     # pragma: no cover - compiled
    for p in range(acc.shape[0]):
        for o in range(acc.shape[1]):
            q = min(max(np.floor(acc[p, o] * scale[o]), lo), hi)
            out[p, o] = np.int8(q)
            relu[p, o] = np.int8(max(q, np.float32(0)))


@njit(parallel=True)
def scaled_floor_relu(acc, scale, lo, hi, out, relu):  # pragma: no cover - compiled
    """out = clamp(floor(acc * scale), lo, hi) as int8 and relu = max(out, 0): acc (N, C)
    float32 integers, scale (C,) float32 powers of two (exact), lo, hi float32 within int8."""
    n = acc.shape[0]
    rows = max(1, SPAN // max(1, acc.shape[1]))
    for j in prange((n + rows - 1) // rows):
        a, e = j * rows, min(n, (j + 1) * rows)
        _floor_span(acc[a:e], scale, lo, hi, out[a:e], relu[a:e])


# Row-pitched forms: the output ReLU (the next convolution's input) lives in a buffer whose
# rows carry zero columns either side, so that the convolution needs no padding of its own
# (oneDNN's int8 convolution runs ~30% faster on an input padded beforehand). Its row r
# starts at element r * pitch; the other arrays are contiguous rows of n elements.

@njit(parallel=True)
def add_clamped_relu_rows(x, conv, out, relu, n, pitch):   # pragma: no cover - compiled
    for r in prange(x.size // n):
        a, p = r * n, r * pitch
        _add_span(x[a:a + n], conv[a:a + n], out[a:a + n], relu[p:p + n])


@njit(parallel=True)
def add_clamped_relu_only_rows(x, conv, relu, n, pitch):   # pragma: no cover - compiled
    for r in prange(x.size // n):
        a, p = r * n, r * pitch
        _relu_span(x[a:a + n], conv[a:a + n], relu[p:p + n])


@njit(parallel=True)
def scaled_floor_relu_rows(acc, scale, lo, hi, out, relu, w, pitch):  # pragma: no cover - compiled
    """acc, out (rows * w, C); relu (., C) with row r from pixel r * pitch."""
    for r in prange(acc.shape[0] // w):
        a, p = r * w, r * pitch
        _floor_span(acc[a:a + w], scale, lo, hi, out[a:a + w], relu[p:p + w])

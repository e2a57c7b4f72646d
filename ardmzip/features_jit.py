"""The context features (features.py) as two compiled CPU kernels: the same integers, 4-6x faster.

features.FeatureState computes the features with ~100 whole-tensor torch operations per band
(window sums, means, the cross-channel fit, the concatenation), each a pass over memory;
on a 2-core CPU that was ~40% of coding time. Here one pass per pixel computes all of it
from a channels-last integral image, and writes the 45 features straight into the network's
(channels-last) input. numba compiles the kernels once (cached next to this file).

Exactness. Everything is integer arithmetic: sums and products in int64, every floor division
floor(p / q) computed as floor(fl64(p / q)) with |p| < 2^53 (exact: a non-integer p / q lies at
least 1 / q from any integer, and fl64 moves it by at most |p / q| 2^-53 < 1 / q). The
integral image is int32 with wrap-around: a window's sum is a difference of four entries,
and modulo 2^32 that difference is the window's true sum, which is below 2^31 (at most
961 x 65025 for a sum of squares), so wrapping it back to int32 gives it exactly. Each pixel
is computed on its own, so the result does not depend on the thread count or band size. The
tests compare every feature and anchor with features.py's torch path.

Layout of the integral, (B, H + 1, W + 1, 24): I[b, y, x, c] = sum of statistic c over rows
< y and columns < x. Statistics (features.FeatureState.both): v*m (3), m (3), then for each
channel pair (a, b) of features.CHANNEL_PAIRS: both revealed (3), a, b, a^2, b^2, a*b (3 each).
"""
from __future__ import annotations

import numpy as np

from . import jit
from .jit import njit

from numba import prange              # (this module is imported only where numba is: jit.available)

STATS = 24


@njit(parallel=True)
def _integral(v, m, out):                                  # pragma: no cover - compiled
    """v, m: (B, 3, H, W) uint8; out: (B, H + 1, W + 1, 24) int32, filled (wrapping). One
    parallel loop over every picture's rows, then one over every picture's column chunks (a
    batch of thumbnails is two parallel loops, not two per thumbnail)."""
    nb, _, h, w = v.shape
    for b in range(nb):
        out[b, 0, :, :] = 0
    for job in prange(nb * h):              # row prefix sums, rows independent
        b, y = job // h, job % h
        row = out[b, y + 1]
        row[0, :] = 0
        acc = np.zeros(STATS, np.int64)
        for x in range(w):
            m0, m1, m2 = np.int64(m[b, 0, y, x]), np.int64(m[b, 1, y, x]), np.int64(m[b, 2, y, x])
            a0, a1, a2 = v[b, 0, y, x] * m0, v[b, 1, y, x] * m1, v[b, 2, y, x] * m2
            p01, p02, p12 = m0 * m1, m0 * m2, m1 * m2
            s0, s1, s2 = a0 * p01, a0 * p02, a1 * p12            # pair (a, b): a where both shown
            t0, t1, t2 = a1 * p01, a2 * p02, a2 * p12            # and b
            acc[0] += a0; acc[1] += a1; acc[2] += a2
            acc[3] += m0; acc[4] += m1; acc[5] += m2
            acc[6] += p01; acc[7] += p02; acc[8] += p12
            acc[9] += s0; acc[10] += s1; acc[11] += s2
            acc[12] += t0; acc[13] += t1; acc[14] += t2
            acc[15] += s0 * s0; acc[16] += s1 * s1; acc[17] += s2 * s2
            acc[18] += t0 * t0; acc[19] += t1 * t1; acc[20] += t2 * t2
            acc[21] += s0 * t0; acc[22] += s1 * t1; acc[23] += s2 * t2
            for c in range(STATS):
                row[x + 1, c] = acc[c]          # int64 -> int32 keeps the low 32 bits
    width = (w + 1) * STATS                     # then down the columns, chunks independent
    chunk = 4096
    chunks = (width + chunk - 1) // chunk
    for job in prange(nb * chunks):
        b, j = job // chunks, job % chunks
        flat = out[b].reshape((h + 1, width))
        lo, hi = j * chunk, min(width, (j + 1) * chunk)
        for y in range(1, h + 1):
            for i in range(lo, hi):
                flat[y, i] = flat[y, i] + flat[y - 1, i]


def _box(integral, b, y0, y1, x0, x1, c):          # pragma: no cover - compiled
    """Sum of statistic c over rows y0..y1-1, columns x0..x1-1 (exact: see the module docstring)."""
    s = (np.int64(integral[b, y1, x1, c]) - np.int64(integral[b, y0, x1, c])
         - np.int64(integral[b, y1, x0, c]) + np.int64(integral[b, y0, x0, c]))
    return np.int64(np.int32(s))


def _fdiv(p, q):                                   # pragma: no cover - compiled
    """floor(p / q) for int64 p, q > 0 with |p| < 2^53 (module docstring)."""
    return np.int64(np.floor(np.float64(p) / np.float64(q)))


def _rdiv(p, q):                                   # pragma: no cover - compiled
    """round(p / q), halves up, as features._round_div: floor((2p + q) / 2q)."""
    return _fdiv(2 * p + q, 2 * q)


_box, _fdiv, _rdiv = (njit(inline=True)(f) for f in (_box, _fdiv, _rdiv))

RADII = (1, 3, 7, 15)
PAIR_A = (0, 0, 1)
PAIR_B = (1, 2, 2)


@njit(parallel=True)
def _rows(v, m, integral, r0, r1, cross, feats, anchors):     # pragma: no cover - compiled
    """Features of rows r0..r1-1: feats (B, r1 - r0, W, 45) float32 (any strides),
    anchors (B, 3, r1 - r0, W) int32; ``cross``: the cross-channel anchor."""
    nb, _, h, w = v.shape
    n = r1 - r0
    for job in prange(nb * n):
        b, yy = job // n, job % n
        y = r0 + yy
        own_v = np.zeros(3, np.int64)
        own_m = np.zeros(3, np.int64)
        means = np.zeros((4, 3), np.int64)
        counts = np.zeros((4, 3), np.int64)
        anchor = np.zeros(3, np.int64)
        total = np.zeros(3, np.int64)
        count = np.zeros(3, np.int64)
        for x in range(w):
            for c in range(3):
                own_m[c] = m[b, c, y, x]
                own_v[c] = np.int64(v[b, c, y, x]) * own_m[c]
            for c in range(3):
                anchor[c] = 128
            for ri in range(3, -1, -1):             # largest first, so the smallest non-empty wins
                r = RADII[ri]
                y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, h), max(x - r, 0), min(x + r + 1, w)
                for c in range(3):
                    s = _box(integral, b, y0, y1, x0, x1, c) - own_v[c]
                    k = _box(integral, b, y0, y1, x0, x1, 3 + c) - own_m[c]
                    mean = _rdiv(s, max(k, 1))
                    means[ri, c] = mean
                    counts[ri, c] = k
                    if k > 0:
                        anchor[c] = mean
            if cross:
                for c in range(3):
                    total[c] = 0
                    count[c] = 0
                for p in range(3):
                    a, bb = PAIR_A[p], PAIR_B[p]
                    pm = own_m[a] * own_m[bb]
                    oa, ob = own_v[a] * pm, own_v[bb] * pm
                    nn = np.int64(0)
                    sa = sb = saa = sbb = sab = np.int64(0)
                    for ri in range(4):             # the smallest window with any pair
                        r = RADII[ri]
                        y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, h), max(x - r, 0), min(x + r + 1, w)
                        nn = _box(integral, b, y0, y1, x0, x1, 6 + p) - pm
                        if nn > 0:
                            sa = _box(integral, b, y0, y1, x0, x1, 9 + p) - oa
                            sb = _box(integral, b, y0, y1, x0, x1, 12 + p) - ob
                            saa = _box(integral, b, y0, y1, x0, x1, 15 + p) - oa * oa
                            sbb = _box(integral, b, y0, y1, x0, x1, 18 + p) - ob * ob
                            sab = _box(integral, b, y0, y1, x0, x1, 21 + p) - oa * ob
                            break
                    if nn == 0:
                        continue
                    cov = nn * sab - sa * sb
                    for d in range(2):              # a from b, then b from a
                        if d == 0:
                            tgt, src, s_t, s_s, s_ss = a, bb, sa, sb, sbb
                        else:
                            tgt, src, s_t, s_s, s_ss = bb, a, sb, sa, saa
                        if own_m[src] == 0:
                            continue
                        var = nn * s_ss - s_s * s_s
                        slope = np.int64(16)
                        if var > 0:
                            slope = min(max(_fdiv(16 * cov, var), 0), 16)
                        pred = _rdiv(16 * s_t + slope * (nn * own_v[src] - s_s), 16 * nn)
                        total[tgt] += min(max(pred, 0), 255)
                        count[tgt] += 1
                for c in range(3):
                    if count[c] > 0:
                        anchor[c] = _rdiv(total[c], count[c])
            out = feats[b, yy, x]
            for c in range(3):
                out[c] = own_m[c] * 64
                out[3 + c] = min(max((own_v[c] - anchor[c]) * own_m[c], -255), 255)
                out[6 + c] = anchor[c] - 128
                anchors[b, c, yy, x] = anchor[c]
            for ri in range(4):
                r = RADII[ri]
                area = (2 * r + 1) * (2 * r + 1) - 1
                base = 9 + 9 * ri
                for c in range(3):
                    k = counts[ri, c]
                    has = 1 if k > 0 else 0
                    out[base + c] = has * 64
                    out[base + 3 + c] = min(max((means[ri, c] - anchor[c]) * has, -255), 255)
                    out[base + 6 + c] = min(_fdiv(k * 64, area), 255)


def integral(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The (B, H + 1, W + 1, 24) int32 integral image of values ``v`` and mask ``m``
    ((B, 3, H, W) uint8, C-contiguous)."""
    nb, _, h, w = v.shape
    out = np.empty((nb, h + 1, w + 1, STATS), np.int32)
    jit.run(_integral, v, m, out)
    return out


def rows(v: np.ndarray, m: np.ndarray, integral_image: np.ndarray, r0: int, r1: int, cross: bool,
         feats: np.ndarray, anchors: np.ndarray) -> None:
    """Fill ``feats`` ((B, r1 - r0, W, 45) float32 view) and ``anchors`` ((B, 3, r1 - r0, W)
    int32) with the features of rows r0..r1-1."""
    jit.run(_rows, v, m, integral_image, r0, r1, cross, feats, anchors)


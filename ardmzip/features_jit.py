"""The context features (features.py) as two compiled CPU kernels: the same integers, 4-6x faster.

features.FeatureState computes the features with ~100 whole-tensor torch operations per band
(window sums, means, the cross-channel fit, the concatenation), each a pass over memory;
on a 2-core CPU that was ~40% of coding time. Here one kernel extends an integral image down
to the rows asked for (``Integral``: a ring of rows, not the whole picture's), and another
computes every feature of a band from it, a loop along each row at a time (vectorised), and
writes the 45 features into the network's (channels-last) input. numba compiles the kernels
once (cached next to this file).

Exactness. Everything is integer arithmetic: sums and products in int64, every floor division
floor(p / q) computed as floor(fl64(p / q)) with |p| < 2^53 (exact: a non-integer p / q lies at
least 1 / q from any integer, and fl64 moves it by at most |p / q| 2^-53 < 1 / q). The
integral image is int32 with wrap-around: a window's sum is a difference of four entries,
and modulo 2^32 that difference is the window's true sum, which is below 2^31 (at most
961 x 65025 for a sum of squares), so wrapping it back to int32 gives it exactly. Each pixel
is computed on its own, so the result does not depend on the thread count or band size. The
tests compare every feature and anchor with features.py's torch path.

Layout of the integral, (B, slots, 24, W + 1 + 2 PAD): I[b, y % slots, c, PAD + x] = sum of
statistic c over rows < y and columns < x, statistic-major so that a row's window sums are
contiguous loads. Statistics (features.FeatureState.both): v*m (3), m (3), then for each
channel pair (a, b) of features.CHANNEL_PAIRS: both revealed (3), a, b, a^2, b^2, a*b (3 each).
"""
from __future__ import annotations

import threading

import numpy as np

from . import jit
from .features import N_FEATURES
from .jit import njit

from numba import prange              # (this module is imported only where numba is: jit.available)

STATS = 24
RADII = (1, 3, 7, 15)
PAIR_A = (0, 0, 1)
PAIR_B = (1, 2, 2)
PAD = 15        # the largest radius: integral column x sits at x + PAD, so no window clamps a column
BLOCK = 4       # rows per parallel job (one scratch allocation each)


def _stat_row(v, m, b, y, c, out):                       # pragma: no cover - compiled
    """out[x] = statistic c of pixel (y, x) (module docstring), for every x of the row."""
    group, i = c // 3, c % 3
    if group == 0:                          # v m
        for x in range(out.shape[0]):
            out[x] = np.int64(v[b, i, y, x]) * np.int64(m[b, i, y, x])
    elif group == 1:                        # m
        for x in range(out.shape[0]):
            out[x] = np.int64(m[b, i, y, x])
    else:                                   # pair i = (a, b'): both shown, a, b', a^2, b'^2, a b'
        ca, cb = PAIR_A[i], PAIR_B[i]
        for x in range(out.shape[0]):
            ma, mb = np.int64(m[b, ca, y, x]), np.int64(m[b, cb, y, x])
            pm = ma * mb
            sa = np.int64(v[b, ca, y, x]) * ma * pm           # a where both shown
            sb = np.int64(v[b, cb, y, x]) * mb * pm           # and b'
            if group == 2:
                out[x] = pm
            elif group == 3:
                out[x] = sa
            elif group == 4:
                out[x] = sb
            elif group == 5:
                out[x] = sa * sa
            elif group == 6:
                out[x] = sb * sb
            else:
                out[x] = sa * sb


_stat_row = njit(inline=True)(_stat_row)


@njit(parallel=True)
def _extend(v, m, ring, y0, y1):                           # pragma: no cover - compiled
    """Integral rows y0..y1-1 into ``ring`` ((B, R, 24, W + 1 + 2 PAD) int32, row y in slot
    y % R), row y0 - 1 being there already (or y0 = 0). Row y is row y - 1 plus the prefix sums
    of picture row y - 1 (wrapping); each row is padded with PAD copies of its first entry (0)
    before and of its last after, so that clamping a window to the picture needs no clamped
    column. One job per picture and statistic: its rows are a chain, its statistics are not."""
    nb, _, h, w = v.shape
    slots, width = ring.shape[1], ring.shape[3]
    for job in prange(nb * STATS):          # (indices, not row views: a thumbnail's rows are short)
        b, c = job // STATS, job % STATS
        stat = np.empty(w, np.int64)
        for y in range(y0, y1):
            s = y % slots
            if y == 0:
                for x in range(width):
                    ring[b, s, c, x] = 0
                continue
            above = (y - 1) % slots
            _stat_row(v, m, b, y - 1, c, stat)
            for x in range(PAD + 1):
                ring[b, s, c, x] = 0
            acc = np.int64(0)
            for x in range(w):
                acc += stat[x]
                ring[b, s, c, PAD + 1 + x] = np.int64(ring[b, above, c, PAD + 1 + x]) + acc   # low 32 bits
            last = ring[b, s, c, PAD + w]
            for x in range(PAD + 1 + w, width):
                ring[b, s, c, x] = last


def _box(integral, b, y0, y1, x0, x1, c):          # pragma: no cover - compiled
    """Sum of statistic c over rows y0..y1-1, columns x0..x1-1 (x0 >= -PAD, x1 <= W + PAD; exact:
    see the module docstring)."""
    slots = integral.shape[1]
    y0, y1 = y0 % slots, y1 % slots
    s = (np.int64(integral[b, y1, c, PAD + x1]) - np.int64(integral[b, y0, c, PAD + x1])
         - np.int64(integral[b, y1, c, PAD + x0]) + np.int64(integral[b, y0, c, PAD + x0]))
    return np.int64(np.int32(s))


def _fdiv(p, q):                                   # pragma: no cover - compiled
    """floor(p / q) for int64 p, q > 0 with |p| < 2^53 (module docstring)."""
    return np.int64(np.floor(np.float64(p) / np.float64(q)))


def _rdiv(p, q):                                   # pragma: no cover - compiled
    """round(p / q), halves up, as features._round_div: floor((2p + q) / 2q)."""
    return _fdiv(2 * p + q, 2 * q)


_box, _fdiv, _rdiv = (njit(inline=True)(f) for f in (_box, _fdiv, _rdiv))



def _window_row(integral, b, y, h, r, c, w, out):          # pragma: no cover - compiled
    """out[x] = sum of statistic c over the window of radius r around (y, x), for every x of
    the row: four contiguous loads per pixel (the padding clamps the columns)."""
    y0, y1 = max(y - r, 0), min(y + r + 1, h)
    slots = integral.shape[1]
    top, bottom = integral[b, y0 % slots, c], integral[b, y1 % slots, c]
    lo, hi = PAD - r, PAD + r + 1
    for x in range(w):
        s = (np.int64(bottom[hi + x]) - np.int64(top[hi + x])
             - np.int64(bottom[lo + x]) + np.int64(top[lo + x]))
        out[x] = np.int64(np.int32(s))


_window_row = njit(inline=True)(_window_row)

# scratch rows of one job (each W int64): own values and mask (3 + 3), per radius the means and
# counts (4 x 3 x 2), the anchor, the cross fit's totals and counts (3 each), a pair's six sums
_OWN_V, _OWN_M, _MEANS, _COUNTS, _ANCHOR, _TOTAL, _COUNT, _PAIR = 0, 3, 6, 18, 30, 33, 36, 39
_SCRATCH = 45
# a window's count feature min(floor(64 k / area), 255), by radius and count k (0..area)
COUNT_SHARE = np.zeros((len(RADII), (2 * RADII[-1] + 1) ** 2), np.float32)
for _i, _r in enumerate(RADII):
    _area = (2 * _r + 1) ** 2 - 1
    COUNT_SHARE[_i, :_area + 1] = np.minimum(np.arange(_area + 1) * 64 // _area, 255)


@njit(parallel=True)
def _rows(v, m, integral, r0, r1, cross, feats, anchors):     # pragma: no cover - compiled
    """Features of rows r0..r1-1: feats (B, r1 - r0, W, 45) float32 (any strides),
    anchors (B, 3, r1 - r0, W) int32; ``cross``: the cross-channel anchor. Each step is a
    loop along a row (vectorised), not a loop over a pixel's windows."""
    nb, _, h, w = v.shape
    n = r1 - r0
    blocks = (n + BLOCK - 1) // BLOCK
    for job in prange(nb * blocks):
        b, blk = job // blocks, job % blocks
        t = np.empty((_SCRATCH, w), np.int64)
        f = np.empty((N_FEATURES, w), np.float32)
        for yy in range(blk * BLOCK, min(n, (blk + 1) * BLOCK)):
            y = r0 + yy
            for c in range(3):
                own_v, own_m = t[_OWN_V + c], t[_OWN_M + c]
                for x in range(w):
                    k = np.int64(m[b, c, y, x])
                    own_m[x] = k
                    own_v[x] = np.int64(v[b, c, y, x]) * k
                t[_ANCHOR + c, :] = 128
            for ri in range(3, -1, -1):         # largest first, so the smallest non-empty wins
                r = RADII[ri]
                for c in range(3):
                    own_v, own_m, anchor = t[_OWN_V + c], t[_OWN_M + c], t[_ANCHOR + c]
                    means, counts = t[_MEANS + 3 * ri + c], t[_COUNTS + 3 * ri + c]
                    _window_row(integral, b, y, h, r, 3 + c, w, counts)
                    _window_row(integral, b, y, h, r, c, w, means)
                    for x in range(w):
                        k = counts[x] - own_m[x]
                        mean = _rdiv(means[x] - own_v[x], max(k, 1))
                        counts[x] = k
                        means[x] = mean
                        anchor[x] = mean if k > 0 else anchor[x]
            if cross:
                t[_TOTAL:_COUNT + 3, :] = 0
                for p in range(3):
                    a, bb = PAIR_A[p], PAIR_B[p]
                    nn, sa, sb, saa, sbb, sab = (t[_PAIR], t[_PAIR + 1], t[_PAIR + 2], t[_PAIR + 3],
                                                 t[_PAIR + 4], t[_PAIR + 5])
                    ma, mb, va, vb = t[_OWN_M + a], t[_OWN_M + bb], t[_OWN_V + a], t[_OWN_V + bb]
                    for s in range(6):          # radius 1 for the whole row
                        _window_row(integral, b, y, h, 1, 6 + 3 * s + p, w, t[_PAIR + s])
                    for x in range(w):          # leave-one-out
                        pm = ma[x] * mb[x]
                        oa, ob = va[x] * pm, vb[x] * pm
                        nn[x] -= pm
                        sa[x] -= oa
                        sb[x] -= ob
                        saa[x] -= oa * oa
                        sbb[x] -= ob * ob
                        sab[x] -= oa * ob
                    for x in range(w):          # the few pixels with no pair within radius 1
                        if nn[x] > 0:
                            continue
                        pm = ma[x] * mb[x]
                        oa, ob = va[x] * pm, vb[x] * pm
                        for ri in range(1, 4):
                            r = RADII[ri]
                            y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, h), x - r, x + r + 1
                            k = _box(integral, b, y0, y1, x0, x1, 6 + p) - pm
                            if k > 0:
                                nn[x] = k
                                sa[x] = _box(integral, b, y0, y1, x0, x1, 9 + p) - oa
                                sb[x] = _box(integral, b, y0, y1, x0, x1, 12 + p) - ob
                                saa[x] = _box(integral, b, y0, y1, x0, x1, 15 + p) - oa * oa
                                sbb[x] = _box(integral, b, y0, y1, x0, x1, 18 + p) - ob * ob
                                sab[x] = _box(integral, b, y0, y1, x0, x1, 21 + p) - oa * ob
                                break
                    for d in range(2):          # a from b, then b from a
                        if d == 0:
                            tgt, s_t, s_s, s_ss, m_src, v_src = a, sa, sb, sbb, mb, vb
                        else:
                            tgt, s_t, s_s, s_ss, m_src, v_src = bb, sb, sa, saa, ma, va
                        total, count = t[_TOTAL + tgt], t[_COUNT + tgt]
                        for x in range(w):
                            k = nn[x]
                            kq = max(k, 1)
                            cov = k * sab[x] - sa[x] * sb[x]
                            var = k * s_ss[x] - s_s[x] * s_s[x]
                            slope = min(max(_fdiv(16 * cov, max(var, 1)), 0), 16) if var > 0 else 16
                            pred = _rdiv(16 * s_t[x] + slope * (k * v_src[x] - s_s[x]), 16 * kq)
                            ok = 1 if k > 0 and m_src[x] != 0 else 0
                            total[x] += min(max(pred, 0), 255) * ok
                            count[x] += ok
                for c in range(3):
                    total, count, anchor = t[_TOTAL + c], t[_COUNT + c], t[_ANCHOR + c]
                    for x in range(w):
                        anchor[x] = _rdiv(total[x], max(count[x], 1)) if count[x] > 0 else anchor[x]
            for c in range(3):              # the features, each a loop along the row, then
                k, own_v, anchor = t[_OWN_M + c], t[_OWN_V + c], t[_ANCHOR + c]    # one transposing copy
                for x in range(w):
                    anchors[b, c, yy, x] = anchor[x]
                    f[c, x] = k[x] * 64
                    f[3 + c, x] = min(max((own_v[x] - anchor[x]) * k[x], -255), 255)
                    f[6 + c, x] = anchor[x] - 128
                for ri in range(4):
                    base = 9 + 9 * ri
                    means, counts, share = t[_MEANS + 3 * ri + c], t[_COUNTS + 3 * ri + c], COUNT_SHARE[ri]
                    for x in range(w):
                        k = counts[x]
                        has = 1 if k > 0 else 0
                        f[base + c, x] = has * 64
                        f[base + 3 + c, x] = min(max((means[x] - anchor[x]) * has, -255), 255)
                        f[base + 6 + c, x] = share[k]
            out = feats[b, yy]
            for x in range(w):
                for j in range(N_FEATURES):
                    out[x, j] = f[j, x]


_RINGS = threading.local()


class Integral:
    """The integral image of pictures ``v``, ``m`` ((B, 3, H, W) uint8, C-contiguous), computed
    down to the rows the features have asked for, and held in a ring of slots (row y in slot
    y % slots). A band of rows needs the integral's rows from PAD above it to PAD below it, so a
    band-by-band trunk keeps a few megabytes of integral, in cache, instead of a photo's whole
    ~50 MB written once and read back from memory. Rows asked for again after they left the
    ring are computed again from the top: any order of bands gives the same features.

    reuse: the ring lives in this thread's buffer (a band-by-band trunk, which holds one state
    at a time): a fresh buffer of megabytes is fresh pages, zeroed on first touch, every step."""

    def __init__(self, v: np.ndarray, m: np.ndarray, reuse: bool = False):
        self.v, self.m, self.reuse = v, m, reuse
        self.ring: np.ndarray | None = None
        self.done = 0                   # integral rows 0..done-1 computed (the last ``slots`` held)

    def _hold(self, lo: int, hi: int) -> None:
        """Make integral rows lo..hi (inclusive) present in the ring."""
        nb, _, h, w = self.v.shape
        if self.ring is None or self.ring.shape[1] < hi - lo + 1:
            slots = min(h + 1, hi - lo + 1 + 2 * PAD + 2)      # (slack: later bands may be taller)
            self.ring = self._buffer((nb, slots, STATS, w + 1 + 2 * PAD))
            self.done = 0
        if lo < self.done - self.ring.shape[1]:                # row lo has left the ring
            self.done = 0
        if self.done <= hi:
            jit.run(_extend, self.v, self.m, self.ring, self.done, hi + 1)
            self.done = hi + 1

    def _buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        numel = int(np.prod(shape))
        if not self.reuse:
            return np.empty(shape, np.int32)
        buf = getattr(_RINGS, "buf", None)
        if buf is None or buf.size < numel:
            buf = _RINGS.buf = np.empty(numel, np.int32)
        return buf[:numel].reshape(shape)

    def rows(self, r0: int, r1: int, cross: bool, feats: np.ndarray, anchors: np.ndarray) -> None:
        """Fill ``feats`` ((B, r1 - r0, W, 45) float32 view) and ``anchors`` ((B, 3, r1 - r0, W)
        int32) with the features of rows r0..r1-1; ``cross``: the cross-channel anchor."""
        if r1 <= r0:
            return
        self._hold(max(r0 - PAD, 0), min(r1 + PAD, self.v.shape[2]))
        jit.run(_rows, self.v, self.m, self.ring, r0, r1, cross, feats, anchors)

"""The step schedule: split D variables into K parallel steps by dynamic programming.

Paper §3.1 and Appendix A: coding k variables in one step with t-1 already revealed
costs about k * L_t bits, where L_t is the model's mean cost of a hidden variable at
that point; the DP finds the K-step partition of 1..D that minimises the sum. The
model ships L as a curve over the revealed fraction f = (t-1)/D (integer millibits on a
uniform grid), so one curve serves every image size.

To scale to D in the millions, boundaries are restricted to a candidate set: every count
when D is small, otherwise a geometric ladder near 0 (where L falls fastest and the
first steps must be tiny) merged with a uniform grid. All arithmetic is on Python/numpy
integers, so the encoder and decoder derive the same boundaries from (D, K, curve) on
any machine; the file stores only K.
"""
from __future__ import annotations

import functools

import numpy as np

MAX_CANDIDATES = 768
_BIG = np.int64(2 ** 60)   # sums of two stay below 2^63


def monotone_curve(curve_millibits: np.ndarray) -> np.ndarray:
    """The paper sorts L_t to be monotone: a running minimum from the left."""
    return np.minimum.accumulate(np.asarray(curve_millibits, dtype=np.int64))


def curve_at(curve: np.ndarray, n: np.ndarray, d: int) -> np.ndarray:
    """L at revealed fraction n/d by integer linear interpolation. n: int64 array in 0..d."""
    g = len(curve) - 1
    pos = n * g
    i = np.minimum(pos // d, g - 1)
    rem = pos - i * d
    return curve[i] + ((curve[i + 1] - curve[i]) * rem) // d


def candidates(d: int) -> np.ndarray:
    """Sorted unique candidate boundaries in 0..d (int64), always including 0 and d."""
    if d + 1 <= MAX_CANDIDATES:
        return np.arange(d + 1, dtype=np.int64)
    half = MAX_CANDIDATES // 2
    geometric = [0]
    x = 1
    while x < d and len(geometric) < half:
        geometric.append(x)
        x = max(x + 1, (x * 9) // 8)            # ratio 1.125, integers only
    uniform = (np.arange(half + 1, dtype=np.int64) * d) // half
    return np.unique(np.concatenate([np.array(geometric, dtype=np.int64), uniform]))


def schedule(d: int, steps: int, curve_millibits: np.ndarray, start: int = 0) -> tuple[np.ndarray, int]:
    """Boundaries start = n_0 < n_1 < ... < n_K = d and the expected cost in millibits.

    Step k codes the variables whose rank is in [n_{k-1}, n_k). K is min(steps, what the
    candidate set allows); steps >= d gives one variable per step. ``start``: the first
    ``start`` variables are already revealed (a pyramid's fine level, codec.PlaneCoder):
    the same DP over the candidates from there on. Remembered per arguments (a dataset's
    batches of one shape ask for the same schedule; ~6 ms a DP).
    """
    bounds, cost = _schedule(d, steps, np.asarray(curve_millibits, dtype=np.int64).tobytes(), start)
    return np.array(bounds, dtype=np.int64), cost


@functools.lru_cache(maxsize=256)
def _schedule(d: int, steps: int, curve_bytes: bytes, start: int) -> tuple[tuple[int, ...], int]:
    bounds, cost = _solve(d, steps, np.frombuffer(curve_bytes, dtype=np.int64), start)
    return tuple(int(b) for b in bounds), cost


def _solve(d: int, steps: int, curve_millibits: np.ndarray, start: int = 0) -> tuple[np.ndarray, int]:
    """``schedule``'s dynamic programme."""
    if d < 1 or steps < 1 or not 0 <= start < d:
        raise ValueError("need d >= 1, steps >= 1 and 0 <= start < d")
    curve = monotone_curve(curve_millibits)
    cand = candidates(d)
    if start:
        cand = np.concatenate([[start], cand[cand > start]]).astype(np.int64)
    n = len(cand)
    k = min(steps, n - 1)
    unit = curve_at(curve, cand, d)                                  # cost per variable when starting at cand
    size = cand[None, :] - cand[:, None]                             # (a, b): variables coded from a to b
    cost = np.where(size > 0, size * unit[:, None], _BIG)
    best = np.full(n, _BIG, dtype=np.int64)
    best[0] = 0
    back = np.zeros((k, n), dtype=np.int64)
    for s in range(k):
        total = np.minimum(best[:, None] + cost, _BIG)              # (a, b)
        back[s] = np.argmin(total, axis=0)
        best = total[back[s], np.arange(n)]
    bounds = [n - 1]
    for s in range(k - 1, -1, -1):
        bounds.append(int(back[s, bounds[-1]]))
    bounds = cand[np.array(bounds[::-1])]
    if bounds[0] != start or np.any(np.diff(bounds) <= 0):
        raise AssertionError("schedule is not strictly increasing")
    return bounds, int(best[n - 1])

"""The binary coder's decision masses (coder.py) as compiled CPU kernels: the same integers.

coder.py walks every variable's 8 binary decisions with whole-tensor torch operations: per
level a cdf pass at one or two points (dlm.cdf_at), then where/stack/index_select/nonzero to
carry each node's span and F at its ends down to the chosen half. Here each variable walks its
own levels in one compiled loop: the encoder's whole grid in one call, the decoder one call per
level before its pops (the masses of the coded decisions, already as probability rows) and
one after (down to the chosen halves).

F(x) is dlm.cdf_at's integer mixture cdf from dlm.mixture_terms: F(0) = 0, F(256) = the row
total, and between sum_k SIGMOID[clamp(((16 x - 8) inv_k + base_k) >> 10)] w_k + x, all in
int64 (the torch path's int32 never overflows, so both give the same integers). Without a value
set the span tables are the identity (first allowed >= x is x, one past the last allowed < x
is x): the split points are then the midpoint, every decision is coded, and the formulas are
coder.py's unrestricted ones.
"""
from __future__ import annotations

import numpy as np

from .dlm import EXP, EXP_SPAN, GRID, IDX_MAX, INV_SCALE, LOG_SCALE_MAX, LOG_SCALE_MIN, N_SYMBOLS, SIG_BITS, SIGMOID
from . import jit
from .jit import njit

from numba import prange              # (this module is imported only where numba is: jit.available)

IDENTITY = np.arange(N_SYMBOLS + 1, dtype=np.int32)       # span tables of "every value allowed"


@njit(parallel=True)
def _terms(params, anchor, inv_table, exp_table, inv, base, w):        # pragma: no cover - compiled
    """dlm.mixture_terms of params (N, 3, M) float32 integers and anchor (N,): inv, base, w
    int32 (M, N), the same integers (the clamps in the same places), one pass per variable."""
    n, _, m = params.shape
    for j in prange(n):
        top = np.int64(params[j, 0, 0])
        for k in range(1, m):
            top = max(top, np.int64(params[j, 0, k]))
        a = np.int64(anchor[j]) * GRID
        for k in range(m):
            scale = min(max(np.int64(params[j, 2, k]), LOG_SCALE_MIN), LOG_SCALE_MAX)
            iv = np.int64(inv_table[scale - LOG_SCALE_MIN])
            b = (np.int64(IDX_MAX) << 10) - (a + np.int64(params[j, 1, k])) * iv
            inv[k, j] = iv
            base[k, j] = min(max(b, -(1 << 30)), 1 << 30)
            w[k, j] = exp_table[min(top - np.int64(params[j, 0, k]), EXP_SPAN)]


def terms(params: np.ndarray, anchor: np.ndarray):
    """dlm.mixture_terms of head outputs (N, 3, M) (float or integer) and anchors (N,), as
    fresh (M, N) int32 arrays (inv, base, w): ``_terms`` with dlm's tables."""
    if params.dtype not in (np.float32, np.float64, np.int32, np.int64):
        params = params.astype(np.int64)
    out = tuple(np.empty((params.shape[2], params.shape[0]), np.int32) for _ in range(3))
    jit.run(_terms, np.ascontiguousarray(params), np.ascontiguousarray(anchor), INV_SCALE, EXP, *out)
    return out


# The sigmoid table is 0 up to SIG_ZERO_TOP and 2^15 from SIG_FULL_FROM on: a component adds
# nothing to the frequencies of values whose table index lies in either run.
SIG_ZERO_TOP = int(np.flatnonzero(SIGMOID > 0)[0]) - 1
SIG_FULL_FROM = int(np.flatnonzero(SIGMOID < 1 << SIG_BITS)[-1]) + 1
assert SIG_ZERO_TOP >= 0 and SIG_FULL_FROM <= len(SIGMOID) - 1 and (np.diff(SIGMOID) >= 0).all()


@njit(inline=True)
def _first_above(iv, bs, limit, x):                       # pragma: no cover - compiled
    """The first value x' >= x (255 if none below it) whose table index ((16 x' + 8) iv + bs)
    >> 10 is >= limit: the index grows with x' (iv > 0), so a division finds it up to
    rounding, and the two loops settle the rounding on the index itself."""
    r = (np.int64(limit) << 10) - bs - 8 * iv
    y = max(x, min(N_SYMBOLS - 1, -((-r) // (16 * iv))))
    while y > x and (((y - 1) * 16 + 8) * iv + bs) >> 10 >= limit:
        y -= 1
    while y < N_SYMBOLS - 1 and ((y * 16 + 8) * iv + bs) >> 10 < limit:
        y += 1
    return y


@njit(parallel=True)
def _frequencies(inv, base, w, sig, out):                  # pragma: no cover - compiled
    """dlm.exact_frequencies from ``terms``: out (N, 256) int32, the same integers.

    The row is F at the upper edges x + 1/2 differenced, + 1 (module docstring):
    freq(x) = 1 + sum_k w_k (S_k(x) - S_k(x - 1)) with S_k(x) = SIGMOID[idx_k(x)] for x in
    0..254, S_k(-1) = 0 and S_k(255) = 2^15 (the end bins take the tails). S_k is 0 below
    the first x whose index passes SIG_ZERO_TOP and 2^15 from the first, xb, whose index
    reaches SIG_FULL_FROM, so each component looks its table up only between those two
    values (~22 of its scales wide instead of all 255) and adds w_k 2^15 at xb as one step
    (rows in blocks of 64)."""
    m, n = inv.shape
    for block in prange((n + 63) // 64):
        c = np.empty(N_SYMBOLS + 1, np.int64)        # c[x + 1]: sum_k w_k S_k(x) over the values between
        steps = np.empty(N_SYMBOLS, np.int64)        # steps[x]: sum_k w_k 2^15 over the k whose S_k reaches 2^15 at x
        for j in range(block * 64, min(n, block * 64 + 64)):
            c[:] = 0
            steps[:] = 0
            for k in range(m):
                iv, bs, wk = np.int64(inv[k, j]), np.int64(base[k, j]), np.int64(w[k, j])
                xa = _first_above(iv, bs, SIG_ZERO_TOP + 1, 0)
                xb = _first_above(iv, bs, SIG_FULL_FROM, xa)
                for x in range(xa, xb):             # (no value depends on another: vectorised gathers)
                    idx = ((x * 16 + 8) * iv + bs) >> 10
                    c[x + 1] += np.int64(sig[min(max(idx, 0), 2 * IDX_MAX - 1)]) * wk
                steps[xb] += wk << SIG_BITS
            for x in range(N_SYMBOLS):
                out[j, x] = c[x + 1] - c[x] + steps[x] + 1


def frequencies(params: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """dlm.exact_frequencies (N, 256) int32 of head outputs and anchors: ``_frequencies`` of
    their ``terms``."""
    inv, base, w = terms(params, anchor)
    out = np.empty((inv.shape[1], N_SYMBOLS), np.int32)
    jit.run(_frequencies, inv, base, w, SIGMOID, out)
    return out


@njit(inline=True)
def masked_row(freq, table, row, j, f):                       # pragma: no cover - compiled
    """f = freq[j] * table[row[j]], or freq[j] where that leaves nothing (dlm.apply_mask);
    returns the sum of f. Also the first step of chroma_jit.mix and copies_jit.mix."""
    total = np.int64(0)
    for v in range(freq.shape[1]):
        f[v] = freq[j, v] * table[row[j], v]
        total += f[v]
    if total == 0:
        for v in range(freq.shape[1]):
            f[v] = freq[j, v]
            total += f[v]
    return total


@njit(parallel=True)
def _masked(freq, table, row, out):                          # pragma: no cover - compiled
    """out[j] = freq[j] * table[row[j]], or freq[j] where that leaves nothing (dlm.apply_mask)."""
    for j in prange(freq.shape[0]):
        masked_row(freq, table, row, j, out[j])


def masked(freq: np.ndarray, table: np.ndarray, row: np.ndarray) -> np.ndarray:
    """``_masked`` into a fresh array of freq's shape and type."""
    out = np.empty_like(freq)
    jit.run(_masked, freq, table, row, out)
    return out


def _cdf(inv, base, w, sig, j, x):                        # pragma: no cover - compiled
    """F(x) of variable j, x in 0..256."""
    if x <= 0:
        return np.int64(0)
    m = inv.shape[0]
    if x >= N_SYMBOLS:
        total = np.int64(0)
        for k in range(m):
            total += w[k, j]
        return (total << SIG_BITS) + N_SYMBOLS
    edge = np.int64(x) * 16 - 8
    s = np.int64(0)
    for k in range(m):
        idx = (edge * inv[k, j] + base[k, j]) >> 10
        idx = min(max(idx, 0), 2 * IDX_MAX - 1)
        s += np.int64(sig[idx]) * w[k, j]
    return s + x


_cdf = njit(inline=True)(_cdf)


@njit(parallel=True)
def _grid(inv, base, w, sig, v, first, end, at, masses, bits, coded):     # pragma: no cover - compiled
    """The encoder's 8 decisions of every variable: masses (8, N, 2) int32, bits and coded
    (8, N) uint8. Returns -1, or the first variable whose symbol lies outside its set."""
    n = v.shape[0]
    bad = np.full(n, -1, np.int64)
    for j in prange(n):
        t = at[j]
        sym = v[j]
        if first[t + sym] >= end[t + sym + 1]:
            bad[j] = j
            continue
        a, e = np.int64(first[t]), np.int64(end[t + N_SYMBOLS])
        fa, fe = _cdf(inv, base, w, sig, j, a), _cdf(inv, base, w, sig, j, e)
        lo = 0
        for level in range(8):
            mid = lo + (128 >> level)
            a1, e0 = np.int64(first[t + mid]), np.int64(end[t + mid])
            f_e0 = _cdf(inv, base, w, sig, j, e0)
            f_a1 = f_e0 if a1 == e0 else _cdf(inv, base, w, sig, j, a1)
            masses[level, j, 0] = f_e0 - fa
            masses[level, j, 1] = fe - f_a1
            coded[level, j] = 1 if (a < e0 and a1 < e) else 0
            bit = (sym >> (7 - level)) & 1
            bits[level, j] = bit
            if bit:
                a, fa, lo = a1, f_a1, mid
            else:
                e, fe = e0, f_e0
    for j in range(n):
        if bad[j] >= 0:
            return j
    return -1


@njit(parallel=True)
def _start(inv, base, w, sig, first, end, at, a, e, f_lo, f_hi):        # pragma: no cover - compiled
    """The decoder's root nodes: each variable's tightest span [a, e) and F at its ends."""
    for j in prange(a.shape[0]):
        a[j], e[j] = first[at[j]], end[at[j] + N_SYMBOLS]
        f_lo[j], f_hi[j] = _cdf(inv, base, w, sig, j, a[j]), _cdf(inv, base, w, sig, j, e[j])


@njit(parallel=True)
def _level(inv, base, w, sig, first, end, at, lo, a, e, f_lo, f_hi, half, run,
           e0, a1, f_e0, f_a1, probs, starts, slot):             # pragma: no cover - compiled
    """One level of the decoder before its pops: the split points and F there of every
    variable, and the probability rows (float64, coder._probabilities' division) of the coded
    decisions in variable order, run i's rows from starts[i] to starts[i + 1]; slot[j]:
    variable j's row, -1 where not coded. Returns how many rows."""
    n = lo.shape[0]
    for j in prange(n):
        t, mid = at[j], lo[j] + half
        a1[j], e0[j] = first[t + mid], end[t + mid]
        f_e0[j] = _cdf(inv, base, w, sig, j, e0[j])
        f_a1[j] = f_e0[j] if a1[j] == e0[j] else _cdf(inv, base, w, sig, j, a1[j])
    k = 0
    for j in range(n):
        if j % run == 0:
            starts[j // run] = k
        if a[j] < e0[j] and a1[j] < e[j]:
            m0, m1 = np.float64(f_e0[j] - f_lo[j]), np.float64(f_hi[j] - f_a1[j])
            total = m0 + m1
            probs[k, 0], probs[k, 1] = m0 / total, m1 / total
            slot[j] = k
            k += 1
        else:
            slot[j] = -1
    starts[n // run] = k
    return k


@njit(parallel=True)
def _descend(lo, a, e, f_lo, f_hi, half, e0, a1, f_e0, f_a1, popped, slot):     # pragma: no cover - compiled
    """The decoder after a level's pops: each variable down to its chosen half (``popped``
    holds the coded decisions in variable order, ``slot`` each variable's row: ``_level``)."""
    for j in prange(lo.shape[0]):
        bit = popped[slot[j]] != 0 if slot[j] >= 0 else a[j] >= e0[j]      # left half empty: bit 1
        if bit:
            a[j], f_lo[j], lo[j] = a1[j], f_a1[j], lo[j] + half
        else:
            e[j], f_hi[j] = e0[j], f_e0[j]


def _spans(tables, n: int):
    """(first, end, at) of coder._span_tables, or the identity's for "every value allowed"."""
    return tables if tables is not None else (IDENTITY, IDENTITY, np.zeros(n, np.int64))


def decision_grid(terms: tuple[np.ndarray, np.ndarray, np.ndarray], sig: np.ndarray, symbols: np.ndarray,
                  tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """coder._decision_grid on the CPU: masses (8, N, 2) int32, bits (8, N) int32 and coded
    (8, N) bool (None without a value set). ``terms``: dlm.mixture_terms as numpy (M, N) int32;
    ``tables``: (first, end, at) of coder._value_spans, or None. Raises ValueError for a symbol
    outside its set."""
    inv, base, w = terms
    n = len(symbols)
    first, end, at = _spans(tables, n)
    masses = np.empty((8, n, 2), np.int32)
    bits = np.empty((8, n), np.uint8)
    coded = np.empty((8, n), np.uint8)
    bad = jit.run(_grid, inv, base, w, sig, symbols.astype(np.int64), first, end, at, masses, bits, coded)
    if bad >= 0:
        raise ValueError("a symbol is not in its allowed set")
    return masses, bits.astype(np.int32), None if tables is None else coded.view(np.bool_)


class LevelDecoder:
    """The decoder's walk down the levels for N variables in runs of ``run``: ``masses(level)``
    gives the coded decisions' probability rows and each run's slice, ``descend(level, bits)``
    takes the popped bits; ``symbols()`` at the end."""

    def __init__(self, terms, sig: np.ndarray, tables, n: int, run: int):
        self.terms, self.sig, self.run = terms, sig, run
        self.first, self.end, self.at = _spans(tables, n)
        self.lo = np.zeros(n, np.int64)
        self.a, self.e, self.f_lo, self.f_hi = (np.empty(n, np.int64) for _ in range(4))
        self.e0, self.a1, self.f_e0, self.f_a1 = (np.empty(n, np.int64) for _ in range(4))
        self.probs = np.empty((n, 2), np.float64)
        self.starts = np.empty(n // run + 1, np.int64)
        self.slot = np.empty(n, np.int64)
        jit.run(_start, *terms, sig, self.first, self.end, self.at, self.a, self.e, self.f_lo, self.f_hi)

    def masses(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """(probability rows (k, 2) float64, starts (runs + 1,)) of this level's coded decisions."""
        k = jit.run(_level, *self.terms, self.sig, self.first, self.end, self.at, self.lo, self.a, self.e,
                    self.f_lo, self.f_hi, 128 >> level, self.run, self.e0, self.a1, self.f_e0, self.f_a1,
                    self.probs, self.starts, self.slot)
        return self.probs[:k], self.starts

    def descend(self, level: int, popped: np.ndarray) -> None:
        jit.run(_descend, self.lo, self.a, self.e, self.f_lo, self.f_hi, 128 >> level, self.e0, self.a1,
                self.f_e0, self.f_a1, popped, self.slot)

    def symbols(self) -> np.ndarray:
        return self.lo.astype(np.int32)


@njit(parallel=True)
def _rows_of(masses, out):                                  # pragma: no cover - compiled
    k = masses.shape[1]
    for j in prange(masses.shape[0]):
        total = np.float64(0)
        for i in range(k):              # integers below 2^53: exact in any order
            total += np.float64(masses[j, i])
        for i in range(k):
            out[j, i] = np.float64(masses[j, i]) / total


def probabilities(masses: np.ndarray) -> np.ndarray:
    """coder._probabilities (n, 2) and dlm.frequencies_to_probabilities (n, 256): integer
    masses, row sums below 2^53 -> float64 rows m / sum(m), the same IEEE operations (no
    fast-math), so the same bits."""
    out = np.empty(masses.shape, np.float64)
    jit.run(_rows_of, masses, out)
    return out

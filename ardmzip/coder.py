"""Entropy coding with constriction's ANS stack (the only module that imports it).

ANS is a stack: the encoder pushes chunks in the reverse of the order the decoder pops
them. Pitfalls handled here (see DESIGN-NOTES): ``Categorical(perfect=False)`` (the
default ``perfect=True`` is slow and makes a different stream), C-contiguous float64
probability rows, int32 symbols. Identical probability bytes give identical streams.

The binary path (``encode_binary`` / ``decode_binary``) codes a symbol 0..255 as 8
decisions, most significant first: in node [lo, hi) with mid = (lo + hi) // 2, bit =
v >= mid, coded with the 2-entry row [F(mid) - F(lo), F(hi) - F(mid)] of exact masses
(F = ``dlm.mixture_cdf``), so the product of the 8 decisions is exactly freq(v) / total
and nothing is lost against the 256-way row, at 8 cdf points per subpixel instead of
256. A chunk of N variables is popped level by level: level 0 of all N in variable
order, then level 1, ... An optional allowed-value set per variable makes a decision
implied (not coded) when one half of its node holds no allowed value; the coded
decisions keep the unrestricted masses. An empty set restricts nothing.
"""
from __future__ import annotations

import constriction
import numpy as np
import torch

from . import dlm, jit
from .errors import FormatError

_FAMILY = constriction.stream.model.Categorical(perfect=False)


class Encoder:
    def __init__(self) -> None:
        self._ans = constriction.stream.stack.AnsCoder()

    def push(self, symbols: np.ndarray, probs: np.ndarray) -> None:
        """Encode so that a decoder pops exactly these symbols, first row first."""
        if len(symbols):
            self._ans.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32), _FAMILY,
                                     np.ascontiguousarray(probs, dtype=np.float64))

    def finish(self) -> bytes:
        return self._ans.get_compressed().astype("<u4").tobytes()


class Decoder:
    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise FormatError("corrupt .ardm file: bitstream length is not a whole number of words")
        self._ans = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))

    def pop(self, probs: np.ndarray) -> np.ndarray:
        if not len(probs):
            return np.zeros(0, dtype=np.int32)
        return self._ans.decode(_FAMILY, np.ascontiguousarray(probs, dtype=np.float64))

    def finished_cleanly(self) -> bool:
        """A stream decoded with the right probabilities ends exactly empty."""
        return self._ans.is_empty()


# ---------------------------------------------------------------- binary path

def _probabilities(masses: np.ndarray) -> np.ndarray:
    """Integer (n, 2) masses -> C-contiguous float64 rows, one IEEE division each (exact
    integers below 2^53, so every machine gets the same bytes). A photo's chunks go through
    coder_jit.probabilities: the same operations in one pass on every thread."""
    if len(masses) >= 1 << 16 and jit.available():
        from . import coder_jit
        return coder_jit.probabilities(masses)
    f = masses.astype(np.float64)
    f /= (f[:, 0] + f[:, 1])[:, None]          # 8x faster than f.sum(axis=1) on 2 columns
    return f


def _span_tables(allowed, channel, n: int, device: torch.device):
    """(first, end, at) for ``_value_spans``: two flat (C * 257,) int32 tables (first allowed
    value >= x; one past the last allowed < x) and each variable's offset into them, int64
    (N,). An empty set restricts nothing. None without a set."""
    if allowed is None:
        return None
    table = torch.as_tensor(allowed, device=device).bool()
    if table.dim() != 2 or table.shape[1] != dlm.N_SYMBOLS:
        raise ValueError(f"allowed must be (C, 256), not {tuple(table.shape)}")
    if channel is None:
        if len(table) != 1:
            raise ValueError("channel is needed with more than one allowed set")
        channel = torch.zeros(n, dtype=torch.int64)
    channel = torch.as_tensor(channel, device=device).long().view(-1)
    if len(channel) != n or (n and (channel.min() < 0 or channel.max() >= len(table))):
        raise ValueError("channel must name an allowed set for every variable")
    table = torch.where(table.any(1, keepdim=True), table, True)            # empty: everything allowed
    x = torch.arange(dlm.N_SYMBOLS + 1, device=device)
    at = torch.cat([table, torch.ones_like(table[:, :1])], 1)               # a sentinel at 256
    first = torch.where(at, x, dlm.N_SYMBOLS + 1).flip(1).cummin(1).values.flip(1).clamp(max=dlm.N_SYMBOLS)
    last = torch.where(table, x[1:], 0).cummax(1).values                    # one past the last allowed <= x
    end = torch.cat([torch.zeros_like(last[:, :1]), last], 1)               # ... < x
    # int32 values (0..256): the node bounds carried through the levels stay narrow
    return first.reshape(-1).int(), end.reshape(-1).int(), channel * (dlm.N_SYMBOLS + 1)


def _value_spans(allowed, channel, n: int, device: torch.device):
    """span(a, b) -> (first, end): the allowed values of [a, b) lie in [first, end), the
    tightest such range (first >= end: none), for each variable, from ``_span_tables``.
    None without a set."""
    tables = _span_tables(allowed, channel, n, device)
    if tables is None:
        return None
    first, end, base = tables

    def span(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:          # a, b: (N,) or (levels, N), or (len(rows),)
        at = base if rows is None else base[rows]
        return first[at + a], end[at + b]
    return span


def _compiled(params: torch.Tensor) -> bool:
    """Whether the binary coder's masses come from coder_jit (on the CPU, with numba)."""
    return params.device.type == "cpu" and jit.available()


def _numpy_terms(params: torch.Tensor, anchor: torch.Tensor):
    """dlm.mixture_terms as numpy arrays, for coder_jit's kernels (which compute them too: one
    pass instead of a dozen torch ones)."""
    from . import coder_jit
    return coder_jit.terms(params.numpy(), anchor.numpy())


def _numpy_tables(tables):
    return None if tables is None else tuple(t.contiguous().numpy() for t in tables)


def _split_points(span, lo: torch.Tensor, mid: torch.Tensor, rows: torch.Tensor | None = None):
    """(a1, e0) for nodes [lo, 2 mid - lo) under a value set: where the right half's tightest
    allowed span starts (first allowed >= mid) and where the left half's ends (one past the
    last allowed < mid). The left half's span starts where the node's does, and the right
    half's ends where the node's does, so these two points are all a level adds: a node's
    (start, end) and F there are carried down from its parent, and each half's mass is
    F(e0) - F(start) or F(end) - F(a1), the same integers as from four fresh points."""
    return span(mid, mid, rows)


def _decision_grid(params: torch.Tensor, anchor: torch.Tensor, symbols, allowed, channel):
    """Every variable's 8 decisions: masses (8, N, 2), bits (8, N) and which are coded (8, N;
    None: all), on the device. Row l is level l, so the flattened (8, N) grid is the
    decoder's pop order (level-major). One cdf pass at the 8 mids (under a value set: 2 points a
    level and the root's span, see ``_split_points``). Each variable's entries depend on that variable alone."""
    device = params.device
    v = torch.as_tensor(symbols, device=device).to(torch.int32).view(-1)
    n = len(v)
    if n != len(params) or n != len(anchor):
        raise ValueError("params, anchor and symbols must have the same length")
    if n and (v.min() < 0 or v.max() >= dlm.N_SYMBOLS):
        raise ValueError("symbols must lie in 0..255")
    if _compiled(params):       # the same integers, each variable's levels in one compiled loop
        from . import coder_jit
        masses, bits, coded = coder_jit.decision_grid(
            _numpy_terms(params, anchor), dlm.SIGMOID, v.numpy(),
            _numpy_tables(_span_tables(allowed, channel, n, device)))
        return (torch.from_numpy(masses), torch.from_numpy(bits),
                None if coded is None else torch.from_numpy(coded))
    shift = torch.arange(7, -1, -1, dtype=torch.int32, device=device).unsqueeze(1)  # level L decides bit 7 - L
    bit = (v >> shift) & 1                                              # (8, N)
    lo = (v >> (shift + 1)) << (shift + 1)
    mid = lo + (1 << shift)
    terms = dlm.mixture_terms(params, anchor)
    span = _value_spans(allowed, channel, n, device)
    if span is None:
        f_mid = dlm.cdf_from_terms(terms, mid)                          # (8, N)
        f_lo, f_hi = torch.empty_like(f_mid), torch.empty_like(f_mid)
        below, above = torch.zeros_like(v), dlm.row_totals(terms)       # F(0), F(256) at the root
        for level in range(8):                                          # down the symbol's path
            f_lo[level], f_hi[level] = below, above
            one = bit[level].bool()
            below, above = torch.where(one, f_mid[level], below), torch.where(one, above, f_mid[level])
        return torch.stack([f_mid - f_lo, f_hi - f_mid], -1), bit, None   # masses all >= 1
    first, end = span(v.long(), v.long() + 1)
    if not bool((first < end).all()):
        raise ValueError("a symbol is not in its allowed set")
    a, e = span(torch.zeros_like(v, dtype=torch.int64), torch.full_like(v, dlm.N_SYMBOLS, dtype=torch.int64))
    a1, e0 = _split_points(span, lo.long(), mid.long())                   # (8, N) each
    f = dlm.cdf_at(terms, torch.cat([torch.stack([a, e]), e0, a1]))       # (18, N): one cdf pass
    fa, fe, f_e0, f_a1 = f[0], f[1], f[2:10], f[10:]
    masses = torch.empty(8, n, 2, dtype=f.dtype, device=device)
    coded = torch.empty(8, n, dtype=torch.bool, device=device)
    for level in range(8):                                               # down the symbol's path
        masses[level, :, 0], masses[level, :, 1] = f_e0[level] - fa, fe - f_a1[level]
        coded[level] = (a < e0[level]) & (a1[level] < e)   # skipped where one half holds no allowed value
        one = bit[level].bool()
        a, fa = torch.where(one, a1[level], a), torch.where(one, f_a1[level], fa)
        e, fe = torch.where(one, e, e0[level]), torch.where(one, fe, f_e0[level])
    return masses, bit, coded


def _decisions(params: torch.Tensor, anchor: torch.Tensor, symbols, allowed, channel):
    """The encoder's coded decisions in the decoder's pop order (level-major: level 0 of
    every variable, then level 1, ...): masses int32 (n, 2) and bits int32 (n,), numpy."""
    masses, bit, coded = _decision_grid(params, anchor, symbols, allowed, channel)
    if coded is None:
        return masses.view(-1, 2).cpu().numpy(), bit.view(-1).cpu().numpy()
    return masses[coded].cpu().numpy(), bit[coded].cpu().numpy()


def decisions_batch(params: torch.Tensor, anchor: torch.Tensor, symbols, allowed=None, channel=None
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``_decisions`` of B runs of n variables in one pass: params (B, n, 3, M), anchor and
    symbols (B, n); ``allowed`` (C, 256) / ``channel`` (B, n) as for ``encode_binary`` (one
    table for all runs: stack the runs' tables and offset their channels). Returns each
    run's (masses, bits), equal to what ``_decisions`` gives for that run alone."""
    b, n = anchor.shape
    masses, bit, coded = _decision_grid(params.reshape(b * n, *params.shape[2:]), anchor.reshape(-1),
                                        torch.as_tensor(symbols).reshape(-1), allowed,
                                        None if channel is None else torch.as_tensor(channel).reshape(-1))
    masses, bit = masses.view(8, b, n, 2).cpu().numpy(), bit.view(8, b, n).cpu().numpy()
    if coded is None and b == 1:        # already in order: no copy (a photo's large chunks)
        return [(masses.reshape(-1, 2), bit.reshape(-1))]
    if coded is None:
        return [(masses[:, i].reshape(-1, 2), bit[:, i].reshape(-1)) for i in range(b)]
    coded = coded.view(8, b, n).cpu().numpy()
    out = []
    for i in range(b):      # np.take at the coded positions: ~5x faster than two boolean masks
        at = np.flatnonzero(coded[:, i])
        out.append((np.take(masses[:, i].reshape(-1, 2), at, axis=0), np.take(bit[:, i].reshape(-1), at)))
    return out


def push_decisions(encoder: Encoder, masses: np.ndarray, bits: np.ndarray) -> None:
    """Push one run's decisions (``decisions_batch``), as ``encode_binary`` does."""
    encoder.push(bits, _probabilities(masses))


def _decision_terms(masses: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Each decision's ideal bits: log2(m0 + m1) - log2(m[bit]), float64."""
    m = masses.astype(np.float64)
    return np.log2(m[:, 0] + m[:, 1]) - np.log2(m[np.arange(len(bits)), bits])


def decision_bits(masses: np.ndarray, bits: np.ndarray) -> float:
    """Ideal code length in bits of one run's decisions (``decisions_batch``)."""
    return float(np.sum(_decision_terms(masses, bits)))


def decision_bits_batch(runs: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """``decision_bits`` of several runs: the per-decision terms in one pass over all of them,
    then each run's sum over its own contiguous slice (the same pairwise sum of the same
    values as ``decision_bits``, so the same floats: the encoder compares candidates by them)."""
    if not runs:
        return []
    terms = _decision_terms(np.concatenate([masses for masses, _ in runs]), np.concatenate([b for _, b in runs]))
    ends = np.cumsum([len(b) for _, b in runs])
    return [float(np.sum(terms[e - len(b):e])) for (_, b), e in zip(runs, ends)]


def encode_binary(encoder: Encoder, params: torch.Tensor, anchor: torch.Tensor, symbols,
                  allowed=None, channel=None) -> None:
    """Push N symbols (0..255) as binary decisions for ``decode_binary`` to pop.

    params: (N, 3, M) integer head outputs, anchor: (N,), as for ``dlm.exact_frequencies``;
    allowed: optional (C, 256) bool table of allowed values, channel: (N,) row of it per
    variable (may be left out when C = 1). Raises ValueError for a symbol outside its set.
    """
    push_decisions(encoder, *_decisions(params, anchor, symbols, allowed, channel))   # the whole chunk in one call


def binary_bits(params: torch.Tensor, anchor: torch.Tensor, symbols, allowed=None, channel=None) -> float:
    """Ideal code length in bits of the binary path (for reporting)."""
    return decision_bits(*_decisions(params, anchor, symbols, allowed, channel))


def decode_binary(decoder: Decoder, params: torch.Tensor, anchor: torch.Tensor,
                  allowed=None, channel=None, info: list[float] | None = None) -> np.ndarray:
    """Pop N symbols pushed by ``encode_binary`` with the same arguments: int32 (N,).

    8 rounds, one per level; each evaluates F(mid) once per variable that is still open
    (F(lo), F(hi) are carried over) and pops that level's coded decisions in one call.
    A damaged stream decodes to some values in the allowed sets, without error. (One run of
    ``decode_binary_batch``, which holds the loop.)
    """
    result = decode_binary_batch([decoder], params[None], anchor[None], allowed, channel,
                                 None if info is None else [info])[0]
    if isinstance(result, Exception):
        raise result
    return result


def decode_binary_batch(decoders: list[Decoder | None], params: torch.Tensor, anchor: torch.Tensor,
                        allowed=None, channel=None, infos: list[list[float]] | None = None
                        ) -> list[np.ndarray | Exception | None]:
    """``decode_binary`` for B runs of n variables at once, run i from ``decoders[i]``:
    params (B, n, 3, M), anchor (B, n); ``allowed`` / ``channel`` (B, n) as in
    ``decisions_batch``. The cdf work is done for all runs together; each decoder pops
    exactly the decisions, in the order, that ``decode_binary`` would pop for its run alone.
    Returns per run its int32 symbols, the exception its stream raised (the others go on),
    or None for a decoder that is None. ``infos[i]``: as ``decode_binary``'s ``info``."""
    b, n = anchor.shape
    if n == 0:
        return [None if d is None else np.zeros(0, dtype=np.int32) for d in decoders]
    device, total = params.device, b * n
    results: list[np.ndarray | Exception | None] = [None] * b
    live = [i for i in range(b) if decoders[i] is not None]

    def pop_probs(probs: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Pop each live run's rows starts[i]:starts[i + 1] of ``probs`` (k, 2) from its decoder."""
        bits = np.zeros(len(probs), dtype=np.int32)
        popped = []
        for i in list(live):
            s, e = starts[i], starts[i + 1]
            if e == s:
                continue
            try:
                bits[s:e] = decoders[i].pop(probs[s:e])
            except (ValueError, RuntimeError, OverflowError) as err:
                results[i] = err
                live.remove(i)
                continue
            popped.append(i)
        if infos is not None and popped:   # every run's information from one log2 pass over the level
            info = np.concatenate([[0.0], np.cumsum(np.log2(probs[np.arange(len(probs)), bits]))])
            for i in popped:
                infos[i][0] -= float(info[starts[i + 1]] - info[starts[i]])
        return bits

    if _compiled(params):       # the same masses, each level in two compiled passes
        from . import coder_jit
        walk = coder_jit.LevelDecoder(
            _numpy_terms(params.reshape(total, *params.shape[2:]), anchor.reshape(-1)), dlm.SIGMOID,
            _numpy_tables(_span_tables(allowed, None if channel is None else torch.as_tensor(channel).reshape(-1),
                                       total, device)), total, n)
        for level in range(8):
            if not live:
                break
            walk.descend(level, pop_probs(*walk.masses(level)))
        symbols = walk.symbols().reshape(b, n)
        for i in live:
            results[i] = symbols[i]
        return results
    terms = dlm.mixture_terms(params.reshape(total, *params.shape[2:]), anchor.reshape(-1))
    span = _value_spans(allowed, None if channel is None else torch.as_tensor(channel).reshape(-1), total, device)
    lo = torch.zeros(total, dtype=torch.int64 if span is not None else torch.int32, device=device)
    f_lo, f_hi = torch.zeros(total, dtype=torch.int32, device=device), dlm.row_totals(terms)
    if span is not None:     # each node's tightest allowed span [a, e) and F there, carried down
        a, e = span(lo, lo + dlm.N_SYMBOLS)
        f_lo, f_hi = dlm.cdf_at(terms, torch.stack([a, e]))

    def pop_runs(masses: torch.Tensor, starts: np.ndarray) -> np.ndarray:
        return pop_probs(_probabilities(masses.cpu().numpy()), starts)

    run_starts = np.arange(0, total + 1, n)
    for level in range(8):
        if not live:
            break
        mid = lo + (128 >> level)
        if span is None:                      # every decision coded
            fm = dlm.cdf_from_terms(terms, mid.unsqueeze(0))[0]
            bit = torch.from_numpy(pop_runs(torch.stack([fm - f_lo, f_hi - fm], 1), run_starts)).to(device).bool()
            f_lo, f_hi = torch.where(bit, fm, f_lo), torch.where(bit, f_hi, fm)
        else:
            a1, e0 = _split_points(span, lo, mid)
            f = dlm.cdf_at(terms, torch.stack([e0, a1]))
            bit = a >= e0                                                    # left half empty: bit 1
            # coded where both halves hold allowed values: never at a node with one allowed
            # value v (there a = v, e = v + 1, so a1 >= e or e0 <= a), so no variable is left out
            coded_rows = torch.nonzero((a < e0) & (a1 < e))[:, 0]
            if len(coded_rows):
                masses = torch.stack([f[0] - f_lo, f_hi - f[1]], -1).index_select(0, coded_rows)
                starts = np.searchsorted(coded_rows.cpu().numpy(), run_starts)
                bit[coded_rows] = torch.from_numpy(pop_runs(masses, starts)).to(device).bool()
            # down to the chosen half: its span and F at its ends (where the other half is
            # empty, or the node holds one allowed value, these are the node's own again)
            a, f_lo = torch.where(bit, a1, a), torch.where(bit, f[1], f_lo)
            e, f_hi = torch.where(bit, e, e0), torch.where(bit, f_hi, f[0])
        lo = torch.where(bit, mid, lo)
    symbols = lo.to(torch.int32).view(b, n).cpu().numpy()
    for i in live:
        results[i] = symbols[i]
    return results

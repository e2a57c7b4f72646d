"""The low byte of 16-bit samples, coded given the high byte (bit-depth upscaling, paper §3.3).

A 16-bit picture is split into its high bytes, an ordinary 8-bit picture coded by the ARDM,
and its low bytes, coded here once every high byte is known. The network saw only 8-bit
pictures, and a low byte is not one (it wraps around at every step of the high byte), so the
low bytes get their own model: an exact integer adaptive context model over the full 16-bit
values.

Order: rows top to bottom; in each row the even columns, then the odd ones (two groups a
row, every channel at once). A group's samples are predicted from decoded full values (the
row above; for odd columns also their left and right neighbours) and its own high byte: the
prediction is clamped into the sample's window [256 H, 256 H + 255], so a sample's low
byte L is coded as the residual e = 256 H + L - p (-255..255) of that window.

Coding: L as 8 binary decisions, most significant first, like ``coder.encode_binary``. A
node [lo, hi) of L has the mass of its residuals under its context's counts: a cumulative
table lookup, no loop over values. Contexts: channel, column parity and the bit length of
the local activity (neighbours' differences). Counts start flat and are updated after each
group, so a group's probabilities depend only on groups before it: the encoder knows them
all and pushes one stream; the decoder pops a group level by level. Integers throughout,
and float64 only for one exact division per decision (as in coder.py): every machine gets
the same stream.

Value sets: 10/12/14-bit data stored left-shifted, bit-replicated (8-bit x 257) or
rescaled uses a few low bytes per high byte. A channel may carry the set of its 16-bit
values (a 65536-bit map, zlib-compressed); then a node's halves are narrowed to their
allowed values and a decision whose half holds none is implied, not coded.

Stream: a kind byte, 0 (coded): per channel a kind byte (0 ANY, 1 SET: varint length and the
zlib-compressed map, bit v & 7 of byte v >> 3), then the ANS words; or 1 (stored, where
coding would cost more, as for noise): the low bytes as they are, (H, W, C) row-major.
"""
from __future__ import annotations

import zlib

import numpy as np

from .coder import Decoder, Encoder
from .container import _varint    # LEB128, as everywhere in the formats
from .errors import FormatError

__all__ = ["encode", "decode", "describe", "split", "join"]

ANY, SET = 0, 1
CODED, STORED = 0, 1
ACTIVITY = 18                 # contexts per (channel, parity): bit length of the activity, 0..17
OUTSIDE = 10                  # how far the prediction lies outside the window: bit length, capped
PLACES = 2 * OUTSIDE - 1      # inside; below by 1 .. 9+ bits; above by 1 .. 9+ bits
RESIDUALS = 511               # e = -255..255
PRIOR_SCALE = 64              # starting mass at e = 0 (``_prior``); a residual gains STEP per sighting
STEP = 16
HALVE_AT = 1 << 16            # sightings in a context before its counts are halved (adapts, stays small)
_MAP_BYTES = 65536 // 8


def split(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint16 (H, W, C) -> (high bytes, low bytes), uint8 each."""
    return (pixels >> 8).astype(np.uint8), (pixels & 0xFF).astype(np.uint8)


def join(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """The inverse of ``split``."""
    return (high.astype(np.uint16) << 8) | low


# ---------------------------------------------------------------- value sets


def _value_map(values: np.ndarray) -> np.ndarray:
    """(65536,) bool: the 16-bit values that occur."""
    used = np.zeros(65536, bool)
    used[values.reshape(-1)] = True
    return used


def _spans(used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each high byte H and x in 0..256: the first allowed low byte >= x (256: none) and
    one past the last allowed < x, as (256, 257) int16 tables (an empty row allows all)."""
    table = used.reshape(256, 256)
    table = np.where(table.any(1, keepdims=True), table, True)
    x = np.arange(257)
    at = np.concatenate([table, np.ones((256, 1), bool)], 1)
    first = np.minimum.accumulate(np.where(at, x, 256)[:, ::-1], axis=1)[:, ::-1]
    last = np.maximum.accumulate(np.where(table, x[1:], 0), axis=1)
    end = np.concatenate([np.zeros((256, 1), np.int64), last], 1)
    return first.astype(np.int16), end.astype(np.int16)


def _pack_map(used: np.ndarray) -> bytes:
    packed = np.packbits(used, bitorder="little").tobytes()
    return zlib.compress(packed, 9)


def _unpack_map(blob: bytes) -> np.ndarray:
    try:
        d = zlib.decompressobj()
        packed = d.decompress(blob, _MAP_BYTES + 1)
    except zlib.error:
        raise FormatError("corrupt .ardm file: bad value map in the low-byte stream") from None
    if len(packed) != _MAP_BYTES or not d.eof or d.unused_data:
        raise FormatError("corrupt .ardm file: bad value map in the low-byte stream")
    return np.unpackbits(np.frombuffer(packed, np.uint8), bitorder="little").astype(bool)


# ---------------------------------------------------------------- the model


class _Model:
    """Count tables and predictions shared by encoder and decoder (identical integer state)."""

    def __init__(self, high: np.ndarray, maps: list[np.ndarray | None]):
        self.h, self.w, self.c = high.shape
        self.high = high.astype(np.int64)
        self.full = (self.high << 8) + 128              # decoded values; the window centre until then
        contexts = self.c * 2 * 2 * ACTIVITY * PLACES
        self.counts = np.zeros((contexts, RESIDUALS), np.int64)
        self.prior = _prior(contexts)
        self.seen = np.zeros(contexts, np.int64)
        self.cum = np.zeros((contexts, RESIDUALS + 1), np.int64)
        self._refresh(np.arange(contexts))
        # per channel span tables, stacked: (C, 256, 257); channels without a set allow all
        spans = [_spans(m if m is not None else np.ones(65536, bool)) for m in maps]
        self.first = np.stack([f for f, _ in spans]).astype(np.int64).reshape(-1)
        self.end = np.stack([e for _, e in spans]).astype(np.int64).reshape(-1)
        self.restricted = any(m is not None for m in maps)

    def _refresh(self, rows: np.ndarray) -> None:
        mass = self.prior[rows] + STEP * self.counts[rows]
        self.cum[rows, 1:] = np.cumsum(mass, axis=1)

    def groups(self):
        """(row, first column) of each group, in coding order."""
        for r in range(self.h):
            yield r, 0
            if self.w > 1:
                yield r, 1

    def context(self, r: int, c0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For the group (row r, columns c0, c0 + 2, ...): prediction p (n, C) clamped into each
        window, as the low-byte offset pl (0..255), the high bytes (n, C), and context rows (n, C)."""
        full, high = self.full, self.high
        cols = np.arange(c0, self.w, 2)
        hi = high[r, cols]                                          # (n, C)
        left = full[r, np.maximum(cols - 1, 0)]
        right = full[r, np.minimum(cols + 1, self.w - 1)]
        if r > 0:
            up = full[r - 1, cols]
            ul, ur = full[r - 1, np.maximum(cols - 1, 0)], full[r - 1, np.minimum(cols + 1, self.w - 1)]
        if c0 == 0 and r > 2 or c0 == 1 and r > 1:
            # two predictors, blended by how well each did just above (row r - 1, columns c - 1 .. c + 1)
            candidates = _vertical if c0 == 0 else _horizontal
            p1, p2 = candidates(full, r, cols)
            e1, e2 = 0, 0
            for shift in (-1, 0, 1):
                near = np.clip(cols + shift, 0, self.w - 1)
                q1, q2 = candidates(full, r - 1, near)
                e1, e2 = e1 + np.abs(q1 - full[r - 1, near]), e2 + np.abs(q2 - full[r - 1, near])
            p = (p1 * (e2 + 1) + p2 * (e1 + 1)) // (e1 + e2 + 2)
            act = np.minimum(e1, e2)
        elif c0 == 1:
            p = _horizontal(full, r, cols)[0] if r == 0 else _horizontal(full, r, cols)[1]
            act = np.abs(left - right)
        elif r > 0:
            p = full[r - 1, cols] if r == 1 else _vertical(full, r, cols)[1]
            act = np.abs(ul - ur) + np.abs(up - (hi << 8) - 128)
        else:
            p = (hi << 8) + 128
            act = np.abs(left - right)
        # 8-bit data widened by bit replication (v = 257 x) has L = H; where the decoded
        # neighbours all do, predict that (anti-aliased edges of a widened 8-bit picture)
        near = (up, ul, ur) if c0 == 0 and r > 0 else (left, right, up) if c0 == 1 and r > 0 else \
            (left, right) if c0 == 1 else ()
        replicated = np.zeros(hi.shape, bool) if not near else np.logical_and.reduce([(v >> 8) == (v & 255) for v in near])
        p = np.where(replicated, hi * 257, p)
        base = hi << 8
        pl = np.clip(p - base, 0, 255)
        bucket = np.minimum(_bit_length(act), ACTIVITY - 1)
        below = np.minimum(_bit_length(np.maximum(base - p, 0)), OUTSIDE - 1)
        above = np.minimum(_bit_length(np.maximum(p - base - 255, 0)), OUTSIDE - 1)
        place = np.where(above > 0, above + OUTSIDE - 1, below)
        channel = np.arange(self.c)[None, :]
        ctx = (((channel * 2 + (c0 & 1)) * 2 + replicated) * ACTIVITY + bucket) * PLACES + place
        return cols, pl, hi, ctx

    def rows(self, ctx: np.ndarray, pl: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Flat (n,) offsets, computed once a group: into ``cum`` where residual index 0 of each
        variable's context and window lies, and into the span tables of its (channel, H)."""
        base = ctx * (RESIDUALS + 1) + 255 - pl
        at = (np.arange(len(hi)) % self.c) * 65792 + hi * 257 if self.restricted else None
        return base, at

    def masses(self, base: np.ndarray, at: np.ndarray | None, lo: np.ndarray, mid: np.ndarray, top: np.ndarray):
        """(m0, m1, coded, implied bit) for nodes [lo, top) split at mid, flat (n,) arrays."""
        cum = self.cum.reshape(-1)
        if at is None:
            f_lo, f_mid, f_top = cum[base + lo], cum[base + mid], cum[base + top]
            return f_mid - f_lo, f_top - f_mid, None, None
        a0, e0 = self.first[at + lo], self.end[at + mid]
        a1, e1 = self.first[at + mid], self.end[at + top]
        left_empty, right_empty = a0 >= e0, a1 >= e1
        coded = ~(left_empty | right_empty)
        m0 = np.where(left_empty, 0, cum[base + np.maximum(e0, a0)] - cum[base + a0])
        m1 = np.where(right_empty, 0, cum[base + np.maximum(e1, a1)] - cum[base + a1])
        return m0, m1, coded, left_empty

    def update(self, r: int, cols: np.ndarray, ctx: np.ndarray, pl: np.ndarray, low: np.ndarray) -> None:
        self.full[r, cols] = (self.high[r, cols] << 8) + low
        e = low.reshape(-1) - pl.reshape(-1) + 255
        flat = ctx.reshape(-1)
        np.add.at(self.counts.reshape(-1), flat * RESIDUALS + e, 1)
        np.add.at(self.seen, flat, 1)
        rows = np.unique(flat)
        full = rows[self.seen[rows] >= HALVE_AT]
        if len(full):
            self.counts[full] = (self.counts[full] + 1) >> 1
            self.seen[full] >>= 1
        self._refresh(rows)


def _prior(contexts: int) -> np.ndarray:
    """(contexts, RESIDUALS) starting masses: heavy-tailed around e = 0, PRIOR_SCALE w // (w + |e|)
    + 1, as wide as the context's activity (w = 2^(bucket - 1)): an integer shape, no floats."""
    bucket = (np.arange(contexts) // PLACES) % ACTIVITY
    width = (1 << np.maximum(bucket - 1, 0))[:, None]
    e = np.abs(np.arange(RESIDUALS) - 255)[None, :]
    return PRIOR_SCALE * width // (width + e) + 1


def _vertical(full: np.ndarray, r: int, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Even columns' predictors from the two rows above (r >= 2): the value above, and the
    line through the two values above."""
    up = full[r - 1, cols]
    return up, 2 * up - full[r - 2, cols]


def _horizontal(full: np.ndarray, r: int, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Odd columns' predictors (left and right decoded; r >= 1 for the second): the mean of
    left and right, and that plus the row above's curvature (exact on planes)."""
    w = full.shape[1]
    left = full[r, np.maximum(cols - 1, 0)]
    right = full[r, np.where(cols + 1 < w, cols + 1, np.maximum(cols - 1, 0))]
    mean = (left + right + 1) >> 1
    if r == 0:
        return mean, mean
    up = full[r - 1, cols]
    ul = full[r - 1, np.maximum(cols - 1, 0)]
    ur = full[r - 1, np.where(cols + 1 < w, cols + 1, np.maximum(cols - 1, 0))]
    return mean, mean + ((2 * up - ul - ur) >> 1)


_POWERS = 1 << np.arange(63, dtype=np.int64)


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bits needed for each non-negative int64 (0 for 0), exactly (no float log)."""
    return np.searchsorted(_POWERS, x, side="right")


def _probabilities(m0: np.ndarray, m1: np.ndarray) -> np.ndarray:
    """Integer masses -> (n, 2) float64 rows, one exact division each (as in coder.py)."""
    f = np.stack([m0, m1], 1).astype(np.float64)
    f /= (f[:, 0] + f[:, 1])[:, None]
    return f


def _walk(model: _Model, decide) -> None:
    """Code every group: ``decide(level, m0, m1, coded, implied, r, cols)`` returns the level's
    bits (n,) for the group's variables, flat in (column, channel) order."""
    for r, c0 in model.groups():
        cols, pl, hi, ctx = model.context(r, c0)
        base, at = model.rows(ctx.reshape(-1), pl.reshape(-1), hi.reshape(-1))
        lo = np.zeros(len(base), np.int64)
        for level in range(8):
            half = 128 >> level
            mid = lo + half
            m0, m1, coded, left_empty = model.masses(base, at, lo, mid, mid + half)
            bit = decide(level, m0, m1, coded, left_empty, r, cols)
            lo = np.where(bit, mid, lo)
        model.update(r, cols, ctx, pl, lo.reshape(pl.shape))


def encode(high: np.ndarray, low: np.ndarray) -> tuple[bytes, float]:
    """(H, W, C) uint8 high and low bytes -> (the low-byte stream, its ideal bits, maps included).

    Each channel's value map is chosen by measurement: none, the values that occur, or the
    lattice of values whose always-zero low bits are zero (left-shifted data: a map that
    costs a few bytes); the cheapest in ideal bits plus map bytes wins."""
    channels = high.shape[2]
    options = [_map_options(high[..., k], low[..., k]) for k in range(channels)]
    runs = {}
    for j in range(max(len(o) for o in options)):
        pick = tuple(min(j, len(o) - 1) for o in options)
        runs[pick] = _pass(high, low, [o[i] for o, i in zip(options, pick)])
    best = tuple(min(range(len(o)), key=lambda i: _cost(runs, k, i) + 8 * len(o[i][1])) for k, o in enumerate(options))
    if best not in runs:
        runs[best] = _pass(high, low, [o[i] for o, i in zip(options, best)])
    probs, bits, per_channel = runs[best]
    head = bytearray([CODED])
    for o, i in zip(options, best):
        blob = o[i][1]
        head += bytes([SET]) + _varint(len(blob)) + blob if blob else bytes([ANY])
    enc = Encoder()
    if len(bits):
        enc.push(bits, probs)
    stream = bytes(head) + enc.finish()
    if len(stream) > 1 + low.size:
        return bytes([STORED]) + np.ascontiguousarray(low).tobytes(), 8.0 * (1 + low.size)
    return stream, sum(per_channel) + 8 * len(head)


def _map_options(high: np.ndarray, low: np.ndarray) -> list[tuple[np.ndarray | None, bytes]]:
    """A channel's candidate (value map, its packed bytes): none; the lattice of its
    always-zero low bits, if any; the exact set of its values."""
    out: list[tuple[np.ndarray | None, bytes]] = [(None, b"")]
    zeros = 0xFF & ~int(np.bitwise_or.reduce(low.reshape(-1), initial=0))
    if zeros:
        lattice = (np.arange(65536) & zeros) == 0
        out.append((lattice, _pack_map(lattice)))
    used = _value_map(_join16(high, low))
    if not out or not np.array_equal(used, out[-1][0]):
        out.append((used, _pack_map(used)))
    return out


def _cost(runs: dict, k: int, i: int) -> float:
    """Channel k's ideal bits under option i, from a pass that used it (inf if none did)."""
    costs = [run[2][k] for pick, run in runs.items() if pick[k] == i]
    return costs[0] if costs else float("inf")


def _pass(high: np.ndarray, low: np.ndarray, options: list[tuple[np.ndarray | None, bytes]]
          ) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Every coded decision in the decoder's order: probabilities (n, 2), bits (n,) int32, and
    each channel's ideal bits (value maps not counted), with each channel's (map, bytes)."""
    channels = high.shape[2]
    model = _Model(high, [m for m, _ in options])
    low64 = low.astype(np.int64)
    probs, bits = [], []
    per_channel = np.zeros(channels)

    def decide(level, m0, m1, coded, left_empty, r, cols):
        bit = (low64[r, cols].reshape(-1) >> (7 - level)) & 1
        keep = np.arange(len(bit)) if coded is None else np.flatnonzero(coded)
        p, b = _probabilities(m0[keep], m1[keep]), bit[keep]
        probs.append(p)
        bits.append(b)
        per_channel[:] += np.bincount(keep % channels, -np.log2(p[np.arange(len(b)), b]), minlength=channels)
        return bit.astype(bool)

    _walk(model, decide)
    if not probs:
        return np.zeros((0, 2)), np.zeros(0, np.int32), [0.0] * channels
    return np.concatenate(probs), np.concatenate(bits).astype(np.int32), per_channel.tolist()


def _join16(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    return (high.astype(np.int64) << 8) | low


def decode(high: np.ndarray, data: bytes) -> np.ndarray:
    """The low bytes (H, W, C) uint8 of ``encode``'s stream, given the high bytes; FormatError
    for a stream that does not parse or decode cleanly (a wrong value is left to the pixel CRC)."""
    if data[:1] == bytes([STORED]):
        if len(data) != 1 + high.size:
            raise FormatError("corrupt .ardm file: stored low bytes of the wrong size")
        return np.frombuffer(data, np.uint8, offset=1).reshape(high.shape).copy()
    maps, pos = _parse_head(data, high.shape[2])
    model = _Model(high, maps)
    dec = Decoder(data[pos:])
    # A stream of W bytes holds at most about 8 W bits of information (codec.stream_bit_budget
    # has the margin): a truncated stream is refused as soon as it runs dry.
    budget = [1.5 * (8 * (len(data) - pos) + 64) + 256]

    def pop(m0, m1):
        probs = _probabilities(m0, m1)
        bits = dec.pop(probs)
        budget[0] += float(np.log2(probs[np.arange(len(bits)), bits]).sum())
        if budget[0] < 0:
            raise ValueError("more information than its bytes can hold: truncated or damaged")
        return bits.astype(bool)

    def decide(level, m0, m1, coded, left_empty, r, cols):
        if coded is None:
            return pop(m0, m1)
        bit = left_empty.copy()
        if coded.any():
            bit[coded] = pop(m0[coded], m1[coded])
        return bit

    try:
        _walk(model, decide)
    except (ValueError, RuntimeError, OverflowError) as e:
        raise FormatError(f"corrupt .ardm file: low-byte stream does not decode ({e})") from None
    if not dec.finished_cleanly():
        raise FormatError("corrupt .ardm file: low-byte stream has data left over")
    return (model.full & 0xFF).astype(np.uint8)


def describe(data: bytes, channels: int) -> str:
    """A low-byte stream in a few words (``ardmzip info``)."""
    if data[:1] == bytes([STORED]):
        return "low bytes stored"
    try:
        maps, _ = _parse_head(data, channels)
    except FormatError:
        return "low bytes (damaged)"
    return f"low bytes coded, value maps on {sum(m is not None for m in maps)} of {channels} channels"


def _parse_head(data: bytes, channels: int) -> tuple[list[np.ndarray | None], int]:
    bad = FormatError("corrupt .ardm file: bad low-byte stream header")
    if not data or data[0] != CODED:
        raise bad
    pos, maps = 1, []
    for _ in range(channels):
        if pos >= len(data) or data[pos] not in (ANY, SET):
            raise bad
        kind, pos = data[pos], pos + 1
        if kind == ANY:
            maps.append(None)
            continue
        n, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 28:
                raise bad
            byte, pos = data[pos], pos + 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if n > len(data) - pos:
            raise bad
        maps.append(_unpack_map(data[pos:pos + n]))
        pos += n
    return maps, pos

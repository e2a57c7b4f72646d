"""Chroma blocks: video frames whose colour was stored at half resolution.

Frames decoded from 4:2:0 or 4:2:2 video (Set14's foreman and coastguard, barbara) carry
one Cb/Cr pair per 2x2 or 1x2 block of pixels. Back in RGB, R - G and B - G are then the
same, up to rounding, across each block: once channels c and s of a pixel q in p's block
and channel s of p are known, channel c of p is almost surely

    pred_s = v[p, s] + v[q, c] - v[q, s]      within 2 (on barbara, B from R exactly in 99.9%)

The network sees few such frames in training and spreads its mass wider, so for planes the
detector flags, both coder sides mix its categorical with a residual table the encoder
measured on the picture and wrote in the stream: per (target channel c, sibling s), weights
of the residuals -2..2 and of the network. With several siblings known, the residual
tables multiply (two predictions that differ by one pin the value down); the sharpest
sibling's table says how much the tables weigh against the network. Integer arithmetic,
and every row sums below 2^53, so the coder's float64 sees exact integers.
"""
from __future__ import annotations

import numpy as np
import torch

from . import jit
from .dlm import ALL_VALUES, apply_mask, frequencies_to_probabilities

# Block shapes tried, biggest first (a 4:2:0 frame also passes the 1x2 and 2x1 tests).
SHAPES = ((2, 2), (1, 2), (2, 1))
# Share of non-anchor pixels whose R-G and B-G lie within 1 of their block anchor's for a
# plane to be coded with the tables: 0.98-1.00 on the video frames above, <= 0.78 on the
# other photos of the eval sets.
MIN_SHARE = 0.95
RADIUS = 2                    # residuals -RADIUS..RADIUS have weights; the network covers the rest
TABLE_WIDTH = 2 * RADIUS + 2  # residual weights, then the network's
PAIRS = tuple((c, s) for c in range(3) for s in range(3) if s != c)    # table order in the stream
SIBLING_PREFERENCE = (1, 0, 2)  # ties between equally sharp siblings: green first
NETWORK_FLOOR = 0.01          # the network's weight on top of the residuals beyond RADIUS
COMPONENT_ONE = 1 << 10       # the product of tables is normalised to this mass


def _whole_blocks(a: np.ndarray, by: int, bx: int, oy: int, ox: int) -> np.ndarray:
    """The whole blocks of an (H, W, ...) array whose blocks start at row oy, column ox, as
    (blocks down, by, blocks across, bx, ...); anchors at [:, 0, :, 0]."""
    a = a[oy:, ox:]
    nby, nbx = a.shape[0] // by, a.shape[1] // bx
    return a[:nby * by, :nbx * bx].reshape(nby, by, nbx, bx, *a.shape[2:])


def _colour_differences(plane: np.ndarray) -> np.ndarray:
    """(H, W, 2) int16: R - G and B - G."""
    d = plane.astype(np.int16)
    return np.stack([d[..., 0] - d[..., 1], d[..., 2] - d[..., 1]], -1)


class _NearAnchor:
    """near(dy, dx)[y, x]: pixel (y + dy, x + dx)'s R-G and B-G lie within 1 of pixel (y, x)'s,
    (H - dy, W - dx) bool, computed once per displacement: every block shape and offset
    ``detect`` tries reads the same three ((0, 1), (1, 0), (1, 1)) at its own anchors."""

    def __init__(self, diff: np.ndarray):
        self.diff, self.cache = diff, {}

    def __call__(self, dy: int, dx: int) -> np.ndarray:
        if (dy, dx) not in self.cache:
            h, w = self.diff.shape[:2]
            self.cache[dy, dx] = (np.abs(self.diff[dy:, dx:] - self.diff[:h - dy, :w - dx]) <= 1).all(-1)
        return self.cache[dy, dx]


def _share(near: _NearAnchor, by: int, bx: int, oy: int, ox: int) -> float:
    h, w = near.diff.shape[:2]
    nby, nbx = max(0, h - oy) // by, max(0, w - ox) // bx        # whole blocks
    if nby == 0 or nbx == 0:
        return 0.0
    close = sum(int(near(dy, dx)[oy:oy + nby * by:by, ox:ox + nbx * bx:bx].sum())
                for dy in range(by) for dx in range(bx) if dy or dx)      # anchors do not count
    return close / (nby * nbx * (by * bx - 1))


def block_share(plane: np.ndarray, by: int, bx: int, oy: int, ox: int) -> float:
    """Share of the non-anchor pixels of whole blocks (top-left pixel = anchor, blocks starting
    at row oy, column ox) whose R-G and B-G are within 1 of their anchor's; 0 without such pixels."""
    return _share(_NearAnchor(_colour_differences(plane)), by, bx, oy, ox)


def detect(plane: np.ndarray) -> tuple[int, int, int, int] | None:
    """(block rows, block columns, row offset, column offset) of an (H, W, 3) plane's chroma
    blocks, or None when no shape reaches MIN_SHARE."""
    near = _NearAnchor(_colour_differences(plane))
    for by, bx in SHAPES:
        best = max(((_share(near, by, bx, oy, ox), oy, ox) for oy in range(by) for ox in range(bx)))
        if best[0] >= MIN_SHARE:
            return by, bx, best[1], best[2]
    return None


def measure_tables(plane: np.ndarray, blocks: tuple[int, int, int, int]) -> np.ndarray:
    """The residual tables for a plane, (3, 3, TABLE_WIDTH) uint8 (diagonal unused, zero):
    each pair's residual shares against block anchors, scaled so the largest weight is 255;
    the network's weight is the share beyond RADIUS plus NETWORK_FLOOR (at least 1)."""
    cells = _whole_blocks(plane.astype(np.int64), *blocks)
    anchor = cells[:, :1, :, :1]
    others = np.ones(cells.shape[:4], bool)
    others[:, 0, :, 0] = False
    tables = np.zeros((3, 3, TABLE_WIDTH), np.uint8)
    for c, s in PAIRS:
        r = (cells[..., c] - cells[..., s] - anchor[..., c] + anchor[..., s])[others]
        share = np.array([np.mean(r == k) if r.size else 0.0 for k in range(-RADIUS, RADIUS + 1)])
        share = np.append(share, (np.mean(np.abs(r) > RADIUS) if r.size else 1.0) + NETWORK_FLOOR)
        weights = np.round(share / share.max() * 255)
        weights[-1] = max(weights[-1], 1)
        tables[c, s] = weights
    return tables


def _sibling_predictions(var: np.ndarray, flat: np.ndarray, step_of: np.ndarray, step: int, width: int,
                         blocks: tuple[int, int, int, int], s: int) -> tuple[np.ndarray, np.ndarray]:
    """(pred_s (n,) int64, has one (n,) bool): q is the first pixel of p's block, row-major,
    other than p, whose channels c and s were revealed before ``step``; p's s must be too."""
    by, bx, oy, ox = blocks
    height = len(flat) // (3 * width)
    p, c = var // 3, var % 3
    y, x = p // width, p % width
    y0, x0 = y - (y - oy) % by, x - (x - ox) % bx
    pred = np.zeros(len(var), dtype=np.int64)
    has = np.zeros(len(var), dtype=bool)
    sibling_known = (c != s) & (step_of[p * 3 + s] < step)
    for dy in range(by):
        for dx in range(bx):
            qy, qx = y0 + dy, x0 + dx
            q = qy * width + qx
            ok = ~has & sibling_known & (qy >= 0) & (qy < height) & (qx >= 0) & (qx < width) & (q != p)
            q3 = np.where(ok, q, 0) * 3
            ok &= (step_of[q3 + c] < step) & (step_of[q3 + s] < step)
            value = flat[p * 3 + s].astype(np.int64) + flat[q3 + c].astype(np.int64) - flat[q3 + s].astype(np.int64)
            pred[ok] = value[ok]
            has |= ok
    return pred, has


def mix(freq: torch.Tensor, var: np.ndarray, flat: np.ndarray, step_of: np.ndarray, step: int, width: int,
        blocks: tuple[int, int, int, int], tables: np.ndarray, probabilities: bool = False,
        mask: tuple[torch.Tensor, np.ndarray] | None = None) -> torch.Tensor | np.ndarray:
    """freq (n, 256) mixed with the residual tables where a prediction exists, as int64; or
    with ``probabilities`` the coder's float64 rows of those integers
    (dlm.frequencies_to_probabilities of them, the same bits). ``mask`` (table, row): freq is
    first masked as dlm.apply_mask(freq, table, row) does.

    With T = sum(freq), the product P(x) of the known siblings' table weights at x - pred_s
    (zero outside any of their windows, and outside 0..255), normalised to
    N(x) = P(x) * COMPONENT_ONE // sum(P), and the sharpest known sibling's residual mass m
    and network weight w (sharpness: its residual-0 weight over its total; ties go to
    SIBLING_PREFERENCE order):
        freq'(x) = freq(x) * w * COMPONENT_ONE + N(x) * m * T.
    Rows without a prediction (or whose windows do not overlap) keep freq. Row sums stay
    below 2^31 * 2^10 * 2^11 = 2^52. Only the 2 RADIUS + 1 values around the sharpest
    sibling's prediction can have P > 0, so the tables are worked on that window alone.
    On the CPU with the compiled kernels: one pass per variable (chroma_jit.py) masks, mixes
    and writes the row, the same integers (and probabilities) without the masked or mixed rows
    ever being stored."""
    t = tables.astype(np.int64)
    sharpness = t[..., RADIUS] * (1 << 20) // np.maximum(t.sum(-1), 1)        # (3, 3)
    if freq.device.type == "cpu" and jit.available():
        from . import chroma_jit
        rows = (freq if freq.dtype in (torch.int32, torch.int64) else freq.to(torch.int64)).contiguous()
        out = np.empty(rows.shape, np.float64 if probabilities else np.int64)
        table, row = mask if mask is not None else (ALL_VALUES, np.zeros(len(var), np.int64))
        jit.run(chroma_jit.mix, rows.numpy(), table.numpy(), row, np.ascontiguousarray(var, dtype=np.int64), flat,
                step_of, step, width, np.asarray(blocks, dtype=np.int64), t, sharpness, chroma_jit.SIBLINGS,
                probabilities, out)
        return out if probabilities else torch.from_numpy(out)
    if mask is not None:
        freq = apply_mask(freq, *mask)
    if probabilities:
        return frequencies_to_probabilities(mix(freq, var, flat, step_of, step, width, blocks, tables))
    out = freq.to(torch.int64)
    c = var % 3
    found = [(s, *_sibling_predictions(var, flat, step_of, step, width, blocks, s)) for s in SIBLING_PREFERENCE]
    known = np.zeros(len(var), dtype=bool)
    best, best_key = np.zeros(len(var), dtype=np.int64), np.full(len(var), -1, dtype=np.int64)
    centre = np.zeros(len(var), dtype=np.int64)
    for s, pred, has in found:
        key = np.where(has, sharpness[c, s], -1)
        take = key > best_key
        best[take], best_key[take], centre[take] = s, key[take], pred[take]
        known |= has
    rows = np.flatnonzero(known)
    if not len(rows):
        return out
    c, best = c[rows], best[rows]
    x = centre[rows, None] + np.arange(-RADIUS, RADIUS + 1)                      # (m, 2R+1)
    product = ((x >= 0) & (x <= 255)).astype(np.int64)
    for s, pred, has in found:
        residual = x - pred[rows, None]
        inside = np.abs(residual) <= RADIUS
        weight = np.take_along_axis(t[c, s, :TABLE_WIDTH - 1], np.where(inside, residual + RADIUS, 0), 1) * inside
        product = np.where(has[rows, None], product * weight, product)
    total_p = product.sum(1)
    keep = total_p > 0
    rows, c, best, x, product, total_p = rows[keep], c[keep], best[keep], x[keep], product[keep], total_p[keep]
    if not len(rows):
        return out
    component = product * COMPONENT_ONE // total_p[:, None]
    chosen = t[c, best]                                                          # (m, TABLE_WIDTH)
    dev = freq.device
    index = torch.from_numpy(rows).to(dev)
    sub = out[index]
    mixed = sub * torch.from_numpy(chosen[:, -1:]).to(dev) * COMPONENT_ONE
    added = component * chosen[:, :-1].sum(1, keepdims=True)                    # (m, 2R+1), times T below
    columns = torch.from_numpy(np.clip(x, 0, 255)).to(dev)
    mixed.scatter_add_(1, columns, torch.from_numpy(added).to(dev) * sub.sum(1, keepdim=True))
    out[index] = mixed
    return out

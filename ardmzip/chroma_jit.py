"""Chroma blocks (chroma.py) as one compiled CPU kernel: the same integers.

chroma.mix finds each variable's sibling predictions with whole-array numpy passes, then
turns the (n, 256) int32 rows into int64 and mixes the predicted rows in with a gather, a
scatter-add and a write-back: on Set14's video frames (barbara, foreman, coastguard) those
passes over every row took as long as computing the rows. Here each variable finds its
predictions, weighs them and writes its mixed row in one pass. Every value is an integer in
int64 below 2^53 (chroma.mix's bounds), so nothing depends on the thread count. Imported only
where numba is (jit.available).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .chroma import COMPONENT_ONE, RADIUS, SIBLING_PREFERENCE
from .coder_jit import masked_row
from .jit import njit

SIBLINGS = np.array(SIBLING_PREFERENCE, np.int64)


BLOCK = 64          # variables per parallel task (scratch rows allocated per task)


@njit(parallel=True)
def mix(freq, mask_table, mask_row, var, flat, step_of, step, width, blocks, tables, sharpness, siblings,
        normalise, out):                                                       # pragma: no cover - compiled
    """out[j] = chroma.mix's row j of the masked rows, or with ``normalise`` that row's
    probabilities (each value over the row's sum: dlm.frequencies_to_probabilities' IEEE
    division of the same integers, so the same bits), without the masked or mixed rows ever
    being stored: freq (n, 256) int32 or int64, masked first by row mask_row[j] of the 0/1
    mask_table (coder_jit.masked_row); out (n, 256) int64 or float64;
    var (n,) variable indices; flat the plane's values, step_of each variable's step; blocks
    (by, bx, oy, ox); tables (3, 3, TABLE_WIDTH) int64; sharpness (3, 3) int64; siblings in
    preference order.

    For each sibling s (in that order): the first pixel q of p's block, row-major, other than
    p, whose channels c and s were revealed before ``step`` gives pred_s = v[p, s] + v[q, c] -
    v[q, s], if p's s was revealed too. The sharpest sibling with a prediction (ties: the
    earlier) centres the 2 RADIUS + 1 values; their weight is the product of every predicting
    sibling's table at x - pred_s, normalised to COMPONENT_ONE."""
    n, k = freq.shape
    by, bx, oy, ox = blocks[0], blocks[1], blocks[2], blocks[3]
    height = flat.shape[0] // (3 * width)
    window = 2 * RADIUS + 1
    for block in prange((n + BLOCK - 1) // BLOCK):
        f = np.empty(k, np.int64)
        pred = np.empty(3, np.int64)
        has = np.empty(3, np.bool_)
        product = np.empty(window, np.int64)
        added = np.empty(window, np.int64)
        for j in range(block * BLOCK, min(n, (block + 1) * BLOCK)):
            row_total = masked_row(freq, mask_table, mask_row, j, f)
            u = var[j]
            p, c = u // 3, u % 3
            y, x = p // width, p % width
            y0, x0 = y - (y - oy) % by, x - (x - ox) % bx
            pred[:] = 0
            has[:] = False
            best, best_key, centre, known = -1, np.int64(-1), np.int64(0), False
            for i in range(3):
                s = siblings[i]
                if s == c or step_of[3 * p + s] >= step:
                    continue
                for dy in range(by):
                    qy = y0 + dy
                    for dx in range(bx):
                        qx = x0 + dx
                        q = qy * width + qx
                        if has[s] or qy < 0 or qy >= height or qx < 0 or qx >= width:
                            continue
                        if step_of[3 * q + c] < step and step_of[3 * q + s] < step:   # (so q is not p)
                            pred[s] = np.int64(flat[3 * p + s]) + np.int64(flat[3 * q + c]) - np.int64(flat[3 * q + s])
                            has[s] = True
                if has[s]:
                    known = True
                    if sharpness[c, s] > best_key:
                        best, best_key, centre = s, sharpness[c, s], pred[s]
            total_p = np.int64(0)
            if known:
                for i in range(window):
                    v = centre - RADIUS + i
                    weight = np.int64(1) if 0 <= v <= 255 else np.int64(0)
                    for s in range(3):
                        if has[s]:
                            r = v - pred[s]
                            weight *= tables[c, s, r + RADIUS] if -RADIUS <= r <= RADIUS else 0
                    product[i] = weight
                    total_p += weight
            if total_p == 0:                        # no prediction, or windows that do not overlap
                for v in range(k):
                    out[j, v] = np.float64(f[v]) / np.float64(row_total) if normalise else f[v]
                continue
            network = tables[c, best, window] * COMPONENT_ONE
            residual_mass = np.int64(0)
            for i in range(window):
                residual_mass += tables[c, best, i]
            mixed_total = row_total * network
            for i in range(window):
                added[i] = 0
                if 0 <= centre - RADIUS + i <= 255:
                    added[i] = product[i] * COMPONENT_ONE // total_p * residual_mass * row_total
                    mixed_total += added[i]
            for v in range(k):
                mixed = f[v] * network
                if centre - RADIUS <= v <= centre + RADIUS:
                    mixed += added[v - centre + RADIUS]
                out[j, v] = np.float64(mixed) / np.float64(mixed_total) if normalise else mixed

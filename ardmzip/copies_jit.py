"""Colour copies (copies.py) as one compiled CPU kernel: the same integers.

copies.votes walks the window's ~170 offsets with whole-array numpy operations (each a pass
over every variable of the step), then sums the votes with a bincount and mixes them with the
network's rows in three more (n, 256) int64 passes: for Set14's palette and video-frame
pictures this took more time than the network. Here each variable walks its own window once
and writes its mixed row, freq * network + votes * sum(freq), in the same pass. Every sum is an
integer in int64 (copies.py's bounds), so the values do not depend on the thread count.
Imported only where numba is (jit.available).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .coder_jit import masked_row
from .jit import njit

BLOCK = 64          # variables per parallel task (one vote row allocated per task)


@njit(parallel=True)
def mix(freq, mask_table, mask_row, var, flat, step_of, step, width, radius, weights, network, normalise,
        out):                                                                   # pragma: no cover - compiled
    """out[j] = f[j] * network + votes[j] * sum(f[j]) (copies.mix) of the masked rows f, or with
    ``normalise`` that row's probabilities (each value over the row's sum:
    dlm.frequencies_to_probabilities' IEEE division of the same integers, so the same bits),
    without the masked or mixed rows ever being stored: freq (n, 256) int32 or int64, masked
    first by row mask_row[j] of the 0/1 mask_table (coder_jit.masked_row); out (n, 256) int64
    or float64; var (n,) variable indices; flat the plane's values, step_of each variable's
    step. Each pixel's colour is first packed into one int32 (R << 16 | G << 8 | B) and which of
    its channels are revealed into 3 bits, so that a neighbour's vote is two masked compares."""
    n = var.shape[0]
    pixels = flat.shape[0] // 3
    height = pixels // width
    colour = np.empty(pixels, np.int32)
    shown = np.empty(pixels, np.uint8)
    for p in prange(pixels):
        colour[p] = (np.int32(flat[3 * p]) << 16) | (np.int32(flat[3 * p + 1]) << 8) | np.int32(flat[3 * p + 2])
        shown[p] = ((1 if step_of[3 * p] < step else 0) | (2 if step_of[3 * p + 1] < step else 0)
                    | (4 if step_of[3 * p + 2] < step else 0))
    for block in prange((n + BLOCK - 1) // BLOCK):
        counts = np.zeros(257, np.int64)        # [256]: where a neighbour that does not vote adds
        f = np.empty(256, np.int64)
        for j in range(block * BLOCK, min(n, (block + 1) * BLOCK)):
            counts[:] = 0
            p, c = var[j] // 3, var[j] % 3
            y, x = p // width, p % width
            need, mask, agree, known = 1 << c, 0, 0, 0
            for s in range(3):          # the pixel's other revealed channels: a vote must agree on them
                if s != c and step_of[3 * p + s] < step:
                    shift = 16 - 8 * s
                    need |= 1 << s
                    mask |= 0xFF << shift
                    agree |= np.int32(flat[3 * p + s]) << shift
                    known += 1
            weight = weights[known]
            shift = 16 - 8 * c
            for qy in range(max(0, y - radius), min(height, y + radius + 1)):
                for qx in range(max(0, x - radius), min(width, x + radius + 1)):
                    q = qy * width + qx
                    votes_here = (q != p) & ((shown[q] & need) == need) & ((colour[q] & mask) == agree)
                    counts[(colour[q] >> shift) & 0xFF if votes_here else 256] += weight   # (no branch)
            total = masked_row(freq, mask_table, mask_row, j, f)
            votes = np.int64(0)
            for v in range(256):
                votes += counts[v]
            mixed_total = np.float64(total * network + votes * total)
            for v in range(256):
                mixed = f[v] * network + counts[v] * total
                out[j, v] = np.float64(mixed) / mixed_total if normalise else mixed

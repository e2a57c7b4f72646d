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

from .jit import njit

BLOCK = 64          # variables per parallel task (one vote row allocated per task)


@njit(parallel=True)
def mix(freq, var, flat, step_of, step, width, radius, weights, network, out):   # pragma: no cover - compiled
    """out[j] = freq[j] * network + votes[j] * sum(freq[j]) (copies.mix): freq, out (n, 256)
    int64; var (n,) variable indices; flat the plane's values, step_of each variable's step."""
    n = var.shape[0]
    height = flat.shape[0] // (3 * width)
    for block in prange((n + BLOCK - 1) // BLOCK):
        counts = np.zeros(256, np.int64)
        for j in range(block * BLOCK, min(n, (block + 1) * BLOCK)):
            counts[:] = 0
            p, c = var[j] // 3, var[j] % 3
            y, x = p // width, p % width
            s1, s2 = (c + 1) % 3, (c + 2) % 3
            k1, k2 = step_of[3 * p + s1] < step, step_of[3 * p + s2] < step
            weight = weights[(1 if k1 else 0) + (1 if k2 else 0)]
            m1, m2 = flat[3 * p + s1], flat[3 * p + s2]
            for qy in range(max(0, y - radius), min(height, y + radius + 1)):
                for qx in range(max(0, x - radius), min(width, x + radius + 1)):
                    if qy == y and qx == x:
                        continue
                    q3 = (qy * width + qx) * 3
                    if step_of[q3 + c] >= step:
                        continue
                    if k1 and not (step_of[q3 + s1] < step and flat[q3 + s1] == m1):
                        continue
                    if k2 and not (step_of[q3 + s2] < step and flat[q3 + s2] == m2):
                        continue
                    counts[flat[q3 + c]] += weight
            total = np.int64(0)
            for v in range(256):
                total += freq[j, v]
            for v in range(256):
                out[j, v] = freq[j, v] * network + counts[v] * total

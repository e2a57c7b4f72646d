"""Colour copies: palette pictures mix the network with the colours of revealed neighbours.

A picture with a few hundred colours (Set14's baboon has 220, face 250) repeats the same
exact colours all over a neighbourhood: 38% of face's pixels equal their left neighbour,
and the share decays slowly with distance (23% at distance 8). The network's per-channel
mixtures of logistics cannot put mass on a scattered set of exact values, so both coder
sides mix in the local colour histogram: every revealed pixel q within ``radius`` (Chebyshev)
whose channels agree with p's revealed ones votes for its value of the channel coded:

    freq'(x) = freq(x) * w_net + T * a_k * #{counted q : v[q, c] = x}

with T = sum(freq) and k = how many of p's other channels are revealed (a vote that agrees
on them is worth more). Integer arithmetic; rows sum below 2^31 * 2^8 * 31^2 < 2^50 (radius <= 15),
so the coder's float64 sees exact integers.
"""
from __future__ import annotations

import numpy as np
import torch

from . import jit
from .dlm import ALL_VALUES, apply_mask, frequencies_to_probabilities

DEFAULT_RADIUS = 6            # Set14 baboon / face, K = 16: radius 1 2.224 / 1.433, 4 2.035 / 1.261, 6 1.986 / 1.234
DEFAULT_WEIGHTS = (1, 16, 64)  # a_0, a_1, a_2: votes with no / one / two of p's channels to agree on
DEFAULT_NETWORK = 16
MAX_RADIUS = 15


def offsets(radius: int) -> list[tuple[int, int]]:
    """The window's (dy, dx), row-major, without (0, 0)."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1) if dy or dx]


def votes(var: np.ndarray, flat: np.ndarray, step_of: np.ndarray, step: int, width: int, radius: int,
          weights: tuple[int, int, int]) -> np.ndarray:
    """(n, 256) int64: sum of a_k over the counted neighbours of each variable, by their value."""
    height = len(flat) // (3 * width)
    n = len(var)
    p, c = var // 3, var % 3
    y, x = p // width, p % width
    siblings = [(c + 1) % 3, (c + 2) % 3]
    known = [step_of[3 * p + s] < step for s in siblings]
    weight = np.asarray(weights, dtype=np.int64)[known[0].astype(np.int64) + known[1]]
    own = [flat[3 * p + s] for s in siblings]
    rows, values, amounts = [], [], []
    for dy, dx in offsets(radius):
        qy, qx = y + dy, x + dx
        ok = (qy >= 0) & (qy < height) & (qx >= 0) & (qx < width)
        q3 = np.where(ok, qy * width + qx, 0) * 3
        ok &= step_of[q3 + c] < step
        for s, kn, mine in zip(siblings, known, own):
            ok &= ~kn | ((step_of[q3 + s] < step) & (flat[q3 + s] == mine))
        hit = np.flatnonzero(ok)
        rows.append(hit)
        values.append(flat[q3[hit] + c[hit]])
        amounts.append(weight[hit])
    index = np.concatenate(rows) * 256 + np.concatenate(values).astype(np.int64)
    # integer-valued float64 sums below 2^53 are exact whatever the summation order
    counts = np.bincount(index, weights=np.concatenate(amounts).astype(np.float64), minlength=n * 256)
    return counts.astype(np.int64).reshape(n, 256)


def mix(freq: torch.Tensor, var: np.ndarray, flat: np.ndarray, step_of: np.ndarray, step: int, width: int,
        radius: int, weights: tuple[int, int, int], network: int, probabilities: bool = False,
        mask: tuple[torch.Tensor, np.ndarray] | None = None) -> torch.Tensor | np.ndarray:
    """freq (n, 256) mixed with the neighbours' votes, as int64 (rows without votes keep
    freq's proportions); or with ``probabilities`` the coder's float64 rows of those integers
    (dlm.frequencies_to_probabilities of them, the same bits). ``mask`` (table, row): freq is
    first masked as dlm.apply_mask(freq, table, row) does. On the CPU with the compiled
    kernels: one pass per variable (copies_jit.py) masks, mixes and writes the row, the same
    integers (and probabilities) without the masked or mixed rows ever being stored."""
    if freq.device.type == "cpu" and jit.available():
        from . import copies_jit
        rows = (freq if freq.dtype in (torch.int32, torch.int64) else freq.to(torch.int64)).contiguous()
        out = np.empty(rows.shape, np.float64 if probabilities else np.int64)
        table, row = mask if mask is not None else (ALL_VALUES, np.zeros(len(var), np.int64))
        jit.run(copies_jit.mix, rows.numpy(), table.numpy(), row, np.ascontiguousarray(var, dtype=np.int64), flat,
                step_of, step, width, radius, np.asarray(weights, dtype=np.int64), network, probabilities, out)
        return out if probabilities else torch.from_numpy(out)
    if mask is not None:
        freq = apply_mask(freq, *mask)
    if probabilities:
        return frequencies_to_probabilities(mix(freq, var, flat, step_of, step, width, radius, weights, network))
    out = freq.to(torch.int64)
    counted = torch.from_numpy(votes(var, flat, step_of, step, width, radius, weights)).to(freq.device)
    return out * network + counted * out.sum(1, keepdim=True)

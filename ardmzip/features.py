"""Exact context features for the ARDM network, computed with integer arithmetic.

The network never sees raw floats: it sees small integers derived from the revealed
subpixels, so that training and exact inference see the same inputs on every device.
"Give the network the easy statistics for free": besides the revealed values and the
mask, every pixel gets leave-one-out means of the revealed neighbours at four window
sizes, expressed relative to an anchor (the mean of the smallest window that has any
revealed neighbour). The anchor is also where the mixture head centres its means.

Box sums come from one integral image (cumulative sums along both axes), four lookups
per window whatever its size: for the 31x31 window ~10x faster than a pooling loop (which
made the features half of all inference time). Nothing here depends on the image size
beyond ``HALO`` pixels, so a crop computes the same features as the full image in its
interior.

All of it is integer arithmetic carried in floating point, where every value is an exact
integer: the integral in float64 (partial sums below 2^53 for any picture this codec takes),
the colour statistics in float32 (a window's sums stay below 961 x 255 < 2^24), the
cross-channel fit in float64 (products below 2^40). A floor division floor(p / q) of such
integers is computed as floor(fl(p / q)): IEEE division is correctly rounded, so fl(p / q)
is p / q when that is an integer, and otherwise it stays on the same side of every integer
as long as q * |p / q| * 2^-24 (float32; 2^-53 for float64) is below the distance 1 / q from
p / q to the nearest integer, which holds by a wide margin for the ranges here (checked in
the comments where they are used). Same integers as integer arithmetic on every device,
~25% faster than int32/int64 on the CPU (fewer conversions, vectorised division).
On the CPU, with numba, features_jit.py computes the same integers in one compiled pass per
pixel (~4x faster); this module's torch path serves other devices and the tests' comparisons.

Cross-channel anchor (models with ``cross_anchor``): where another colour channel b of
the same pixel is already revealed, channel a is predicted by a local linear fit over the
neighbours where both are revealed (smallest non-empty window):
``mean_a + alpha * (v_b - mean_b)`` with the least-squares slope alpha clamped to [0, 1]
on a 1/16 grid; the anchor is the rounded average of the predictions from the revealed
siblings. With alpha = 1 this is the inter-channel prediction lossless codecs use (WebP's
subtract-green, JPEG 2000's colour transform) following the local colour; where channels
are unrelated the slope falls to 0 and the anchor to the spatial mean. Sums of squares
and products reach ~6e10, so that part runs in int64; it is all integer arithmetic.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import jit

RADII = (1, 3, 7, 15)          # window half-sizes: 3x3, 7x7, 15x15, 31x31
HALO = max(RADII)              # how far features look
MASK_SCALE = 64                # a boolean becomes 0 / 64 so its weight needs no extra bits
CLAMP = 255                    # every feature lies in [-255, 255]
FEATURES_PER_CHANNEL = 3 + 3 * len(RADII)
N_FEATURES = 3 * FEATURES_PER_CHANNEL


def _floor_div(num: torch.Tensor, den: torch.Tensor | float) -> torch.Tensor:
    """floor(num / den) for floating tensors holding integers, den > 0 (exact within the ranges
    of the module docstring: |num / den| * den^2 * 2^-24 < 1 for float32)."""
    return torch.div(num, den).floor_()


def _round_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """round(num / den) for floating tensors holding integers, den > 0, halves up: floor((2 num
    + den) / (2 den)), exact while 2 |num| + den stays below 2^24 (float32) / 2^53 (float64)
    and den below ~2^12 / ~2^26."""
    return _floor_div(2 * num + den, 2 * den)


CHANNEL_PAIRS = ((0, 1), (0, 2), (1, 2))
# _cross_anchor's six predictions: pair i's a from its b, then its b from its a
_SOURCES = [b for _, b in CHANNEL_PAIRS] + [a for a, _ in CHANNEL_PAIRS]
_TARGETS = torch.tensor([a for a, _ in CHANNEL_PAIRS] + [b for _, b in CHANNEL_PAIRS])


class FeatureState:
    """What the features of one (strip of a) picture need, computed once: the per-pixel
    statistics and their integral image. ``rows(r0, r1)`` then gives the features of any
    band of rows from differences of the integral, with no halo to recompute, so the network
    can run band by band (model.IntegerNet.trunk_banded) on the same values.

    values: (B, 3, H, W) integer tensor 0..255 (hidden entries may hold anything).
    mask:   (B, 3, H, W) integer tensor, 1 where revealed.
    cross_anchor: use the cross-channel anchor (see the module docstring).
    reuse: build the integral of a large picture in this thread's buffer from the last such
    call (a band-by-band trunk, which holds one state at a time and drops it before the
    next): a fresh buffer of ~100 MB is fresh pages, zeroed on first touch, on every call.
    """

    def __init__(self, values: torch.Tensor, mask: torch.Tensor, cross_anchor: bool = False, reuse: bool = False):
        self.cross_anchor = cross_anchor
        self.width = values.shape[3]
        self.jit = values.device.type == "cpu" and jit.available()
        if self.jit:             # the compiled kernels: the same integers (features_jit.py)
            from . import features_jit
            self.jit_values = values.to(torch.uint8).contiguous().numpy()
            self.jit_mask = mask.to(torch.uint8).contiguous().numpy()
            self.jit_integral = features_jit.Integral(self.jit_values, self.jit_mask, reuse)
            return
        m = mask.to(torch.int32)
        vm = values.to(torch.int32) * m
        both = [vm, m]
        if cross_anchor:    # per channel pair (a, b), where both are revealed: n, sums, squares, products
            pair_m = torch.stack([m[:, a] * m[:, b] for a, b in CHANNEL_PAIRS], 1)
            va = torch.stack([vm[:, a] for a, _ in CHANNEL_PAIRS], 1) * pair_m
            vb = torch.stack([vm[:, b] for _, b in CHANNEL_PAIRS], 1) * pair_m
            both += [pair_m, va, vb, va * va, vb * vb, va * vb]
        self.both = torch.cat(both, dim=1)
        big = HALO
        # original row y sits at y + big + 1 of the integral (see window_sums); float64 holds the
        # sums exactly (below 2^53: 65025 per pixel of a sum of squares, ~10^11 pixels)
        b, c, h, w = self.both.shape
        if (h + 2 * big + 1) * (w + 2 * big + 1) > 2 * (h + 1) * (w + 1):
            # a small picture: the integral of the picture alone (a zero row and column first),
            # then padded: before the picture it is 0 (row and column 0 repeated), after it
            # constant (the last ones repeated); summing the padded area would cost up to 9x more
            integral = self.both.new_zeros((b, c, h + 1, w + 1), dtype=torch.float64)
            integral[:, :, 1:, 1:] = self.both
            self.integral = F.pad(integral.cumsum_(2).cumsum_(3), (big, big, big, big), mode="replicate")
        else:           # a large one: summed in place in the padded buffer (one buffer, not two)
            shape = (b, c, h + 2 * big + 1, w + 2 * big + 1)
            if reuse:
                self.integral = _reused_buffer(shape, self.both.device)
                for rows, cols in ((slice(0, big + 1), slice(None)), (slice(big + 1 + h, None), slice(None)),
                                   (slice(big + 1, big + 1 + h), slice(0, big + 1)),
                                   (slice(big + 1, big + 1 + h), slice(big + 1 + w, None))):
                    self.integral[:, :, rows, cols] = 0           # the zero border; the picture overwrites the rest
            else:
                self.integral = self.both.new_zeros(shape, dtype=torch.float64)
            self.integral[:, :, big + 1:big + 1 + h, big + 1:big + 1 + w] = self.both
            self.integral.cumsum_(2).cumsum_(3)

    def window_sums(self, r0: int, r1: int, channels: slice = slice(None), radii: tuple[int, ...] = RADII
                    ) -> list[torch.Tensor]:
        """Sums of the statistics over the (2r+1)^2 window around each pixel of rows r0..r1-1,
        zero outside the picture, for each r in ``radii``: float64 integers (B, C, r1 - r0, W). In the padded
        integral, rows y-r..y+r sum to I[y + R + 1 + r] - I[y + R - r] (likewise for columns)."""
        big, w, integral = HALO, self.width, self.integral[:, channels]
        out = []
        for r in radii:
            lo, hi = big - r, big + 1 + r
            # rows first, over whole padded rows (contiguous), then columns: 2-4x faster than
            # four strided corner lookups, same integers
            rows = integral[:, :, r0 + hi:r1 + hi] - integral[:, :, r0 + lo:r1 + lo]
            out.append(rows[..., hi:hi + w] - rows[..., lo:lo + w])
        return out

    def rows(self, r0: int, r1: int, memory_format: torch.memory_format = torch.contiguous_format
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, N_FEATURES, r1 - r0, W) float32 and anchors (B, 3, r1 - r0, W) int32 of
        rows r0..r1-1, equal to those rows of the whole picture's ``context_features``;
        ``memory_format``: the features' layout (channels_last for oneDNN, in the same copy)."""
        if self.jit:
            from . import features_jit
            b, _, _, w = self.jit_values.shape
            out = torch.empty((b, N_FEATURES, r1 - r0, w), memory_format=torch.channels_last)   # the kernel's layout
            anchor = torch.empty((b, 3, r1 - r0, w), dtype=torch.int32)
            if out.numel():
                self.jit_integral.rows(r0, r1, self.cross_anchor, out.permute(0, 2, 3, 1).numpy(), anchor.numpy())
            return out.contiguous(memory_format=memory_format), anchor
        both = self.both[:, :, r0:r1]
        # leave-one-out: the pixel itself never counts as its own neighbour. A window's colour
        # sum is at most 960 x 255 < 2^24: float32 holds it, and its means, exactly
        own = both[:, :6].to(torch.float32)
        boxes = [box.to(torch.float32).sub_(own) for box in self.window_sums(r0, r1, slice(0, 6))]
        vm, m = own[:, 0:3], own[:, 3:6]
        counts = [b[:, 3:6] for b in boxes]
        means = [_round_div(b[:, 0:3], c.clamp(min=1)) for b, c in zip(boxes, counts)]   # 0 where c is
        anchor = _smallest_window_mean(means, counts, torch.full_like(vm, 128.0))
        if self.cross_anchor:
            pairs = both[:, 6:].to(torch.float64)

            def pair_window(r: int) -> torch.Tensor:      # the pair statistics of one window, leave-one-out
                return self.window_sums(r0, r1, slice(6, None), (r,))[0].to(torch.float64) - pairs
            anchor = _cross_anchor(vm, m, pair_window, anchor)
        feats = [m * MASK_SCALE, (vm - anchor) * m, anchor - 128]
        for r, mean, c in zip(RADII, means, counts):
            has = (c > 0).to(torch.float32)
            feats.append(has * MASK_SCALE)
            feats.append((mean - anchor) * has)
            area = (2 * r + 1) ** 2 - 1
            feats.append(_floor_div(c * MASK_SCALE, float(area)))
        b, _, n, w = vm.shape
        # concatenated straight into the layout asked for (one pass, not a copy after)
        out = torch.empty((b, N_FEATURES, n, w), device=vm.device, memory_format=memory_format)
        torch.cat(feats, dim=1, out=out).clamp_(-CLAMP, CLAMP)
        return out, anchor.to(torch.int32)


_INTEGRALS = threading.local()


def _reused_buffer(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A float64 tensor of ``shape`` (contents undefined) in this thread's buffer for ``device``,
    grown when too small."""
    numel = math.prod(shape)
    key = str(device)
    buf = _INTEGRALS.__dict__.get(key)
    if buf is None or buf.numel() < numel:
        del buf
        _INTEGRALS.__dict__.pop(key, None)               # (the old one freed before the new one)
        _INTEGRALS.__dict__[key] = buf = torch.empty(numel, dtype=torch.float64, device=device)
    return buf[:numel].view(shape)


def context_features(values: torch.Tensor, mask: torch.Tensor, cross_anchor: bool = False,
                     memory_format: torch.memory_format = torch.contiguous_format
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer features and anchors for a batch of partly revealed RGB images.

    values: (B, 3, H, W) integer tensor 0..255 (hidden entries may hold anything).
    mask:   (B, 3, H, W) integer tensor, 1 where revealed.
    cross_anchor: use the cross-channel anchor (see the module docstring).
    Returns features (B, N_FEATURES, H, W) float32 holding integers in [-255, 255],
    and anchors (B, 3, H, W) int32 in 0..255.
    """
    return FeatureState(values, mask, cross_anchor).rows(0, values.shape[2], memory_format)


def _smallest_window_mean(means: list[torch.Tensor], counts: list[torch.Tensor], empty: torch.Tensor
                          ) -> torch.Tensor:
    """The rounded mean (``means``) of the smallest window with any count, ``empty`` where none has."""
    out = empty
    for mean, n in zip(reversed(means), reversed(counts)):
        out = torch.where(n > 0, mean, out)
    return out


def _cross_anchor(vm: torch.Tensor, m: torch.Tensor, pair_window: Callable[[int], torch.Tensor],
                  spatial: torch.Tensor) -> torch.Tensor:
    """Each channel predicted from its revealed siblings by a local linear fit (module
    docstring); the rounded average of those predictions, else ``spatial``.

    vm, m, spatial: float32 integers (B, 3, H, W). pair_window(r): (B, 18, H, W) float64
    integers for the window of radius r: n, sum a, sum b, sum a^2, sum b^2, sum ab for each of
    CHANNEL_PAIRS (three channels each). The smallest window with any pair wins, so larger
    windows are only summed while some pixel still has none (late in the order, never). A
    window without pairs has all six sums 0, so it stands for "none". Products of sums reach
    ~6e10 (< 2^36): float64, exact."""
    stats = pair_window(RADII[0])
    missing = stats[:, 0:3] == 0
    for r in RADII[1:]:
        if not bool(missing.any()):
            break
        window = pair_window(r)
        six = (stats.shape[0], 6, 3, *stats.shape[2:])     # a pair's six statistics where it has none yet
        stats = torch.where(missing.unsqueeze(1), window.view(six), stats.view(six)).flatten(1, 2)
        missing &= window[:, 0:3] == 0
    n, sum_a, sum_b, sum_aa, sum_bb, sum_ab = stats.split(3, dim=1)
    cov = n * sum_ab - sum_a * sum_b
    v, shown = vm.to(torch.float64), m.to(torch.float64)
    # every (pair, direction) at once, six channels: a from b for each pair, then b from a
    # (fewer, larger passes than one per pair and direction; the same integers)
    n, cov = n.repeat(1, 2, 1, 1), cov.repeat(1, 2, 1, 1)
    s_t, s_s, s_ss = torch.cat([sum_a, sum_b], 1), torch.cat([sum_b, sum_a], 1), torch.cat([sum_bb, sum_aa], 1)
    k = n.clamp(min=1)
    var = k * s_ss - s_s ** 2
    # slope in 1/16 units, clamped to [0, 1]; a flat source (var 0) keeps slope 1. Only
    # quotients in [0, 17) survive the clamp, and there 17 * var * 2^-53 < 1 / var for
    # var < 2^40 (its bound, ~6e10): the float64 floor is the integer one
    slope = torch.where(var > 0, _floor_div(16 * cov, var.clamp(min=1)).clamp_(0, 16), 16.0)
    pred = _round_div(16 * s_t + slope * (k * v[:, _SOURCES] - s_s), 16 * k).clamp_(0, 255)
    ok = shown[:, _SOURCES] * (n > 0)
    # each channel's predictions summed (exact integers: the order does not matter)
    total = torch.zeros_like(v).index_add_(1, _TARGETS.to(v.device), pred * ok)
    count = torch.zeros_like(v).index_add_(1, _TARGETS.to(v.device), ok)
    cross = _round_div(total, count.clamp(min=1)).to(torch.float32)
    return torch.where(count > 0, cross, spatial)

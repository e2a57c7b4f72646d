"""Exact context features for the ARDM network, computed with integer arithmetic.

The network never sees raw floats: it sees small integers derived from the revealed
subpixels, so that training and exact inference see the same inputs on every device.
"Give the network the easy statistics for free": besides the revealed values and the
mask, every pixel gets leave-one-out means of the revealed neighbours at four window
sizes, expressed relative to an anchor (the mean of the smallest window that has any
revealed neighbour). The anchor is also where the mixture head centres its means.

Box sums come from one int64 integral image (cumulative sums along both axes), four
lookups per window whatever its size: exact by construction and, for the 31x31 window,
~10x faster than a pooling loop (which made the features half of all inference time).
Means are integer floor divisions. Nothing here depends on the image size beyond
``HALO`` pixels, so a crop computes the same features as the full image in its interior.

Cross-channel anchor (models with ``cross_anchor``): where another colour channel of the
same pixel is already revealed, the anchor becomes that value plus the local mean
difference between the two channels (over neighbours where both are revealed, smallest
non-empty window), averaged over the revealed siblings. That is the inter-channel
prediction lossless codecs use (WebP's subtract-green, JPEG 2000's colour transform) in a
form that follows the local colour; on images with smooth or subsampled chroma it is far
closer than the spatial mean, and the network only has to learn a correction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

RADII = (1, 3, 7, 15)          # window half-sizes: 3x3, 7x7, 15x15, 31x31
HALO = max(RADII)              # how far features look
MASK_SCALE = 64                # a boolean becomes 0 / 64 so its weight needs no extra bits
CLAMP = 255                    # every feature lies in [-255, 255]
FEATURES_PER_CHANNEL = 3 + 3 * len(RADII)
N_FEATURES = 3 * FEATURES_PER_CHANNEL


def box_sums(x: torch.Tensor, radii: tuple[int, ...] = RADII) -> list[torch.Tensor]:
    """Sums over the (2r+1)^2 window around each pixel for each r, zero outside the image.

    x: (B, C, H, W) integer tensor. Returns int64 tensors of the same shape. In the padded
    integral image, original row y sits at y + R + 1, so rows y-r..y+r sum to
    I[y + R + 1 + r] - I[y + R - r] (and likewise for columns)."""
    _, _, h, w = x.shape
    big = max(radii)
    integral = F.pad(x.to(torch.int64), (big + 1, big, big + 1, big)).cumsum_(2).cumsum_(3)
    out = []
    for r in radii:
        lo, hi = big - r, big + 1 + r
        out.append(integral[:, :, hi:hi + h, hi:hi + w] - integral[:, :, lo:lo + h, hi:hi + w]
                   - integral[:, :, hi:hi + h, lo:lo + w] + integral[:, :, lo:lo + h, lo:lo + w])
    return out


def _round_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """round(num / den) for integer tensors, den > 0, halves up; exact."""
    return torch.div(2 * num + den, 2 * den, rounding_mode="floor")


CHANNEL_PAIRS = ((0, 1), (0, 2), (1, 2))


def context_features(values: torch.Tensor, mask: torch.Tensor, cross_anchor: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer features and anchors for a batch of partly revealed RGB images.

    values: (B, 3, H, W) integer tensor 0..255 (hidden entries may hold anything).
    mask:   (B, 3, H, W) integer tensor, 1 where revealed.
    cross_anchor: use the cross-channel anchor (see the module docstring).
    Returns features (B, N_FEATURES, H, W) float32 holding integers in [-255, 255],
    and anchors (B, 3, H, W) int32 in 0..255.
    """
    m = mask.to(torch.int32)
    vm = values.to(torch.int32) * m
    both = [vm, m]
    if cross_anchor:    # per channel pair: difference where both are revealed, and where that is
        pair_m = torch.stack([m[:, a] * m[:, b] for a, b in CHANNEL_PAIRS], 1)
        both += [torch.stack([vm[:, a] - vm[:, b] for a, b in CHANNEL_PAIRS], 1) * pair_m, pair_m]
    both = torch.cat(both, dim=1)
    # leave-one-out: the pixel itself never counts as its own neighbour
    boxes = [(box - both).to(torch.int32) for box in box_sums(both)]
    sums, counts = [b[:, 0:3] for b in boxes], [b[:, 3:6] for b in boxes]
    anchor = _smallest_window_mean(sums, counts, torch.full_like(vm, 128))
    if cross_anchor:
        anchor = _cross_anchor(vm, m, [b[:, 6:9] for b in boxes], [b[:, 9:12] for b in boxes], anchor)
    feats = [m * MASK_SCALE, (vm - anchor) * m, anchor - 128]
    for r, s, n in zip(RADII, sums, counts):
        has = (n > 0).to(torch.int32)
        feats.append(has * MASK_SCALE)
        feats.append((_round_div(s, n.clamp(min=1)) - anchor) * has)
        area = (2 * r + 1) ** 2 - 1
        feats.append(torch.div(n * MASK_SCALE, area, rounding_mode="floor"))
    out = torch.cat(feats, dim=1).clamp_(-CLAMP, CLAMP)
    return out.to(torch.float32), anchor


def _smallest_window_mean(sums: list[torch.Tensor], counts: list[torch.Tensor], empty: torch.Tensor
                          ) -> torch.Tensor:
    """Rounded mean over the smallest window with any count, ``empty`` where none has."""
    out = empty
    for s, n in zip(reversed(sums), reversed(counts)):
        out = torch.where(n > 0, _round_div(s, n.clamp(min=1)), out)
    return out


def _cross_anchor(vm: torch.Tensor, m: torch.Tensor, diff_sums: list[torch.Tensor], pair_counts: list[torch.Tensor],
                  spatial: torch.Tensor) -> torch.Tensor:
    """Channel c predicted from each revealed sibling c' of the same pixel as v_c' plus the
    local mean of v_c - v_c'; the rounded average of those predictions, else ``spatial``."""
    has_pair = sum((n > 0).to(torch.int32) for n in pair_counts).clamp_(max=1)        # (B, 3 pairs, H, W)
    delta = _smallest_window_mean(diff_sums, pair_counts, torch.zeros_like(has_pair))
    total, count = torch.zeros_like(vm), torch.zeros_like(vm)
    for i, (a, b) in enumerate(CHANNEL_PAIRS):
        from_b = m[:, b] * has_pair[:, i]                 # predict a from b: v_b + mean(v_a - v_b)
        total[:, a] += (vm[:, b] + delta[:, i]) * from_b
        count[:, a] += from_b
        from_a = m[:, a] * has_pair[:, i]                 # predict b from a: v_a - mean(v_a - v_b)
        total[:, b] += (vm[:, a] - delta[:, i]) * from_a
        count[:, b] += from_a
    cross = _round_div(total, count.clamp(min=1)).clamp_(0, 255)
    return torch.where(count > 0, cross, spatial)

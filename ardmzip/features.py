"""Exact context features for the ARDM network, computed with integer arithmetic.

The network never sees raw floats: it sees small integers derived from the revealed
subpixels, so that training and exact inference see the same inputs on every device.
"Give the network the easy statistics for free": besides the revealed values and the
mask, every pixel gets leave-one-out means of the revealed neighbours at four window
sizes, expressed relative to an anchor (the mean of the smallest window that has any
revealed neighbour). The anchor is also where the mixture head centres its means.

Box sums use avg_pool2d with divisor 1 on float32 tensors of small integers: every
partial sum is an integer below 2^24, so the sums are exact in any summation order.
Means are integer floor divisions. Nothing here depends on the image size beyond
``HALO`` pixels, so a crop computes the same features as the full image in its interior.
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


def box_sum(x: torch.Tensor, r: int) -> torch.Tensor:
    """Sum over the (2r+1)^2 window around each pixel, zero outside the image. (B,C,H,W) float."""
    return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, divisor_override=1)


def _round_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """round(num / den) for integer tensors, den > 0, halves up; exact."""
    return torch.div(2 * num + den, 2 * den, rounding_mode="floor")


def context_features(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer features and anchors for a batch of partly revealed RGB images.

    values: (B, 3, H, W) integer tensor 0..255 (hidden entries may hold anything).
    mask:   (B, 3, H, W) integer tensor, 1 where revealed.
    Returns features (B, N_FEATURES, H, W) float32 holding integers in [-255, 255],
    and anchors (B, 3, H, W) int32 in 0..255.
    """
    m = mask.to(torch.int32)
    vm = values.to(torch.int32) * m
    m_f, vm_f = m.to(torch.float32), vm.to(torch.float32)
    sums, counts = [], []
    for r in RADII:  # leave-one-out: the pixel itself never counts as its own neighbour
        sums.append((box_sum(vm_f, r) - vm_f).to(torch.int32))
        counts.append((box_sum(m_f, r) - m_f).to(torch.int32))
    anchor = torch.full_like(vm, 128)
    for s, n in zip(reversed(sums), reversed(counts)):  # smallest non-empty window wins
        anchor = torch.where(n > 0, _round_div(s, n.clamp(min=1)), anchor)
    feats = [m * MASK_SCALE, (vm - anchor) * m, anchor - 128]
    for r, s, n in zip(RADII, sums, counts):
        has = (n > 0).to(torch.int32)
        feats.append(has * MASK_SCALE)
        feats.append((_round_div(s, n.clamp(min=1)) - anchor) * has)
        area = (2 * r + 1) ** 2 - 1
        feats.append(torch.div(n * MASK_SCALE, area, rounding_mode="floor"))
    out = torch.cat(feats, dim=1).clamp_(-CLAMP, CLAMP)
    return out.to(torch.float32), anchor

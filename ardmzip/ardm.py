"""Orders, masks and the order-agnostic ARDM objective (paper §3, Algorithm 1).

Variables are subpixels: an RGB image of H x W has D = 3HW variables; a gray image has
D = HW (its three colour slots are revealed together, see model.py). For training, an
image gets t uniform in 1..D and a random order; the first t-1 variables are revealed
and the loss is D / (D - t + 1) times the summed NLL of the hidden ones, an unbiased
estimate of the negative log-likelihood (reported per subpixel, in bits).

For coding, the order is a fixed function of a seed that we own: each variable's key is
splitmix64(seed, index) in numpy uint64 arithmetic (wrapping, so identical on every
platform), and the order sorts the keys (stable). No library RNG is involved, so a
numpy or torch upgrade cannot change a file's meaning.

A model may declare a structured order (``ModelConfig.order``), bound to the file through
the model's hash: "interlace2" codes every subpixel of the pixels with even row and even
column first, then the rest, each level in the seed's random order. Its steps then see
evenly spread context (each later pixel has revealed neighbours on both sides). Models
meant for it are trained with part of their masks drawn that way (``interlaced_fraction``).
"interlace2/palette-random" keeps the random order for planes with a palette constraint
(``plane_order``); the decoder reads a plane's constraint before its first step.
"interlace2g" (and "interlace2g/palette-random") is "interlace2" with the green subpixels of
every level but the first (the pixels whose row and column are multiples of 4, in a pyramid)
before its red and blue ones, so that those see their pixel's green: every network call
then sees its picture's coarse level in the plain order and its fine level green first, as
the models trained for it (``green_first``) were. (Green first in the first level too lost
bits there: 0.3128 -> 0.3347 bpsp of one photo's.)
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .dlm import nll

LN2 = math.log(2.0)
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def order_keys(n: int, seed: int) -> np.ndarray:
    """The seed's random key of each of n variables, (n,) uint64, all distinct (splitmix64 is a bijection)."""
    return splitmix64(np.arange(n, dtype=np.uint64) ^ splitmix64(np.array([seed], dtype=np.uint64) & _M64))


def _ranks(order: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order), dtype=np.int64)
    return ranks


def _key_order(keys: np.ndarray) -> np.ndarray:
    """argsort of distinct keys: their order is unique, so any algorithm gives it (numpy's
    default, vectorised where the CPU allows, is ~3.5x faster than its stable sort here)."""
    return np.argsort(keys)


def _coarse_variables(h: int, w: int, channels: int) -> np.ndarray:
    """(h * w * channels,) bool, variables in row-major order: those of pixels with even row and column."""
    coarse = np.zeros((h, w, channels), bool)
    coarse[::2, ::2] = True
    return coarse.reshape(-1)


def coding_ranks(n: int, seed: int) -> np.ndarray:
    """rank[i] = position of variable i in the coding order, (n,) int64, a permutation of 0..n-1."""
    return _ranks(_key_order(order_keys(n, seed)))


ORDERS = ("random", "interlace2", "interlace2/palette-random", "interlace2g", "interlace2g/palette-random")


def _groups(idx: np.ndarray, channels: int, green_first: bool) -> list[np.ndarray]:
    """One level's variables (ascending indices of a row-major (h, w, channels) plane) as the
    groups coded one after the other, each in key order: the level itself, or with
    ``green_first`` (RGB planes) its green subpixels, then its red and blue ones."""
    if not green_first or channels != 3:
        return [idx]
    green = idx % 3 == 1
    return [idx[green], idx[~green]]


def _ranks_of_groups(groups: list[np.ndarray], keys: np.ndarray) -> np.ndarray:
    """Ranks of variables coded group after group, each group in ascending key order."""
    return _ranks(np.concatenate([g[_key_order(keys[g])] for g in groups]))


def interlaced_ranks(h: int, w: int, channels: int, seed: int, green_first: bool = False) -> np.ndarray:
    """Ranks of the "interlace2" order for an (h, w, channels) plane, variables in row-major
    order: pixels with even row and column first, each level in coding_ranks' key order
    ("interlace2g", ``green_first``: the second level's green subpixels before its red and blue)."""
    n = h * w * channels
    coarse = _coarse_variables(h, w, channels)
    groups = [np.flatnonzero(coarse)] + _groups(np.flatnonzero(~coarse), channels, green_first)
    return _ranks_of_groups(groups, order_keys(n, seed))


def pyramid_ranks(h: int, w: int, channels: int, seed: int, green_first: bool = False) -> np.ndarray:
    """Ranks of the two-level pyramid order (format version 6, codec.PlaneCoder): the pixels with
    even row and column first, ordered as the picture they form (``interlaced_ranks`` of the
    (ceil(h/2), ceil(w/2)) picture, so its own coarse level leads), then the rest in
    coding_ranks' key order, as in "interlace2" (``green_first``: as in "interlace2g")."""
    n = h * w * channels
    coarse = _coarse_variables(h, w, channels)
    ranks = np.empty(n, dtype=np.int64)
    # the coarse variables in index order are the small picture's in its index order
    ranks[coarse] = interlaced_ranks((h + 1) // 2, (w + 1) // 2, channels, seed, green_first)
    keys, first = order_keys(n, seed), int(coarse.sum())
    for g in _groups(np.flatnonzero(~coarse), channels, green_first):
        ranks[g[_key_order(keys[g])]] = np.arange(first, first + len(g), dtype=np.int64)
        first += len(g)
    return ranks


def _steps_by_key(keys: np.ndarray, bounds: np.ndarray, first: int) -> np.ndarray:
    """The steps of a group of variables whose ranks are first .. first + len(keys) - 1 in
    ascending order of their (distinct) keys, where step s holds ranks bounds[s] ..
    bounds[s + 1] - 1: int32. The keys at the steps' boundaries come from a partition, not
    a sort: the variable at place q of the group starts no later step than its key's place
    among them tells."""
    n = len(keys)
    s0 = int(np.searchsorted(bounds, first, side="right")) - 1           # the step of rank ``first``
    inner = bounds[(bounds > first) & (bounds < first + n)] - first       # places where a step starts
    if not len(inner):
        return np.full(n, s0, dtype=np.int32)
    cuts = np.partition(keys, inner)[inner]                              # the keys at those places
    return (np.searchsorted(cuts, keys, side="right") + s0).astype(np.int32)


def interlaced_steps(h: int, w: int, channels: int, seed: int, bounds: np.ndarray, first: int = 0,
                     green_first: bool = False) -> np.ndarray:
    """``interlaced_ranks``' variables' steps under ``bounds`` (ranks from ``first`` on),
    without ranking them: (h * w * channels,) int32."""
    n = h * w * channels
    coarse = _coarse_variables(h, w, channels)
    keys = order_keys(n, seed)
    steps = np.empty(n, dtype=np.int32)
    for g in [np.flatnonzero(coarse)] + _groups(np.flatnonzero(~coarse), channels, green_first):
        steps[g] = _steps_by_key(keys[g], bounds, first)
        first += len(g)
    return steps


def plane_steps(order: str, h: int, w: int, channels: int, seed: int, bounds: np.ndarray) -> np.ndarray:
    """The step of every variable of a plane, step s holding the ranks bounds[s] ..
    bounds[s + 1] - 1 of ``plane_ranks`` (the same steps, from partitions instead of sorts)."""
    if order == "random":
        return _steps_by_key(order_keys(h * w * channels, seed), bounds, 0)
    if order in ("interlace2", "interlace2g"):
        return interlaced_steps(h, w, channels, seed, bounds, green_first=order == "interlace2g")
    raise ValueError(f"unknown coding order {order!r}")


def pyramid_steps(h: int, w: int, channels: int, seed: int, bounds: np.ndarray, green_first: bool = False
                  ) -> np.ndarray:
    """``pyramid_ranks``' variables' steps under ``bounds``, without ranking them."""
    n = h * w * channels
    coarse = _coarse_variables(h, w, channels)
    steps = np.empty(n, dtype=np.int32)
    steps[coarse] = interlaced_steps((h + 1) // 2, (w + 1) // 2, channels, seed, bounds, green_first=green_first)
    keys, first = order_keys(n, seed), int(coarse.sum())
    for g in _groups(np.flatnonzero(~coarse), channels, green_first):
        steps[g] = _steps_by_key(keys[g], bounds, first)
        first += len(g)
    return steps


def plane_order(order: str, palette: bool) -> str:
    """The order one plane is coded in under a model's declared order. "interlace2/palette-random"
    is "interlace2" except for planes coded with a palette constraint, which keep the random
    order: in palette pictures a pixel's revealed channels pin down its other ones, so context
    spread over all three channels beats evenly spread pixels (Set14 baboon and face, same
    model: 2.43 / 1.64 bpsp interlaced, 2.30 / 1.56 random). "interlace2g/palette-random"
    likewise with "interlace2g"."""
    if order not in ORDERS:
        raise ValueError(f"unknown coding order {order!r}")
    if order.endswith("/palette-random"):
        return "random" if palette else order.split("/")[0]
    return order


def plane_ranks(order: str, h: int, w: int, channels: int, seed: int) -> np.ndarray:
    """The coding order of a plane under a model's declared order."""
    if order == "random":
        return coding_ranks(h * w * channels, seed)
    if order in ("interlace2", "interlace2g"):
        return interlaced_ranks(h, w, channels, seed, green_first=order == "interlace2g")
    raise ValueError(f"unknown coding order {order!r}")


def random_masks(b: int, h: int, w: int, gray: torch.Tensor, generator: torch.Generator | None = None,
                 interlaced_fraction: float = 0.0, phase: tuple[torch.Tensor, torch.Tensor] | None = None,
                 green_first: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Training masks. Returns mask (B, 3, H, W) int32 and the revealed fraction (t-1)/D per image.

    RGB images reveal t-1 of 3HW subpixels; gray images reveal t-1 of HW pixels, all three
    slots together. A share ``interlaced_fraction`` of the images (drawn per image) reveal
    in an "interlace2"-like order instead: one of the four 2x2 grid phases (random per
    image, since a crop's phase is arbitrary, or ``phase`` = (rows, columns) mod 2 when given)
    first, random within each level. A share ``green_first`` of the interlaced RGB images
    reveal the fine level's green subpixels before its red and blue ones ("interlace2g").
    """
    dev = gray.device
    keys = torch.rand(b, 3, h, w, generator=generator, device=dev)
    keys = torch.where(gray.view(b, 1, 1, 1), keys[:, :1].expand(-1, 3, -1, -1), keys)
    if interlaced_fraction > 0:
        structured = torch.rand(b, generator=generator, device=dev) < interlaced_fraction
        py = (torch.rand(b, generator=generator, device=dev) < 0.5).long().view(b, 1, 1, 1)
        px = (torch.rand(b, generator=generator, device=dev) < 0.5).long().view(b, 1, 1, 1)
        if phase is not None:       # (the draws above still happen: the generator's sequence stays the same)
            py, px = phase[0].long().view(b, 1, 1, 1), phase[1].long().view(b, 1, 1, 1)
        yy = torch.arange(h, device=dev).view(1, 1, h, 1)
        xx = torch.arange(w, device=dev).view(1, 1, 1, w)
        coarse = (((yy + py) % 2 == 0) & ((xx + px) % 2 == 0)).float()
    d = torch.where(gray, h * w, 3 * h * w)
    t = (torch.rand(b, generator=generator, device=dev) * d).floor().long() + 1     # uniform in 1..D
    if interlaced_fraction > 0:
        if green_first > 0:         # drawn last: without it every draw stays what it was
            green = structured & ~gray & (torch.rand(b, generator=generator, device=dev) < green_first)
            not_green = (torch.arange(3, device=dev) != 1).float().view(1, 3, 1, 1)
            fine = green.view(b, 1, 1, 1) & (coarse == 0)
            keys = torch.where(fine, 0.5 * keys + 0.5 * not_green, keys)     # within [0, 1): green first
        keys = keys - coarse * structured.view(b, 1, 1, 1).float()       # keys in [0, 1): coarse ones sort first
    ranks = keys.view(b, -1).argsort(1).argsort(1).view(b, 3, h, w)
    ranks = torch.where(gray.view(b, 1, 1, 1), ranks // 3, ranks)                   # tied slots share a rank
    mask = (ranks < (t - 1).view(b, 1, 1, 1)).to(torch.int32)
    return mask, (t - 1).float() / d.float()


def oa_loss(net: torch.nn.Module, images: torch.Tensor, gray: torch.Tensor,
            generator: torch.Generator | None = None, interlaced_fraction: float = 0.0,
            phase: tuple[torch.Tensor, torch.Tensor] | None = None, green_first: float = 0.0
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """OA-ARDM objective for a batch.

    images: (B, 3, H, W) long 0..255 (gray images have equal slots); gray: (B,) bool.
    Returns (bpsp estimate per image (B,), revealed fraction per image (B,), mean NLL in
    bits per hidden variable per image (B,), the L_t sample).
    """
    b, _, h, w = images.shape
    mask, frac = random_masks(b, h, w, gray, generator, interlaced_fraction, phase, green_first)
    params, anchor = net(images, mask)                               # (B, 3, 3, M, H, W)
    nats = nll(params.permute(0, 1, 4, 5, 2, 3), anchor, images)     # (B, 3, H, W)
    hidden = (1 - mask).float()
    hidden = torch.where(gray.view(b, 1, 1, 1), hidden * _slot0(hidden), hidden)  # gray: code slot 0
    d = torch.where(gray, h * w, 3 * h * w).float()
    n_hidden = hidden.flatten(1).sum(1)
    summed = (nats * hidden).flatten(1).sum(1)
    bpsp = summed * (d / n_hidden) / d / LN2                          # D/(D-t+1) x summed NLL, per subpixel
    return bpsp, frac, summed / n_hidden / LN2


def _slot0(x: torch.Tensor) -> torch.Tensor:
    sel = torch.zeros_like(x)
    sel[:, 0] = 1
    return sel

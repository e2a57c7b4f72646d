"""Choosing the model per picture: ``compress(..., model="auto")``, the default.

ardmzip ships more than one network of the same shape: ``xic-s48`` (trained on buildings,
general photos and CIFAR-10) and ``photog-s48`` (it, fine-tuned on natural photos, then for
the green-first order "interlace2g"; before it ``photo-s48``, which won -0.2 to -0.5% on
photos and lost +0.4% on Set14 and +0.7% on CIFAR-10). Each wins on its own kind of picture
and loses elsewhere, so rather than one default the encoder estimates what each candidate
would cost on the picture and codes with the cheapest. The file names its model
as always: decoders need nothing new, and a picture costs the same bits alone as among
others (an archive, whose members share one model, chooses once for all of them from a
sample).

The estimate is the ARDM's own: the order-agnostic bound (paper, eq. 4) on a few tiles of
the picture, each with a random interlaced mask at a stratified reveal fraction, the same
masks for every candidate (a paired comparison, so most of the masks' noise cancels). Only a
sample of each tile's hidden variables goes through the head and the exact integer
frequencies, the coder's own. A picture smaller than a tile is one tile, repeated with
different masks. Cost on the 2-core AMD EPYC VM: ~0.05-0.07 s per candidate for one picture
of any size (per-call overheads), a few percent of coding a photo
(benchmarks/results/2026-12-02-auto-model); thumbnails estimated together, 40-43 ms a
picture for three candidates, against ~32 ms to code one (2026-12-02-small-candidates); two
since (see below).

Pictures that fit in one tile (thumbnails) have candidates of their own
(``SMALL_CANDIDATES``): ``cifar10-s48`` (fitted to whole 32x32 pictures) and ``xic-s48``.
There the estimate sees the whole picture, borders and all, as the coder does. On larger
pictures the tiles' estimate favours ``cifar10-s48`` where the whole picture (coded as a
pyramid, with far more context than a 48x48 tile) does better with the others: as a
candidate for every picture, auto picked it for 5 of 30 Unsplash30 photos and was worse
than ``photo-s48`` alone (3.2776 against 3.2761 bpsp). ``photo-s48`` is not a thumbnail
candidate: it made no CIFAR-10 picture smaller that the other two did not (test set 4.1791
and 400 training pictures 4.1275 bpsp, with it or without), and estimating it cost a third
of the choice's time (benchmarks/results/2026-12-02-thumb-candidates).

Determinism: the integers are exact everywhere; the estimates are float64 logarithms summed
exactly (math.fsum), which machines could round differently only on a tie to ~1e-15, and a
tie goes to the earlier candidate. The choice changes the file, never whether it decodes.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .dlm import exact_frequencies
from .weights import Model

AUTO = "auto"
CANDIDATES: tuple[str, ...] = ("xic-s48", "photog-s48")            # for pictures larger than one tile
SMALL_CANDIDATES: tuple[str, ...] = ("xic-s48", "cifar10-s48")     # for pictures within one tile
TILE = 48                  # tile side in pixels
TILES = 4                  # tiles (masks) per picture
SAMPLE = 256               # hidden variables per tile through the head
ARCHIVE_SAMPLE = 16        # pictures an archive's choice looks at


def tile_origins(h: int, w: int, tile: int = TILE, count: int = TILES) -> list[tuple[int, int]]:
    """``count`` top-left corners of tile x tile windows spread over an h x w picture: the
    picture cut into a grid of about square cells, a window centred on each (repeated, in
    order, when fewer distinct windows fit)."""
    th, tw = min(tile, h), min(tile, w)
    rows = max(1, min(int(np.sqrt(count * h / w) + 0.5), h // th, count))
    cols = max(1, min(count // rows, w // tw))
    ys = [min(h - th, max(0, round((i + 0.5) * h / rows - th / 2))) for i in range(rows)]
    xs = [min(w - tw, max(0, round((j + 0.5) * w / cols - tw / 2))) for j in range(cols)]
    grid = [(y, x) for y in ys for x in xs]
    return [grid[i % len(grid)] for i in range(count)]


def candidates(shapes: list[tuple[int, ...]]) -> tuple[str, ...]:
    """The candidates for pictures (or one archive's) of these plane shapes: SMALL_CANDIDATES
    where every one fits in one TILE x TILE tile (so that the estimate covers each whole
    picture), else CANDIDATES."""
    small = bool(shapes) and all(s[0] <= TILE and s[1] <= TILE for s in shapes)
    return SMALL_CANDIDATES if small else CANDIDATES


def only_candidate() -> str | None:
    """The one model auto can choose, where there is just one (then nothing is estimated), else None."""
    names = tuple(dict.fromkeys(CANDIDATES + SMALL_CANDIDATES))
    return names[0] if len(names) == 1 else None


def green_first(model: Model) -> bool:
    """Whether the model codes in an "interlace2g" order (its fine levels' green subpixels first)."""
    return model.net.config.order.startswith("interlace2g")


def interlaced_masks(b: int, h: int, w: int, gray: bool, seed: int, green: bool = False) -> torch.Tensor:
    """(b, 3, h, w) int32 masks, 1 = revealed: the even-even grid first, then the rest, random
    within each (``green``: the rest's green subpixels before its red and blue ones, as in
    "interlace2g"); mask i reveals a fraction in [i/b, (i+1)/b) of the variables (stratified).
    The same draws either way."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(b, 3, h, w, generator=g, dtype=torch.float64)
    if gray:
        keys = keys[:, :1].expand(-1, 3, -1, -1)
    coarse = (torch.arange(h).view(h, 1) % 2 == 0) & (torch.arange(w).view(1, w) % 2 == 0)
    if green and not gray:
        not_green = (torch.arange(3) != 1).to(torch.float64).view(1, 3, 1, 1)
        keys = torch.where(coarse, keys, 0.5 * keys + 0.5 * not_green)       # within [0, 1): green first
    keys = keys - coarse.to(torch.float64)             # coarse keys in [-1, 0): first
    d = h * w if gray else 3 * h * w
    fraction = (torch.arange(b, dtype=torch.float64) + torch.rand(b, generator=g, dtype=torch.float64)) / b
    revealed = (fraction * d).floor().long()
    ranks = keys.reshape(b, -1).argsort(1).argsort(1).view(b, 3, h, w)
    if gray:
        ranks = ranks // 3
    return (ranks < revealed.view(b, 1, 1, 1)).to(torch.int32)


def tiles_of(planes: list[np.ndarray], seed: int = 0, green: bool = False) -> list[tuple]:
    """Each plane's tiles, masks and sample (``_tiles``): the same for every candidate of one
    kind of order (``green``: "interlace2g", ``green_first``)."""
    return [_tiles(p, seed, green) for p in planes]


def _tiles(plane: np.ndarray, seed: int, green: bool = False
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A plane's TILES tiles as the network sees them, their masks, and the sample: (values
    (b, 3, th, tw) long, masks (b, 3, th, tw) int32, tile (n,), variable (n,) over (3, th, tw))
    of up to SAMPLE hidden variables a tile. Drawn from the plane and ``seed`` alone, so a
    plane's estimate does not depend on the planes it is batched with."""
    gray = plane.ndim == 2
    h, w = plane.shape[:2]
    th, tw = min(TILE, h), min(TILE, w)
    tiles = np.stack([plane[y:y + th, x:x + tw] for y, x in tile_origins(h, w)])
    values = torch.from_numpy(tiles).long()
    values = values.unsqueeze(1).expand(-1, 3, -1, -1) if gray else values.permute(0, 3, 1, 2)
    b = len(tiles)
    masks = interlaced_masks(b, th, tw, gray, seed, green)
    hidden = masks == 0
    if gray:
        hidden[:, 1:] = False
    g = torch.Generator().manual_seed(seed + 1)
    keys = torch.rand(hidden.shape, generator=g, dtype=torch.float64).masked_fill_(~hidden, 2.0)
    picked = keys.reshape(b, -1).argsort(1)[:, :SAMPLE]
    counts = hidden.reshape(b, -1).sum(1).clamp(max=SAMPLE)
    keep = torch.arange(picked.shape[1]).view(1, -1) < counts.view(b, 1)
    tile = torch.arange(b).view(b, 1).expand_as(picked)[keep]
    return values.contiguous(), masks, tile, picked[keep]


@torch.no_grad()
def estimate_many(model: Model, planes: list[np.ndarray], seed: int = 0, tiles: list[tuple] | None = None) -> list[float]:
    """``estimate_bits`` of each plane, planes whose tiles have one shape through the network
    together (the same numbers as one by one: the network is exact integers per pixel).
    ``tiles``: the planes' ``tiles_of`` with this seed and the model's kind of order, drawn
    once for every such candidate."""
    net = model.net_on("cpu")
    parts = tiles_of(planes, seed, green_first(model)) if tiles is None else tiles
    groups: dict[tuple, list[int]] = {}
    for i, (values, _, _, _) in enumerate(parts):
        groups.setdefault((values.shape, planes[i].ndim), []).append(i)
    out = [0.0] * len(planes)
    for (shape, _), members in groups.items():
        b, _, th, tw = shape
        values = torch.cat([parts[i][0] for i in members])
        feats, anchors = net.trunk(values, torch.cat([parts[i][1] for i in members]))
        rows = feats.permute(0, 2, 3, 1).reshape(len(members) * b * th * tw, -1)          # a view (channels last)
        tile = torch.cat([parts[i][2] + k * b for k, i in enumerate(members)])
        var = torch.cat([parts[i][3] for i in members])
        slot, pix = var // (th * tw), var % (th * tw)
        params = net.head(rows.index_select(0, tile * th * tw + pix).contiguous())         # (n, 3, 3, M)
        params = params[torch.arange(len(var)), slot].contiguous()
        freq = exact_frequencies(params, anchors.reshape(-1, 3, th * tw)[tile, slot, pix].contiguous()).numpy()
        symbols = values.reshape(-1, 3, th * tw)[tile, slot, pix].numpy()
        bits = np.log2(freq.sum(1, dtype=np.float64)) - np.log2(freq[np.arange(len(var)), symbols].astype(np.float64))
        total = np.bincount(tile.numpy(), bits, minlength=len(members) * b)
        counts = np.bincount(tile.numpy(), minlength=len(members) * b)
        per_tile = (total / np.maximum(counts, 1)).reshape(len(members), b)
        for k, i in enumerate(members):
            out[i] = math.fsum(per_tile[k]) / b          # exactly rounded sums: no order to differ
    return out


def estimate_bits(model: Model, plane: np.ndarray, seed: int = 0) -> float:
    """Estimated bits per subpixel of ``model`` coding ``plane`` ((H, W) gray or (H, W, 3)
    uint8): the mean over TILES tiles of the bits per hidden variable (D/(D-t+1) x their sum,
    over D), each from SAMPLE of them."""
    return estimate_many(model, [plane], seed)[0]


def choose(models: list[Model], planes: list[np.ndarray], seed: int = 0) -> Model:
    """The model of ``models`` with the fewest estimated bits over ``planes`` (weighted by
    their subpixels); the first on a tie or with no planes."""
    if len(models) == 1 or not planes:
        return models[0]
    tiles = {kind: tiles_of(planes, seed, kind) for kind in dict.fromkeys(map(green_first, models))}
    costs = [math.fsum(e * p.size for e, p in zip(estimate_many(m, planes, seed, tiles[green_first(m)]), planes))
             for m in models]
    return models[int(np.argmin(costs))]

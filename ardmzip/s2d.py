"""The "s2d" network: the ARDM trunk on a 2x2 space-to-depth grid (``ModelConfig(trunk="s2d")``).

Why: capacity per operation. model.ARDMNet runs every residual block at full resolution.
Here the blocks run on 2x2 cells: a 3x3 convolution at C channels costs 9 C^2 multiply-adds
per cell, a quarter of that per pixel, so C = 96 on cells costs what C = 48 costs on pixels
while holding 4x the parameters per block, and each dilation reaches twice as far in pixels
(the receptive field doubles). What cells lose -- which of its four pixels a prediction is
for, and detail finer than a cell -- comes back at full resolution: ``up`` gives every
position in a cell its own channels (one group of ``fine_channels`` per position, pixel
shuffled), a 1x1 ``skip`` from the pixel's own features adds what the coarse path
averaged away, and ``fine`` residual blocks (usually one 3x3) mix neighbouring pixels.

    features (features.py, integers)          (B, 45, H, W) in [-255, 255]
    pad to even H, W (zeros), pixel_unshuffle  (B, 180, H/2, W/2)
    stem    1x1 -> C                           coarse residual stream, ints in [-127, 127]
    blocks  x = clamp(x + conv3x3_d(relu(x)))  on the cells, zero padding at the grid's edges
    up      1x1 on relu(x) -> 4 F, pixel_shuffle, crop to (H, W)
    skip    1x1 on the features -> F;  y = clamp(up + skip)      fine stream, full resolution
    fine    y = clamp(y + conv3x3_d(relu(y)))
    head    as model.py, on relu(y)

Exactness: every layer is a QConv exporting to an IntConv (qlayers.py), and padding, pixel
(un)shuffle and cropping only move integers, so ``IntegerS2DNet`` is as exact as
model.IntegerNet. One thing is new: the cells are anchored at the picture's row and column
0, so a crop (a codec strip) computes the picture's values in its interior only if it starts
at an even row and column. ModelConfig.halo is even for s2d and codec.PlaneCoder makes its
strips an even number of rows, so every strip (full width, starting ``halo`` rows above an
even row, or at row 0) lies on the picture's grid; a strip's bottom edge is either the
picture's (padded as the whole picture is) or more than the reach of any output away.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .features import N_FEATURES, FeatureState, context_features
from .model import (ACT_BITS, HEAD_LIMIT, IntegerNet, ModelConfig, export_layers, load_layers, residual_blocks,
                    residual_rows)
from .qlayers import IntConv, QConv, set_mode

CELL = 2                 # pixels per cell side


def _cells(feats: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) -> (B, 4 N, ceil(H/2), ceil(W/2)): the features of each 2x2 cell, the
    picture's bottom row / right column padded with zero features where H / W is odd."""
    h, w = feats.shape[-2:]
    return F.pixel_unshuffle(F.pad(feats, (0, w % CELL, 0, h % CELL)), CELL)


def _pixels(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 4 F, ceil(H/2), ceil(W/2)) -> (B, F, H, W): each cell position's channels to its pixel."""
    return F.pixel_shuffle(x, CELL)[:, :, :h, :w]


class S2DNet(nn.Module):
    """The trainable s2d network (float or fake-quant ``forward``), the counterpart of
    model.ARDMNet; ``export`` gives the exact ``IntegerS2DNet``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.trunk != "s2d":
            raise ValueError(f"S2DNet needs trunk='s2d', not {config.trunk!r}")
        self.config = config
        c, f = config.channels, config.fine_channels
        a = ACT_BITS
        self.stem = QConv(CELL * CELL * N_FEATURES, c, 1, a_in=0, a_out=a)
        self.blocks = nn.ModuleList(QConv(c, c, 3, d, a_in=a, a_out=a) for d in config.dilations)
        self.up = QConv(c, CELL * CELL * f, 1, a_in=a, a_out=a)
        self.skip = QConv(N_FEATURES, f, 1, a_in=0, a_out=a)
        self.fine = nn.ModuleList(QConv(f, f, 3, d, a_in=a, a_out=a) for d in config.fine_dilations)
        self.head_hidden = QConv(f, config.head_hidden, 1, a_in=a, a_out=a, lo=0, hi=127)
        self.head_out = QConv(config.head_hidden, 3 * 3 * config.mixtures, 1, a_in=a, a_out=a,
                              lo=-HEAD_LIMIT, hi=HEAD_LIMIT)

    def named_layers(self) -> list[tuple[str, QConv]]:
        """The layers under the names a model file stores their exports by."""
        return ([("stem", self.stem)] + [(f"block{i}", b) for i, b in enumerate(self.blocks)]
                + [("up", self.up), ("skip", self.skip)] + [(f"fine{i}", b) for i, b in enumerate(self.fine)]
                + [("head_hidden", self.head_hidden), ("head_out", self.head_out)])

    def set_mode(self, mode: str) -> None:
        """'float' (clamped float training) or 'qat' (fake-quant, same arithmetic as export)."""
        set_mode(self, mode)

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """values, mask: (B, 3, H, W) ints. Returns params (B, 3, 3, M, H, W) real and anchors (B, 3, H, W)."""
        feats, anchor = context_features(values, mask, self.config.cross_anchor)
        h, w = feats.shape[-2:]
        limit = 127 / 2 ** ACT_BITS
        x = self.stem(_cells(feats))
        for block in self.blocks:
            x = (x + block(x.clamp(min=0))).clamp(-limit, limit)
        # both terms lie on the 2^-ACT_BITS grid, so their sum is exact, as the integers' is
        y = (_pixels(self.up(x.clamp(min=0)), h, w) + self.skip(feats)).clamp(-limit, limit)
        for block in self.fine:
            y = (y + block(y.clamp(min=0))).clamp(-limit, limit)
        out = self.head_out(self.head_hidden(y.clamp(min=0)))
        b = out.shape[0]
        return out.view(b, 3, 3, self.config.mixtures, h, w), anchor

    @classmethod
    def from_integer(cls, inet: "IntegerS2DNet", config: ModelConfig | None = None) -> "S2DNet":
        """The float network whose export is ``inet`` again (to fine-tune a model file);
        ``config`` may change what does not touch the weights (e.g. the anchor)."""
        return load_layers(cls(config or inet.config), inet)

    def export(self) -> "IntegerS2DNet":
        """The exact integer network (checks the 2^24 bound for every layer)."""
        return IntegerS2DNet.from_layers(self.config, export_layers(self))


class IntegerS2DNet:
    """Exact inference of the s2d network: the interface of model.IntegerNet (``trunk``
    returns the fine stream after its final ReLU, what ``head`` reads per pixel)."""

    def __init__(self, config: ModelConfig, stem: IntConv, blocks: list[IntConv], up: IntConv, skip: IntConv,
                 fine: list[IntConv], head_hidden: IntConv, head_out: IntConv):
        # blocks, fine blocks and up read a ReLU of a stream clamped to [-127, 127]: int8 GEMMs on CPU
        blocks, fine, up = [b.with_small_input() for b in blocks], [b.with_small_input() for b in fine], up.with_small_input()
        self.config, self.stem, self.blocks, self.up, self.skip, self.fine = config, stem, blocks, up, skip, fine
        self.head_hidden, self.head_out = head_hidden, head_out
        self.device = stem.weight.device

    def named_layers(self) -> list[tuple[str, IntConv]]:
        """The layers under the names a model file stores them by (weights.py)."""
        return ([("stem", self.stem)] + [(f"block{i}", b) for i, b in enumerate(self.blocks)]
                + [("up", self.up), ("skip", self.skip)] + [(f"fine{i}", b) for i, b in enumerate(self.fine)]
                + [("head_hidden", self.head_hidden), ("head_out", self.head_out)])

    @classmethod
    def from_layers(cls, config: ModelConfig, layers: dict[str, IntConv]) -> "IntegerS2DNet":
        """The network from ``named_layers``' layers (a model file's)."""
        return cls(config, layers["stem"], [layers[f"block{i}"] for i in range(len(config.dilations))],
                   layers["up"], layers["skip"], [layers[f"fine{i}"] for i in range(len(config.fine_dilations))],
                   layers["head_hidden"], layers["head_out"])

    def to(self, device: torch.device | str) -> "IntegerS2DNet":
        device = torch.device(device)
        return IntegerS2DNet.from_layers(self.config, {n: layer.to(device) for n, layer in self.named_layers()})

    @torch.no_grad()
    def trunk(self, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) ints -> the fine stream (B, fine_channels, H, W) float32 ints in
        [0, 127] (after the final ReLU) and anchors (B, 3, H, W) int32. The cells start at row
        and column 0: a crop gives the picture's values only if it starts at even ones."""
        # on CPU oneDNN's native layout (channels last), as model.IntegerNet.trunk
        layout = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        feats, anchor = context_features(values.to(self.device), mask.to(self.device), self.config.cross_anchor, layout)
        h, w = feats.shape[-2:]
        x = residual_blocks(self.stem(_cells(feats).contiguous(memory_format=layout)), self.blocks)
        up = _pixels(self.up(x.clamp_(min=0)), h, w)
        y = residual_blocks(self.skip(feats).add_(up).clamp_(-127, 127), self.fine)
        return y.clamp_(min=0), anchor

    @torch.no_grad()
    def trunk_banded(self, values: torch.Tensor, mask: torch.Tensor, band_pixels: int = 1 << 15
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """``trunk`` computed band by band, every layer's rows exactly once (the same values),
        as model.IntegerNet.trunk_banded does: small tensors that stay in cache instead of
        whole-strip ones streamed through memory at every layer.

        The wavefront counts cell rows (two pixel rows each). Stages, each with the cell rows
        of its input it reads beyond an output row: the stem (cells of the features' rows; the
        skip from the same rows is kept for ``up``), the coarse blocks (their dilation), ``up``
        with the skip (0), the fine blocks (dilation d reads d pixel rows: ceil(d / 2) cell
        rows). Rows beyond the picture (the grid) are zeros, as ``trunk``'s padding makes them."""
        values, mask = values.to(self.device), mask.to(self.device)
        b, _, h, w = values.shape
        if h * w <= 4 * band_pixels or self.device.type != "cpu":    # one band, or a GPU: the plain call
            return self.trunk(values, mask)
        cl = torch.channels_last
        state = FeatureState(values, mask, self.config.cross_anchor, reuse=True)
        hc = (h + CELL - 1) // CELL
        f = self.config.fine_channels
        out = torch.empty(b, f, h, w, device=self.device, memory_format=cl)
        anchors = torch.empty(b, 3, h, w, dtype=torch.int32, device=self.device)
        n_coarse = len(self.blocks)
        # stage l: 0 stem, 1..n coarse blocks, n+1 up, then the fine blocks
        reach = [0] + [blk.dilation for blk in self.blocks] + [0] + [(blk.dilation + 1) // 2 for blk in self.fine]
        ahead = [sum(reach[l + 1:]) for l in range(len(reach))]
        done = [0] * len(reach)                            # cell rows produced per stage
        kept: list[tuple[int, torch.Tensor | None]] = [(0, None)] * len(reach)   # (first row, rows): cells, or pixels from up on
        skip: list[tuple[int, torch.Tensor]] = []           # the skip's pixel rows, until up reads them

        def pixel_rows(s: int, e: int) -> tuple[int, int]:
            return CELL * s, min(h, CELL * e)

        band = max(1, band_pixels // max(1, CELL * CELL * ((w + 1) // CELL)))
        for target in range(band, hc + band, band):
            for l in range(len(reach)):
                s, e = done[l], min(hc, target + ahead[l])
                if e <= s:
                    continue
                p0, p1 = pixel_rows(s, e)
                if l == 0:                                  # features -> stem (cells) and skip (pixels)
                    feats, anchor = state.rows(p0, p1, cl)
                    anchors[:, :, p0:p1] = anchor
                    skip.append((p0, self.skip(feats)))
                    x = self.stem(_cells(feats).contiguous(memory_format=cl))
                elif l <= n_coarse:                         # a coarse block
                    first, below = kept[l - 1]
                    x = residual_rows(self.blocks[l - 1], first, below, s, e, hc)
                elif l == n_coarse + 1:                     # up + skip: the fine stream's pixel rows
                    first, below = kept[l - 1]
                    up = _pixels(self.up.relu_conv(below[:, :, s - first:e - first]), p1 - p0, w)
                    parts = []
                    while skip and skip[0][0] < p1:         # the skip's rows p0..p1-1, in order
                        q0, rows = skip.pop(0)
                        take = min(rows.shape[2], p1 - q0)
                        parts.append(rows[:, :, :take])
                        if take < rows.shape[2]:
                            skip.insert(0, (q0 + take, rows[:, :, take:]))
                    x = up.add_(torch.cat(parts, 2) if len(parts) > 1 else parts[0]).clamp_(-127, 127)
                else:                                       # a fine block, pixel rows
                    first, below = kept[l - 1]
                    x = residual_rows(self.fine[l - n_coarse - 2], first, below, p0, p1, h)
                if l > 0:                                   # rows of the stage below no later band reads
                    first, below = kept[l - 1]
                    if l <= n_coarse + 1:
                        keep_from = max(first, e - reach[l])
                    else:
                        keep_from = max(first, p1 - self.fine[l - n_coarse - 2].dilation)
                    kept[l - 1] = (keep_from, below[:, :, keep_from - first:])
                if l == len(reach) - 1:
                    out[:, :, p0:p1] = x.clamp_(min=0)
                else:
                    unit_s = s if l <= n_coarse else p0
                    first, mine = kept[l]
                    kept[l] = (unit_s, x) if mine is None else (first, torch.cat([mine, x], 2))
                done[l] = e
        return out, anchors

    # the head and the per-pixel assembly are model.IntegerNet's: they read only head_hidden,
    # head_out, config.mixtures and trunk, which this class has with the same meaning
    head = IntegerNet.head
    full = IntegerNet.full

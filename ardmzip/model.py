"""The ARDM network: a small fully convolutional integer network over subpixels.

Order-agnostic ARDM (Hoogeboom et al., ICLR 2022, arXiv 2110.02037): the network sees a
partly revealed RGB image and its mask and predicts, for every subpixel, a discretized
logistic mixture over 0..255 (dlm.py). It is fully convolutional, so it is trained on
crops and serves any image size.

    features (features.py, integers)  (B, 45, H, W)
    stem      1x1 conv -> C                                 residual stream, ints in [-127, 127]
    blocks    x = clamp(x + conv3x3_dilated(relu(x)))       one conv per block
    head      1x1 conv -> hidden (relu) -> 1x1 conv -> (3 channels, 3 params, M components)

Channel convention: the network always has three colour slots. Gray images put the same
value in all three slots and reveal the slots of a pixel together (the codec codes slot
0 only); alpha is coded as a separate gray plane. Training mixes in gray crops so this is
in distribution.

Two ways to run it: ``forward`` (float or fake-quant, for training) and ``IntegerNet``
(exact integer inference for coding, built by ``export``).

A second architecture, ``ModelConfig(trunk="s2d")`` (s2d.py), runs the residual blocks on a
2x2 space-to-depth grid; ``make_net`` and ``integer_from_layers`` build either from a config.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from . import jit
from .features import CLAMP, HALO, N_FEATURES, FeatureState, context_features
from .qlayers import IntConv, QConv, set_mode

if TYPE_CHECKING:
    from .s2d import IntegerS2DNet

ACT_BITS = 4            # trunk activations: real = int / 16, ints in [-127, 127]
HEAD_LIMIT = 4095       # head outputs: ints in [-4095, 4095], units of 1/16


@dataclass(frozen=True)
class ModelConfig:
    channels: int = 48
    dilations: tuple[int, ...] = (1, 2, 1, 4, 1, 8, 1, 2)
    head_hidden: int = 64
    mixtures: int = 4
    cross_anchor: bool = False      # features.py: anchor from revealed sibling channels (models after oa-s48)
    order: str = "random"           # ardm.ORDERS: the coding order files made with this model use
    trunk: str = "full"             # TRUNKS: "full" (ARDMNet) or "s2d" (s2d.S2DNet, a 2x2 space-to-depth trunk)
    fine_channels: int = 48         # s2d: channels of the full-resolution stream after the coarse trunk
    fine_dilations: tuple[int, ...] = (1,)   # s2d: residual blocks on that stream

    @property
    def halo(self) -> int:
        """Pixels of context each output depends on, in every direction (for s2d a multiple
        of ``grid``, so that a strip starting ``halo`` rows above an even row starts on one)."""
        if self.trunk == "s2d":
            # a coarse dilation d reaches 2d pixels; the 2x2 cell a pixel sits in reaches one
            # pixel further on one side (+2 keeps it simple and even)
            halo = HALO + 2 * sum(self.dilations) + 2 + sum(self.fine_dilations)
            return halo + halo % 2
        return HALO + sum(self.dilations)

    @property
    def grid(self) -> int:
        """Rows (and columns) per cell of the trunk's grid: a crop computes the picture's values
        only if it starts at a multiple of it (s2d: 2x2 cells anchored at the picture's corner)."""
        return 2 if self.trunk == "s2d" else 1

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.trunk == "full":
            # today's network writes today's config: its model files keep their bytes and hashes
            for key in ("trunk", "fine_channels", "fine_dilations"):
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """A config from ``to_dict``'s record; files without the s2d keys are "full"."""
        d = dict(d)
        d["dilations"] = tuple(d["dilations"])
        if "fine_dilations" in d:
            d["fine_dilations"] = tuple(d["fine_dilations"])
        return cls(**d)


TRUNKS = ("full", "s2d")


class ARDMNet(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config.channels
        self.stem = QConv(N_FEATURES, c, 1, a_in=0, a_out=ACT_BITS)
        self.blocks = nn.ModuleList(QConv(c, c, 3, d, a_in=ACT_BITS, a_out=ACT_BITS) for d in config.dilations)
        self.head_hidden = QConv(c, config.head_hidden, 1, a_in=ACT_BITS, a_out=ACT_BITS, lo=0, hi=127)
        self.head_out = QConv(config.head_hidden, 3 * 3 * config.mixtures, 1, a_in=ACT_BITS, a_out=ACT_BITS,
                              lo=-HEAD_LIMIT, hi=HEAD_LIMIT)

    def named_layers(self) -> list[tuple[str, QConv]]:
        """The layers under the names a model file stores their exports by."""
        return ([("stem", self.stem)] + [(f"block{i}", b) for i, b in enumerate(self.blocks)]
                + [("head_hidden", self.head_hidden), ("head_out", self.head_out)])

    def set_mode(self, mode: str) -> None:
        """'float' (clamped float training) or 'qat' (fake-quant, same arithmetic as export)."""
        set_mode(self, mode)

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """values, mask: (B, 3, H, W) ints. Returns params (B, 3, 3, M, H, W) real and anchors (B, 3, H, W)."""
        feats, anchor = context_features(values, mask, self.config.cross_anchor)
        limit = 127 / 2 ** ACT_BITS
        x = self.stem(feats)
        for block in self.blocks:
            x = (x + block(x.clamp(min=0))).clamp(-limit, limit)
        out = self.head_out(self.head_hidden(x.clamp(min=0)))
        b, _, h, w = out.shape
        return out.view(b, 3, 3, self.config.mixtures, h, w), anchor

    @classmethod
    def from_integer(cls, inet: "IntegerNet", config: ModelConfig | None = None) -> "ARDMNet":
        """The float network whose export is ``inet`` again (to fine-tune a shipped model);
        ``config`` may change what does not touch the weights (e.g. the anchor)."""
        return load_layers(cls(config or inet.config), inet)

    def export(self) -> "IntegerNet":
        """The exact integer network (checks the 2^24 bound for every layer)."""
        return IntegerNet.from_layers(self.config, export_layers(self))


class IntegerNet:
    """Exact inference: the same network on integers, bit-identical everywhere."""

    def __init__(self, config: ModelConfig, stem: IntConv, blocks: list[IntConv],
                 head_hidden: IntConv, head_out: IntConv):
        # the blocks see a ReLU of the residual stream clamped to [-127, 127]: int8 GEMMs on CPU
        self.config, self.stem, self.blocks = config, stem, [b.with_small_input() for b in blocks]
        self.head_hidden, self.head_out = head_hidden, head_out
        self.device = stem.weight.device

    def named_layers(self) -> list[tuple[str, IntConv]]:
        """The layers under the names a model file stores them by (weights.py)."""
        return ([("stem", self.stem)] + [(f"block{i}", b) for i, b in enumerate(self.blocks)]
                + [("head_hidden", self.head_hidden), ("head_out", self.head_out)])

    @classmethod
    def from_layers(cls, config: ModelConfig, layers: dict[str, IntConv]) -> "IntegerNet":
        """The network from ``named_layers``' layers (a model file's)."""
        blocks = [layers[f"block{i}"] for i in range(len(config.dilations))]
        return cls(config, layers["stem"], blocks, layers["head_hidden"], layers["head_out"])

    def to(self, device: torch.device | str) -> "IntegerNet":
        device = torch.device(device)
        return IntegerNet.from_layers(self.config, {n: layer.to(device) for n, layer in self.named_layers()})

    @torch.no_grad()
    def trunk(self, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) ints -> trunk activations (B, C, H, W) ints in [0, 127] (after the
        final ReLU; float32, or int8 with ``int8_stream``) and anchors (B, 3, H, W) int32."""
        # on CPU oneDNN's native layout (channels last): no reorders around each conv
        layout = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        feats, anchor = context_features(values.to(self.device), mask.to(self.device), self.config.cross_anchor, layout)
        if self.int8_stream():
            x = torch.empty(feats.shape[0], self.stem.weight.shape[0], *feats.shape[2:], dtype=torch.int8,
                            device=self.device, memory_format=layout)
            relu = torch.empty_like(x)
            self.stem.into_int8(feats, x, relu)
            return residual_blocks_int8(x, self.blocks, relu), anchor
        return residual_blocks(self.stem(feats), self.blocks).clamp_(min=0), anchor

    def int8_stream(self) -> bool:
        """Whether the residual stream runs as int8 here: on CPU, when every block has oneDNN's
        exact int8-output convolution (qlayers.OneDNNConv.int8_floor). The same integers as
        the float32 stream, in a quarter of the bytes, so the passes between the convolutions
        (ReLU, clamps, additions) cost about a third. The trunk then returns int8."""
        return bool(self.blocks) and all(blk.int8_output() and (blk.lo, blk.hi) == (-127, 127) for blk in self.blocks)

    @torch.no_grad()
    def trunk_banded(self, values: torch.Tensor, mask: torch.Tensor, band_pixels: int = 1 << 16
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """``trunk`` computed band by band, every layer's rows exactly once (the same values).

        ``trunk`` on a strip recomputes a halo of rows around it and streams whole-strip
        tensors through memory at every layer. Here the features come from one integral image
        (features.FeatureState) and each layer advances over bands of about ``band_pixels``
        pixels as soon as the layer below has the rows its dilated convolution needs (a
        wavefront), keeping only the rows still to be read: small tensors that stay in cache.
        Rows above and below the input are zeros, as ``trunk``'s padding makes them."""
        values, mask = values.to(self.device), mask.to(self.device)
        b, _, h, w = values.shape
        if h * w <= band_pixels:          # one band: the plain call (its conv padding is free)
            return self.trunk(values, mask)
        state = FeatureState(values, mask, self.config.cross_anchor, reuse=True)
        layers = [None, *self.blocks]                       # layer 0: features and stem
        reach = [0] + [blk.dilation for blk in self.blocks]
        # rows layer l must have produced before the layer above can reach row t of the last one
        ahead = [sum(reach[l + 1:]) for l in range(len(layers))]
        done = [0] * len(layers)                           # rows produced per layer
        int8 = self.int8_stream()
        # each layer's rows still to be read; on an int8 stream their ReLUs too (the next
        # layer's input, written with the stream by the same pass: ``residual_rows_int8``)
        kept = RowBuffer.reused(2 * len(layers) if int8 else len(layers))
        relus = kept[len(layers):]
        # the dilation each ReLU buffer is read with: its zero rows, and on the CPU its zero columns
        reads = [blk.dilation for blk in self.blocks] + [0]
        pads = reads if self.device.type == "cpu" else [0] * len(reads)
        c = self.blocks[0].weight.shape[0] if self.blocks else self.stem.weight.shape[0]
        dtype = torch.int8 if int8 else torch.float32
        out = torch.empty(b, c, h, w, dtype=dtype, device=self.device, memory_format=torch.channels_last)   # (not a copy)
        anchors = torch.empty(b, 3, h, w, dtype=torch.int32, device=self.device)
        band = max(1, band_pixels // max(1, w))
        cpu = self.device.type == "cpu"
        if int8:    # zero rows above the picture in each ReLU buffer (below it once the layer is done):
            for l in range(len(layers) - 1):      # the convolutions read their halo rows in place
                self._zero_rows(relus[l], reads[l], b, c, w, dtype, pads[l])
                relus[l].first = -reads[l]
        for target in range(band, h + band, band):
            for l, layer in enumerate(layers):
                s, e = done[l], min(h, target + ahead[l])
                if e <= s:
                    continue
                last = l == len(layers) - 1
                dest = out[:, :, s:e] if last else kept[l].claim(e - s, b, c, w, self.device, dtype)
                if layer is None:
                    feats, anchor = state.rows(s, e, torch.channels_last if cpu else torch.contiguous_format)
                    anchors[:, :, s:e] = anchor
                    if int8 and not last:
                        self.stem.into_int8(feats, dest, relus[l].claim(e - s, b, c, w, self.device, dtype, pads[l]))
                    else:
                        dest.copy_(self.stem(feats))
                        if last:
                            dest.clamp_(min=0)
                elif int8:                                  # last: the trunk's output is the ReLU
                    x = kept[l - 1]
                    residual_rows_int8(layer, x.rows()[:, :, s - x.first:e - x.first], relus[l - 1].first,
                                       relus[l - 1].padded_rows(), s, e, h, out=None if last else dest,
                                       relu_out=dest if last else relus[l].claim(e - s, b, c, w, self.device, dtype,
                                                                                 pads[l]))
                    x.drop_before(e)                                 # rows no later band reads
                    relus[l - 1].drop_before(e - layer.dilation)
                else:
                    residual_rows(layer, kept[l - 1].first, kept[l - 1].rows(), s, e, h, out=dest)
                    kept[l - 1].drop_before(e - layer.dilation)     # rows no later band reads
                    if last:
                        dest.clamp_(min=0)
                done[l] = e
                if int8 and e == h and not last:
                    self._zero_rows(relus[l], reads[l], b, c, w, dtype, pads[l])
        return out, anchors

    def _zero_rows(self, rows: "RowBuffer", count: int, b: int, c: int, w: int, dtype: torch.dtype, pad: int) -> None:
        rows.claim(count, b, c, w, self.device, dtype, pad).zero_()

    @torch.no_grad()
    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel trunk activations (N, C) -> integer head outputs (N, 3, 3, M) float32.
        int8 activations on the CPU take int8 GEMMs (the hidden layer's outputs lie in
        [0, 127], int8 again): the same integers as float32 matrix products."""
        fits = x.dtype == torch.int8 and -128 <= self.head_hidden.lo and self.head_hidden.hi <= 127
        hidden = self.head_hidden.linear_int8(x) if fits else None
        out = None if hidden is None else self.head_out.linear_int8(hidden.to(torch.int8))
        if out is None:
            out = self.head_out.linear(self.head_hidden.linear(x.to(torch.float32)))
        return out.to(torch.float32).view(-1, 3, 3, self.config.mixtures)

    @torch.no_grad()
    def full(self, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer head outputs for every pixel: (B, 3, 3, M, H, W), anchors (B, 3, H, W)."""
        x, anchor = self.trunk(values, mask)
        b, c, h, w = x.shape
        out = self.head(x.permute(0, 2, 3, 1).reshape(-1, c))
        return out.view(b, h, w, 3, 3, -1).permute(0, 3, 4, 5, 1, 2), anchor


def net_class(config: ModelConfig) -> type[nn.Module]:
    """The float (trainable) network class of ``config.trunk``: ARDMNet or s2d.S2DNet."""
    if config.trunk == "s2d":
        from .s2d import S2DNet          # s2d.py builds on this module: imported when asked for
        return S2DNet
    if config.trunk != "full":
        raise ValueError(f"unknown trunk {config.trunk!r} (one of {', '.join(TRUNKS)})")
    return ARDMNet


def make_net(config: ModelConfig) -> nn.Module:
    """A fresh float network for ``config`` (ARDMNet or s2d.S2DNet)."""
    return net_class(config)(config)


def integer_from_layers(config: ModelConfig, layers: dict[str, IntConv]) -> "IntegerNet | IntegerS2DNet":
    """The exact network (IntegerNet or s2d.IntegerS2DNet) of ``config`` from its layers by
    name, as a model file stores them (``named_layers``)."""
    if config.trunk == "s2d":
        from .s2d import IntegerS2DNet
        return IntegerS2DNet.from_layers(config, layers)
    net_class(config)                    # refuses an unknown trunk
    return IntegerNet.from_layers(config, layers)


@torch.no_grad()
def load_integer(q: QConv, ic: IntConv) -> None:
    """Set ``q``'s float weights to those whose export is ``ic`` again (``from_integer``).

    Undoes export's arithmetic: W = W_int * 2^-j, b = (b_int - rounding) * 2^-(j + a_in)."""
    shift = ic.shift().float()
    j = shift - q.a_in + q.a_out
    rounding = torch.where(shift > 0, 2.0 ** (shift - 1).clamp(min=0), torch.zeros_like(shift))
    q.conv.weight.copy_(ic.weight.cpu() / (2.0 ** j).view(-1, 1, 1, 1))
    q.conv.bias.copy_((ic.bias.cpu() - rounding) / 2.0 ** (j + q.a_in))


def load_layers(net: nn.Module, inet) -> nn.Module:
    """Set ``net``'s float weights (ARDMNet or s2d.S2DNet) to those whose export is ``inet``."""
    ints = dict(inet.named_layers())
    for name, q in net.named_layers():
        load_integer(q, ints[name])
    return net


def export_layers(net: nn.Module) -> dict[str, IntConv]:
    """``net``'s layers exported by name, each checked against the 2^24 bound: layers fed the
    features see |x| <= CLAMP (255), the others a ReLU of a clamped stream, [0, 127]."""
    return {name: q.export(max_in=CLAMP if q.a_in == 0 else 127) for name, q in net.named_layers()}


def residual_blocks(x: torch.Tensor, blocks: list[IntConv]) -> torch.Tensor:
    """x = clamp(x + block(relu(x)), -127, 127) for each block, in place (``relu_conv`` takes
    the ReLU): these passes are memory-bound (the same values as the functional form)."""
    for block in blocks:
        x.add_(block.relu_conv(x)).clamp_(-127, 127)
    return x


def residual_blocks_int8(x: torch.Tensor, blocks: list[IntConv], relu: torch.Tensor) -> torch.Tensor:
    """``residual_blocks`` on an int8 stream (``IntegerNet.int8_stream``) x with relu = max(x, 0),
    then the trunk's final ReLU: its output. Each addition also writes the ReLU the next block
    reads (x and relu are overwritten)."""
    spare = torch.empty_like(x) if len(blocks) > 1 else None
    for i, block in enumerate(blocks):
        last = i == len(blocks) - 1
        conv = block.int8_floor(relu)        # (read before the addition overwrites relu)
        _add_clamped_relu(x, conv, relu, out=None if last else spare, relu_out=relu)
        if not last:
            x, spare = spare, x
    return relu


def _add_clamped_relu(x: torch.Tensor, conv: torch.Tensor, relu: torch.Tensor, out: torch.Tensor | None,
                      relu_out: torch.Tensor) -> None:
    """out = clamp(x + clamp(conv, -127, 127), -127, 127) and relu_out = max(out, 0) for int8
    x in [-127, 127] with relu = max(x, 0) (``out`` None: relu_out alone; relu_out may be
    relu), without leaving int8: x + conv stays in [-127, 127] exactly when conv lies in
    [-127 - min(x, 0), 127 - max(x, 0)], whose bounds lie in [-127, 127] themselves (so
    clamping to them takes the inner clamp too). ``conv`` may be overwritten."""
    flat = [x, conv] if out is None else [x, conv, out]
    rows = jit.pitched(relu_out) if x.device.type == "cpu" and jit.available() else None
    if rows is not None and _flat_ok(*flat) and relu_out.shape == x.shape:
        relu, n, pitch = rows       # (relu_out's rows may carry zero columns: ``jit.pitched``)
        jit.add_clamped_relu_int8(_flat(x), _flat(conv), None if out is None else _flat(out), relu, n, pitch)
        return                                                          # the same, in one pass
    conv.clamp_(min=torch.sub(relu, x).sub_(127), max=torch.rsub(relu, 127))
    torch.clamp(torch.add(x, conv, out=conv if out is None else out), min=0, out=relu_out)


def _flat_ok(*ts: torch.Tensor) -> bool:
    return all(t.is_contiguous(memory_format=torch.channels_last) and t.shape == ts[0].shape for t in ts)


def _flat(t: torch.Tensor):
    """A 1-D numpy view of a channels-last contiguous tensor (same memory: ``view`` never copies)."""
    return t.permute(0, 2, 3, 1).view(-1).numpy()


_ROW_BUFFERS = threading.local()


class RowBuffer:
    """Rows ``first`` .. ``first + n - 1`` of one layer's output in a band-by-band trunk, held
    in one buffer reused across bands: each band's rows are written in place after the rows
    still kept (no concatenation, no fresh pages), and rows no longer read are dropped from
    the front; the kept rows move to the buffer's start only when it runs out of room.

    ``pad`` zero columns either side of every row (``claim``): the layer above reads the
    rows with its own padding already there (``padded_rows``), as oneDNN's convolution
    runs faster without padding of its own. They are zeroed when the buffer is made, and
    nothing writes them after: rows are written through interior views, and moved whole."""

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None
        self.start = self.n = self.first = self.pad = 0

    @staticmethod
    def reused(count: int) -> "list[RowBuffer]":
        """``count`` empty buffers, this thread's from earlier calls where there are (their
        memory already mapped: fresh pages fault on first write, dearer than the writes)."""
        pool = _ROW_BUFFERS.__dict__.setdefault("pool", [])
        pool.extend(RowBuffer() for _ in range(count - len(pool)))
        for rb in pool[:count]:
            rb.start = rb.n = rb.first = 0
        return pool[:count]

    def padded_rows(self) -> torch.Tensor:
        """The kept rows with their zero columns: (B, C, n, W + 2 pad)."""
        return self.buf[:, :, self.start:self.start + self.n]

    def rows(self) -> torch.Tensor:
        """The kept rows: (B, C, n, W)."""
        rows = self.padded_rows()
        return rows[..., self.pad:rows.shape[3] - self.pad] if self.pad else rows

    def drop_before(self, row: int) -> None:
        k = min(self.n, max(0, row - self.first))
        self.start, self.n, self.first = self.start + k, self.n - k, self.first + k

    def claim(self, count: int, b: int, c: int, w: int, device: torch.device,
              dtype: torch.dtype = torch.float32, pad: int = 0) -> torch.Tensor:
        """A view of the next ``count`` rows (contents undefined; W wide, inside their ``pad``
        zero columns), now counted as kept."""
        need, width = self.n + count, w + 2 * pad
        if (self.buf is None or self.buf.shape[2] < need or self.buf.device != device or self.buf.dtype != dtype
                or (self.buf.shape[0], self.buf.shape[1], self.buf.shape[3]) != (b, c, width) or self.pad != pad):
            buf = torch.empty(b, c, need, width, dtype=dtype, device=device, memory_format=torch.channels_last)
            if pad:
                buf.zero_()
            if self.n:
                buf[:, :, :self.n, pad:pad + w] = self.rows()
            self.buf, self.start, self.pad = buf, 0, pad
        elif self.start + need > self.buf.shape[2]:              # no room after the kept rows: move them
            rows = self.padded_rows()
            self.buf[:, :, :self.n] = rows.clone() if self.start < self.n else rows
            self.start = 0
        view = self.buf[:, :, self.start + self.n:self.start + need]
        self.n = need
        return view[..., pad:pad + w] if pad else view


def _zero_padded(below: torch.Tensor, first: int, s: int, e: int, d: int, size: int) -> torch.Tensor:
    """Rows s - d .. e + d - 1 of the layer ``below`` holds from row ``first`` on; rows outside
    0..size-1 read as zeros, as the whole-picture convolution's padding makes them (``below``
    may hold such zero rows itself, ``first`` < 0: then it is a view, not a copy)."""
    if first <= s - d and e + d <= first + below.shape[2]:       # held, zero rows included
        return below[:, :, s - d - first:e + d - first]
    lo, hi = max(0, s - d), min(size, e + d)
    src = below[:, :, lo - first:hi - first]
    if lo > s - d or hi < e + d:                    # an edge of the picture: zero rows
        layout = torch.channels_last if below.device.type == "cpu" else torch.contiguous_format
        padded = torch.empty(src.shape[0], src.shape[1], e - s + 2 * d, src.shape[3], dtype=src.dtype,
                             device=below.device, memory_format=layout).zero_()
        padded[:, :, lo - (s - d):lo - (s - d) + (hi - lo)] = src
        src = padded
    return src


def residual_rows(block: IntConv, first: int, below: torch.Tensor, s: int, e: int, size: int,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """Rows s..e-1 of clamp(x + block(relu(x)), -127, 127), where ``below`` holds rows of x from
    row ``first`` on (a band-by-band trunk, float32 stream); rows outside 0..size-1 read as
    zeros, as the whole-picture convolution's padding makes them. ``out``: where to write them."""
    d = block.dilation
    conv = block.relu_conv(_zero_padded(below, first, s, e, d, size), (0, d))
    if out is None:
        return conv.add_(below[:, :, s - first:e - first]).clamp_(-127, 127)
    return torch.add(conv, below[:, :, s - first:e - first], out=out).clamp_(-127, 127)


def residual_rows_int8(block: IntConv, x: torch.Tensor, first: int, relu: torch.Tensor, s: int, e: int,
                       size: int, out: torch.Tensor | None, relu_out: torch.Tensor) -> None:
    """``residual_rows`` on an int8 stream (``IntegerNet.int8_stream``): x holds its rows
    s..e-1, ``relu`` rows of max(x, 0) from row ``first`` on (the convolution's input, halo
    included), which may carry up to the block's dilation of zero columns either side
    (``RowBuffer``: the convolution then needs no padding of its own). Writes rows s..e-1 of
    the stream to ``out`` (None: not kept) and their ReLU to ``relu_out``, in one pass."""
    d, pad = block.dilation, (relu.shape[3] - x.shape[3]) // 2
    conv = block.int8_floor(_zero_padded(relu, first, s, e, d, size), (0, d - pad))
    _add_clamped_relu(x, conv, relu[:, :, s - first:e - first, pad:pad + x.shape[3]], out=out, relu_out=relu_out)

"""Per-picture adaptation (format version 11; 9 on version 8's planes, 7 on version 6's): the encoder tunes the network's biases to the
picture it codes and sends the changes, a few hundred bytes, in front of the plane streams.

Why biases. A shipped network is the best single network for many pictures; a picture of its
own (a smooth, low-noise photo, say) is coded better by a network nudged towards it. On one
such photo (OA estimate, the picture's 64x64 tiles), tuning every weight for 300 steps gained
5.7%, but the weights cost far more to send than they save; the biases alone, ~530 numbers
for xic-s48 (each layer's output offsets: they move every activation and the head's means,
scales and mixture weights with it), gained 2.4% after 300 steps and 1.8% after 30, for
~550 bytes. Measured whole files: benchmarks/adapt.py.

The decoder does no training: it reads the changes, adds them to the model's integer
biases and decodes as usual with the adapted network, which is exact like any integer
network (every layer's 2^24 bound is checked on both sides). Only the encoder runs float
training (in bfloat16 where the CPU has it), so a file may differ between machines or
thread counts (each decodes anywhere). The encoder keeps the adapted file only where it is
the smaller one.

Stream layout (the first stream of a version 7 or 9 file): for every layer of the network in
``named_layers`` order, one byte q (0..31), then one zigzag varint per output channel:
the bias changes by that value times 2^q. The encoder picks q per layer so that every
value fits one byte (|v| <= 63).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from .ardm import oa_loss
from .errors import FormatError, InputError
from .model import CLAMP, IntegerNet, ModelConfig, load_layers, make_net
from .progress import PictureBar, step_bar
from .qlayers import EXACT_LIMIT, IntConv, set_bf16
from .train import bf16_native
from .weights import Model

DEFAULT_STEPS = 30          # Adam steps of --adapt: ~1.5-2% smaller on smooth photos (module docstring)
TILE = 64                   # side of the training tiles (smaller pictures: one tile, the whole picture)
BATCH = 16                  # tiles per step
LEARNING_RATE = 3e-2
MAX_SHIFT = 31
SMALL = 63                  # |value| <= 63: one zigzag varint byte


def _tiles(pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping square tiles of an (H, W, C) uint8 picture, C = 1 or 3: (N, C, T, T)
    uint8 (a view-sized copy, not the network's int64: a large picture's tiles stay small)
    and the gray flags."""
    h, w, c = pixels.shape
    t = min(TILE, h, w)
    rows, cols = h // t, w // t
    tiles = pixels[:rows * t, :cols * t].reshape(rows, t, cols, t, c).transpose(0, 2, 4, 1, 3).reshape(-1, c, t, t)
    x = torch.as_tensor(np.ascontiguousarray(tiles))
    return x, torch.full((len(x),), c == 1, dtype=torch.bool)


def _exact(layer: IntConv, max_in: int) -> bool:
    """The layer's partial sums stay below 2^24 for inputs |x| <= max_in (float32 is exact)."""
    w, b = layer.weight.cpu().double(), layer.bias.cpu().double()
    return bool((max_in * w.abs().flatten(1).sum(1) + b.abs() < EXACT_LIMIT).all())


@functools.lru_cache(maxsize=8)
def _input_bounds(config: ModelConfig) -> dict[str, int]:
    """Each layer's largest input, by name, as model.export_layers bounds it: layers fed the
    features see |x| <= CLAMP, the others a ReLU of a clamped stream, [0, 127]."""
    return {name: CLAMP if q.a_in == 0 else 127 for name, q in make_net(config).named_layers()}


def tune(model: Model, pixels: np.ndarray, steps: int = DEFAULT_STEPS, seed: int = 0,
         progress: PictureBar | bool = False) -> list[np.ndarray]:
    """The bias changes (per layer, int64 (Cout,), each a multiple of its layer's 2^q) that
    ``steps`` Adam steps of the OA-ARDM loss on tiles of ``pixels`` ((H, W, 1 or 3) uint8)
    give ``model``'s network; layers that would lose exactness keep their biases.
    ``progress``: as the codec's (a PictureBar counts the steps as one pass)."""
    base = model.net
    net = make_net(base.config)
    load_layers(net, base)
    net.set_mode("qat")
    set_bf16(net, bf16_native("cpu"))     # 1.5x the steps/s where the CPU multiplies bfloat16, the same gain
    for name, p in net.named_parameters():
        p.requires_grad_(name.endswith("bias"))
    params = [p for p in net.parameters() if p.requires_grad]
    x, gray = _tiles(pixels)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params, lr=LEARNING_RATE)
    interlaced = 1.0 if base.config.order.startswith("interlace") else 0.0
    green_first = 1.0 if base.config.order.startswith("interlace2g") else 0.0
    for _ in step_bar(range(steps), progress, "adapt"):
        pick = torch.randint(len(x), (min(BATCH, len(x)),), generator=g)
        batch = x[pick].long().expand(-1, 3, -1, -1)          # gray: three equal slots
        bpsp, _, _ = oa_loss(net, batch, gray[pick], g, interlaced, green_first=green_first)
        opt.zero_grad()
        bpsp.mean().backward()
        opt.step()
    bounds = _input_bounds(base.config)
    tuned = {name: _export(q, bounds[name]) for name, q in net.named_layers()}
    out = []
    for name, layer in base.named_layers():
        new = tuned[name]
        delta = np.zeros(layer.bias.numel(), np.int64)
        if new is not None and torch.equal(new.weight.cpu(), layer.weight.cpu()):
            delta = (new.bias.cpu().double() - layer.bias.cpu().double()).numpy().astype(np.int64)
        q = _shift_for(delta)
        delta = np.round(delta / 2.0 ** q).astype(np.int64) << q
        if not _exact(dataclasses.replace(layer, bias=layer.bias + torch.as_tensor(delta, dtype=layer.bias.dtype)),
                      bounds[name]):
            delta[:] = 0
        out.append(delta)
    return out


def _export(q, max_in: int) -> IntConv | None:
    try:
        return q.export(max_in=max_in)
    except ValueError:          # the tuned float biases would break the 2^24 bound
        return None


def _shift_for(delta: np.ndarray) -> int:
    """The smallest q with every round(delta / 2^q) in [-SMALL, SMALL]."""
    q = 0
    while q < MAX_SHIFT and np.abs(np.round(delta / 2.0 ** q)).max(initial=0) > SMALL:
        q += 1
    return q


def pack(deltas: list[np.ndarray]) -> bytes:
    """The adaptation stream (module docstring) of ``tune``'s changes."""
    out = bytearray()
    for delta in deltas:
        q = _shift_for(delta)
        units = delta >> q
        if not np.array_equal(units << q, delta) or np.abs(units).max(initial=0) > SMALL:
            raise ValueError("bias changes not on their layer's grid")
        out.append(q)
        out += bytes(((units << 1) ^ (units >> 63)).astype(np.uint8).tolist())   # zigzag, one byte each
    return bytes(out)


def unpack(data: bytes, net: IntegerNet) -> list[np.ndarray]:
    """The per-layer bias changes an adaptation stream holds for ``net``; FormatError if the
    stream does not fit the network (length, shifts, values)."""
    out, pos = [], 0
    for _, layer in net.named_layers():
        n = layer.bias.numel()
        if pos + 1 + n > len(data):
            raise FormatError("corrupt .ardm file: adaptation stream too short for the model")
        q = data[pos]
        raw = np.frombuffer(data, np.uint8, n, pos + 1).astype(np.int64)
        if q > MAX_SHIFT or (raw > 2 * SMALL).any():
            raise FormatError("corrupt .ardm file: bad value in the adaptation stream")
        out.append(((raw >> 1) ^ -(raw & 1)) << q)
        pos += 1 + n
    if pos != len(data):
        raise FormatError("corrupt .ardm file: bytes after the adaptation stream's last layer")
    return out


def apply(model: Model, deltas: list[np.ndarray]) -> Model:
    """``model`` with its network's biases changed by ``deltas`` (same name and hash: a file
    names the model it was adapted from). FormatError where a layer would lose exactness."""
    layers, bounds = {}, _input_bounds(model.net.config)
    for (name, layer), delta in zip(model.net.named_layers(), deltas):
        bias = layer.bias + torch.as_tensor(delta, dtype=torch.float64).to(layer.bias)
        if not torch.equal(bias.double(), layer.bias.double() + torch.as_tensor(delta, dtype=torch.float64)):
            raise FormatError("corrupt .ardm file: adapted bias out of range")
        layers[name] = dataclasses.replace(layer.to(torch.device("cpu")), bias=bias.cpu())
        if not _exact(layers[name], bounds[name]):
            raise FormatError("corrupt .ardm file: adapted network is not exact (2^24 bound)")
    net = type(model.net).from_layers(model.net.config, layers)
    return dataclasses.replace(model, net=net)


def adapt(model: Model, pixels: np.ndarray, steps: int = DEFAULT_STEPS, seed: int = 0,
          progress: PictureBar | bool = False) -> tuple[Model, bytes]:
    """The adapted model for ``pixels`` and its adaptation stream (``tune``, ``pack``, ``apply``)."""
    if steps < 1:
        raise InputError("adaptation steps must be at least 1")
    deltas = tune(model, pixels, steps, seed, progress)
    return apply(model, deltas), pack(deltas)

"""Compress and decompress pictures with an exact ARDM and ANS (paper §4).

A plane (RGB, or gray with its three slots tied) has D variables. Their coding order
comes from ``coding_ranks(D, seed)`` and the K-step partition from ``schedule``; step s
codes the variables whose rank falls in its range, all predicted from one network call on
the state after steps 0..s-1. The decoder walks the steps forward; the encoder, which
knows the whole image, pushes them in reverse because ANS is a stack.

Memory stays bounded for any image size: the trunk runs on horizontal strips with a halo
of ``config.halo`` rows, and the head and the coder work on chunks of variables. Because
the integer network is exact, a strip computes exactly what the full image would, so
strip and chunk sizes are not part of the format: any decoder settings decode any file.

Alpha is a separate gray plane (seed + 1). Each plane's stream starts with a value
constraint (constraint.py): the values or palette colours the plane uses, so that the
coder never spends probability on values the image cannot have; a constant plane costs
its kind byte and its colour, and no network call.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from . import constraint, container
from .ardm import coding_ranks
from .coder import Decoder, Encoder
from .dlm import bits_of, exact_frequencies, frequencies_to_probabilities
from .errors import ChecksumError, FormatError, InputError
from .imageio import Picture, picture_from_array
from .model import IntegerNet
from .schedule import schedule
from .weights import Model, find_by_hash, load

DEFAULT_STEPS = 16
STRIP_PIXELS = 1 << 20        # pixels per trunk call, halo included
CHUNK = 1 << 15               # variables per head / coder call
TRY_ALL_CONSTRAINTS = 1 << 16  # planes up to this many subpixels try every value constraint
CHANNELS = {"L": 1, "1": 1, "LA": 2, "RGB": 3, "P": 3, "RGBA": 4, "PA": 4}


@dataclass
class Stats:
    """What coding a picture cost: ANS stream bits, the ideal bits of the same probabilities,
    and the bits of the planes' value constraints (side information)."""
    file_bits: int = 0
    ideal_bits: float = 0.0
    side_bits: int = 0
    subpixels: int = 0


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r} (use cpu, cuda or auto)")
    return torch.device(device)


class PlaneCoder:
    """The schedule, order and network calls for one plane; shared by encoder and decoder."""

    def __init__(self, net: IntegerNet, curve: np.ndarray, h: int, w: int, gray: bool, steps: int, seed: int,
                 strip_pixels: int = STRIP_PIXELS, chunk: int = CHUNK):
        self.net, self.h, self.w, self.gray = net, h, w, gray
        self.per_row = w if gray else 3 * w
        d = h * self.per_row
        bounds, _ = schedule(d, steps, curve)
        step_of = (np.searchsorted(bounds, coding_ranks(d, seed), side="right") - 1).astype(np.int32)
        self.step_of = step_of
        self.by_step = np.argsort(step_of, kind="stable")          # variables grouped by step, ascending index
        self.starts = np.concatenate([[0], np.cumsum(np.bincount(step_of, minlength=len(bounds) - 1))])
        self.steps = len(bounds) - 1
        halo = net.config.halo
        rows = max(1, strip_pixels // max(1, w) - 2 * halo)
        self.strips = [(r, min(h, r + rows)) for r in range(0, h, rows)]
        self.chunk = chunk

    def mask(self, step: int) -> torch.Tensor:
        """(1, 3, H, W) int32: variables revealed before ``step``."""
        m = torch.from_numpy((self.step_of < step).astype(np.int32))
        if self.gray:
            return m.view(1, 1, self.h, self.w).expand(1, 3, -1, -1)
        return m.view(1, self.h, self.w, 3).permute(0, 3, 1, 2)

    def work(self, step: int):
        """Yield (strip, variables of this step in the strip), strips top to bottom."""
        idx = self.by_step[self.starts[step]:self.starts[step + 1]]
        cuts = np.searchsorted(idx // self.per_row, [r for _, r in self.strips], side="left")
        lo = 0
        for strip, hi in zip(self.strips, cuts):
            if hi > lo:
                yield strip, idx[lo:hi]
            lo = hi

    def chunks(self, variables: np.ndarray) -> list[np.ndarray]:
        return [variables[i:i + self.chunk] for i in range(0, len(variables), self.chunk)]

    def frequencies(self, values: torch.Tensor, mask: torch.Tensor, strip: tuple[int, int],
                    chunks: list[np.ndarray]):
        """Yield integer frequencies (n, 256) for each chunk of variables, in the given order.

        All variables of a step share one mask, so their frequencies do not depend on
        the order they are computed in: the encoder walks the chunks backwards, the
        decoder forwards, and both hold one chunk's frequencies at a time."""
        r0, r1 = strip
        halo = self.net.config.halo
        top, bottom = max(0, r0 - halo), min(self.h, r1 + halo)
        x, anchor = self.net.trunk(values[:, :, top:bottom], mask[:, :, top:bottom])
        dev = x.device
        for chunk in chunks:
            v = torch.from_numpy(chunk).to(dev)
            if self.gray:
                row, col, ch = v // self.w, v % self.w, torch.zeros_like(v)
            else:
                row, col, ch = v // (3 * self.w), (v // 3) % self.w, v % 3
            row = row - top
            params = self.net.head(x[0, :, row, col].t().contiguous())        # (n, 3, 3, M)
            params = params[torch.arange(len(v), device=dev), ch]             # (n, 3, M)
            yield exact_frequencies(params, anchor[0, ch, row, col])


def _plane_tensor(plane: np.ndarray, gray: bool) -> torch.Tensor:
    """(H, W) gray or (H, W, 3) RGB uint8 -> (1, 3, H, W) long."""
    t = torch.from_numpy(np.ascontiguousarray(plane)).long()
    if gray:
        return t.view(1, 1, *t.shape).expand(1, 3, -1, -1).contiguous()
    return t.permute(2, 0, 1).unsqueeze(0).contiguous()


def _chunk_frequencies(pc: PlaneCoder, values: torch.Tensor, device: torch.device, progress: bool):
    """Yield (step, variables, raw frequencies) in the encoder's push order: the reverse of decoding."""
    for step in tqdm(range(pc.steps - 1, -1, -1), desc="compress", unit="step", disable=not progress, leave=False):
        mask = pc.mask(step).to(device)
        # ANS is a stack: push the step's chunks in the reverse of the decoder's order.
        for strip, variables in reversed(list(pc.work(step))):
            chunks = pc.chunks(variables)[::-1]
            for var, freq in zip(chunks, pc.frequencies(values, mask, strip, chunks)):
                yield step, var, freq


def encode_plane(model: Model, plane: np.ndarray, steps: int, seed: int, device: torch.device,
                 stats: Stats, progress: bool = False) -> bytes:
    """One plane's stream: its value constraint, then the ANS words (constraint.py)."""
    gray = plane.ndim == 2
    flat = plane.reshape(-1)
    cands = constraint.candidates(plane)
    if cands[0].kind in (constraint.CONSTANT, constraint.GRAY):
        head = cands[0].to_bytes()
        stats.side_bits += 8 * len(head)
        if cands[0].kind == constraint.CONSTANT:
            stats.subpixels += flat.size
            return head
        stats.subpixels += flat.size - plane[..., 0].size            # the gray plane counts the rest
        return head + encode_plane(model, plane[..., 0], steps, seed, device, stats, progress)
    stats.subpixels += flat.size
    net = model.net.to(device)
    pc = PlaneCoder(net, model.curve, plane.shape[0], plane.shape[1], gray, steps, seed)
    values = _plane_tensor(plane, gray).to(device)
    work = _chunk_frequencies(pc, values, device, progress)
    if flat.size > TRY_ALL_CONSTRAINTS or len(cands) == 1:
        choice = constraint.by_rule(cands, plane.shape[0] * plane.shape[1])
    else:
        # Small plane: side information matters, so measure every candidate on the same
        # network outputs (cached, at most 64 MB) and keep the cheapest whole stream.
        work = list(work)
        cost = [8 * len(c.to_bytes()) for c in cands]
        for step, var, freq in work:
            sym = torch.from_numpy(flat[var].astype(np.int64))
            for i, c in enumerate(cands):
                cost[i] += bits_of(c.restrict(freq, var, flat, pc.step_of, step).cpu(), sym)
        choice = cands[int(np.argmin(cost))]
    enc = Encoder()
    for step, var, freq in work:
        freq = choice.restrict(freq, var, flat, pc.step_of, step)
        sym = flat[var].astype(np.int32)
        stats.ideal_bits += bits_of(freq.cpu(), torch.from_numpy(sym))
        enc.push(sym, frequencies_to_probabilities(freq))
    head, data = choice.to_bytes(), enc.finish()
    stats.side_bits += 8 * len(head)
    stats.file_bits += 8 * len(data)
    return head + data


def decode_plane(model: Model, stream: bytes, h: int, w: int, gray: bool, steps: int, seed: int,
                 device: torch.device, progress: bool = False, strip_pixels: int = STRIP_PIXELS,
                 chunk: int = CHUNK, version: int = container.FORMAT_VERSION) -> np.ndarray:
    channels = 1 if gray else 3
    if version >= 2:
        rule, data = constraint.Constraint.parse(stream, channels)
    else:
        rule, data = constraint.Constraint(constraint.PLAIN, channels), stream
    shape = (h, w) if gray else (h, w, 3)
    if rule.kind == constraint.CONSTANT:
        if data:
            raise FormatError("corrupt .ardm file: data after a constant plane")
        return np.broadcast_to(rule.data.reshape(-1) if not gray else rule.data[0], shape).copy()
    if rule.kind == constraint.GRAY:
        plane = decode_plane(model, data, h, w, True, steps, seed, device, progress, strip_pixels, chunk, version)
        return np.repeat(plane[..., None], 3, axis=2)
    net = model.net.to(device)
    pc = PlaneCoder(net, model.curve, h, w, gray, steps, seed, strip_pixels, chunk)
    flat = np.zeros(h * pc.per_row, dtype=np.uint8)
    values = torch.zeros(1, 3, h, w, dtype=torch.long, device=device)
    dec = Decoder(data)
    try:
        for step in tqdm(range(pc.steps), desc="decompress", unit="step", disable=not progress, leave=False):
            mask = pc.mask(step).to(device)
            for strip, variables in pc.work(step):
                chunks = pc.chunks(variables)
                for var, freq in zip(chunks, pc.frequencies(values, mask, strip, chunks)):
                    freq = rule.restrict(freq, var, flat, pc.step_of, step)
                    flat[var] = dec.pop(frequencies_to_probabilities(freq))
            # reveal this step's values to the next steps (the mask hides them until then)
            values.copy_(_plane_tensor(flat.reshape(shape), gray).to(device))
    except (ValueError, RuntimeError, OverflowError) as e:
        raise FormatError(f"corrupt .ardm file: bitstream does not decode ({e})") from None
    if not dec.finished_cleanly():
        raise FormatError("corrupt .ardm file: bitstream has data left over")
    return flat.reshape(shape)


def pixel_crc(pixels: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(pixels).tobytes())


def compress_picture(picture: Picture, steps: int | None = None, model: str | None = None, seed: int = 0,
                     device: str = "cpu", progress: bool = False, stats: Stats | None = None) -> bytes:
    steps = DEFAULT_STEPS if steps is None else int(steps)
    if steps < 1:
        raise InputError("steps must be at least 1")
    m = load(model)
    dev = resolve_device(device)
    stats = stats if stats is not None else Stats()
    px = picture.pixels
    c = px.shape[2]
    color = px[..., 0] if c <= 2 else px[..., :3]
    streams = [encode_plane(m, color, steps, seed, dev, stats, progress)]
    if c in (2, 4):
        streams.append(encode_plane(m, px[..., -1], steps, (seed + 1) % 2**64, dev, stats, progress))
    header = container.Header(m.name, m.hash8, picture.mode, px.shape[1], px.shape[0], steps, seed,
                              pixel_crc(px), tuple(picture.metadata))
    return container.pack(header, streams)


def decompress_picture(data: bytes, device: str = "cpu", progress: bool = False,
                       strip_pixels: int = STRIP_PIXELS, chunk: int = CHUNK) -> Picture:
    header, streams = container.unpack(data)
    c = CHANNELS[header.mode]
    if len(streams) != (2 if c in (2, 4) else 1):
        raise FormatError(f"corrupt .ardm file: {len(streams)} streams for mode {header.mode}")
    m = find_by_hash(header.model_name, header.model_hash)
    dev = resolve_device(device)
    h, w = header.height, header.width
    opts = dict(device=dev, progress=progress, strip_pixels=strip_pixels, chunk=chunk, version=header.version)
    color = decode_plane(m, streams[0], h, w, c <= 2, header.steps, header.seed, **opts)
    planes = [color[..., None] if c <= 2 else color]
    if c in (2, 4):
        if header.version < 2 and len(streams[1]) == 1:          # version 1: constant alpha as one byte
            planes.append(np.full((h, w, 1), streams[1][0], dtype=np.uint8))
        else:
            alpha_seed = (header.seed + 1) % 2**64
            planes.append(decode_plane(m, streams[1], h, w, True, header.steps, alpha_seed, **opts)[..., None])
    px = np.ascontiguousarray(np.concatenate(planes, axis=2))
    if pixel_crc(px) != header.pixel_crc:
        raise ChecksumError("decoded pixels do not match the stored checksum: the file is damaged")
    return Picture(px, header.mode, tuple(header.metadata))


def compress(array: np.ndarray, steps: int | None = None, *, model: str | None = None, seed: int = 0,
             device: str = "cpu", progress: bool = False) -> bytes:
    """Compress a uint8 image array, (H, W) or (H, W, C) with C in 1..4, to .ardm bytes."""
    return compress_picture(picture_from_array(array), steps, model, seed, device, progress)


def decompress(data: bytes, *, device: str = "cpu", progress: bool = False) -> np.ndarray:
    """Decompress .ardm bytes to a uint8 array of shape (H, W, C)."""
    return decompress_picture(data, device, progress).pixels

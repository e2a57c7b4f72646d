"""Compress and decompress pictures with an exact ARDM and ANS (paper §4).

A plane (RGB, or gray with its three slots tied) has D variables. Their coding order
comes from ``plane_ranks`` (the model's declared order, which may depend on the plane's
value constraint, and the seed) and the K-step partition from ``schedule``; step s codes
the variables whose rank falls in its range, all predicted from one network call on
the state after steps 0..s-1. The decoder walks the steps forward; the encoder, which
knows the whole image, pushes them in reverse because ANS is a stack.

Pyramid (format version 6, at 10 steps and more): in the interlaced order the coarse level
(pixels with even row and column) sees only itself, so it is coded as the picture it forms,
in that picture's own interlaced order and schedule, by network calls on the quarter-size
picture; then the rest at full size. The coarse level's steps cost a quarter of a call each
(at 16 steps, 7 of them: ~0.7x the network work per picture), and its pixels get evenly
spread context of their own: files 0.5-1.1% smaller on train photos at 10-24 steps (CIFAR-10:
+0.16% at 10 steps, -0.0 to -0.7% at 11-24); at 8 steps and fewer the pyramid lost bits
(train photos +0.2% at 8, +0.4% at 6; CIFAR-10 +1%), so those stay one level. Format
version 8 gives the coarse level more steps for the same work (``pyramid_split``: at 16
steps 15 quarter-size and 7 full-size calls instead of 7 and 9). Format version 10 codes
the coarse picture as a pyramid too, from about 48x48 pixels: its own coarse level (pixels
whose row and column are multiples of 4) by calls on the 1/16 picture (at 16 steps 11 of
those, 7 quarter-size and 7 full-size calls: ~10% less network work than version 8, and
photos 0.14-0.24% smaller).

Memory stays bounded for any image size: the trunk runs on horizontal strips with a halo
of ``config.halo`` rows (on CPU band by band inside a strip, each row once: cache-sized
tensors), and the head and the coder work on chunks of variables. Because
the integer network is exact, a strip computes exactly what the full image would, so
strip and chunk sizes are not part of the format: any decoder settings decode any file.
For the same reason planes of one size (which share the order and the schedule) go
through the network together, BATCH_SUBPIXELS at a time, and each still gets exactly the
stream it would get alone: ``compress_pictures`` / ``decompress_pictures``.

A 16-bit picture (format version 5) is coded as its high bytes, an 8-bit picture coded as
above, then one stream of its low bytes coded given the high bytes (``lowbyte.py``).

Alpha is a separate gray plane (seed + 1). Each plane's stream starts with a value
constraint (constraint.py): the values or palette colours the plane uses, so that the
coder never spends probability on values the image cannot have; a constant plane costs
its kind byte and its colour, and no network call.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from . import choose, constraint, container, jit, lowbyte
from .ardm import plane_order, plane_steps, pyramid_steps
from .coder import Decoder, Encoder, decision_bits, decision_bits_batch, decisions_batch, decode_binary_batch, push_decisions
from .dlm import bits_of, exact_frequencies
from .errors import ArdmzipError, ChecksumError, FormatError, InputError
from .imageio import Picture, picture_from_array
from .model import IntegerNet
from .progress import PictureBar, step_bar
from .schedule import schedule
from .weights import Model, find_by_hash, load

DEFAULT_STEPS = 16
# gzip-style levels for the CLI: -1 fastest .. -9 smallest, -6 the default budget. The
# steps follow the measured K sweep (README): size flattens beyond 32, time grows with the
# network's work, in full-size calls (PlaneCoder: a pyramid's calls on the quarter picture
# count a quarter, on the 1/16 picture a sixteenth), format 10 at 608x768: 3, 4, 5.44, 6.5,
# 7.56, 9.38, 14.75, 18.81, 39.56 (format 8: 3, 4, 6.0, 7.25, 8.5, 10.5, 16.25, 21.25, 44.25). No 8 steps: one level, 7 full-size calls,
# it took longer than 10 steps as a pyramid (6.0) and its files were 7% larger (a photo).
# -2 is 5 steps, not 6: at 1 MP, 6 steps in one level decompressed slower than 10 as a
# pyramid in every round (benchmarks/results/2026-12-01-rules/levels), 5 between them.
LEVEL_STEPS = {1: 4, 2: 5, 3: 10, 4: 12, 5: 14, 6: DEFAULT_STEPS, 7: 24, 8: 32, 9: 64}
STRIP_PIXELS = 1 << 19        # pixels per trunk call, halo included (the trunk runs band by band inside: cache)
MIN_STRIP_ROWS = 140          # four halos of the shipped model
CHUNK = 1 << 15               # variables per head / coder call
TRY_ALL_CONSTRAINTS = 1 << 16  # planes up to this many subpixels try every value constraint
BATCH_SUBPIXELS = 1 << 17     # same-shape planes coded together in one network call, at most (CPU)
GPU_BATCH_FACTOR = 32         # a GPU call takes 32x as many (4M subpixels: 1,365 CIFAR images)
CHANNELS = {"L": 1, "1": 1, "LA": 2, "RGB": 3, "P": 3, "RGBA": 4, "PA": 4,
            "L16": 1, "LA16": 2, "RGB16": 3, "RGBA16": 4}


@dataclass
class Stats:
    """What coding a picture cost: ANS stream bits, the ideal bits of the same probabilities,
    and the bits of the planes' value constraints (side information)."""
    file_bits: int = 0
    ideal_bits: float = 0.0
    side_bits: int = 0
    subpixels: int = 0
    measure_ideal: bool = True     # the ideal bits cost a pass over every frequency row

    def add(self, other: "Stats") -> None:
        """Count another plane's bits in (its subpixels are counted where planes are routed)."""
        self.file_bits += other.file_bits
        self.ideal_bits += other.ideal_bits
        self.side_bits += other.side_bits


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r} (use cpu, cuda or auto)")
    return torch.device(device)


PYRAMID_VERSION = 6       # files from this version on code interlaced planes as a pyramid (PlaneCoder)
PYRAMID_MIN_STEPS = 10    # ... when they have this many steps: below, the pyramid cost bits on train photos
COARSE_STEPS_VERSION = container.COARSE_STEPS_VERSION   # ... and from this one on, with more coarse steps
THREE_LEVEL_VERSION = container.THREE_LEVEL_VERSION     # ... and from this one on, the coarse picture a pyramid too
THREE_LEVEL_MIN_SIDE = 12   # ... where the 1/16 picture is at least this on both sides (pictures from ~48x48)


def uses_pyramid(steps: int, h: int, w: int) -> bool:
    """Whether a picture of this size coded in ``steps`` steps codes its interlaced planes as
    a pyramid (format version 6; ``pyramid_split``)."""
    return steps >= PYRAMID_MIN_STEPS and h >= 2 and w >= 2


def pyramid_rule(version: int) -> int:
    """The format version whose pyramid split planes of version ``version`` use: 0 (none)
    below 6, else the version itself (``pyramid_split`` compares it with 8 and 10; the
    encoder and decoder both ask here; an adapted file's planes have their own version,
    ``container.ADAPTED_VERSIONS``)."""
    return version if version >= PYRAMID_VERSION else 0


def pyramid_split(h: int, w: int, channels: int, steps: int, curve: np.ndarray,
                  version: int = container.FORMAT_VERSION) -> tuple[np.ndarray, ...] | None:
    """A pyramid's schedules, coarsest level first: each level's step boundaries over its
    range of the plane's variables (the first from 0, the last to the plane's D), or None
    where the plane is not coded as a pyramid. Level i of n is coded at stride 2^(n-1-i).

    Format version 6: two levels; the coarse level gets as many steps as the plane's
    one-level schedule starts within it, so the pyramid spends its steps where the one-level
    DP would. From version 8 (COARSE_STEPS_VERSION) on, m = max(1, fine // 4) of the fine
    level's steps become 4 m coarse steps: a coarse step is a call on a quarter of the
    pixels, so the network's work stays the same, and the coarse pixels, which cost the most
    bits each, get more steps (train photos: -0.2% at 10 steps, -0.6% at 16, -0.3% at 32;
    CIFAR-10 -0.2 / -0.5 / -0.2%; ``coarse_steps_moved``). From version 10
    (THREE_LEVEL_VERSION) on, where the 1/16 picture is at least THREE_LEVEL_MIN_SIDE on both
    sides, the coarse picture's own coarse level is a third level at stride 4 (on train
    crops at 16 steps: 32x32 +0.20%, CIFAR-10 train pictures +0.26%, 36x36 +0.14%, 40x40
    -0.01%, 44x44 +0.03%, 48x48 -0.10%, 64 to 128 -0.07 to -0.11%, 256x256 -0.14%: the
    smallest pictures are mostly border). It gets as many of the coarse steps as the coarse
    picture's one-level schedule starts within it, plus four for one step of the middle
    level where that leaves the middle level one (its calls see the 1/16 picture whole, not
    as the sparse pixels of the quarter picture, and cost a quarter as much: 16 train crops
    -0.18 / -0.14 / -0.14% at 10 / 16 / 32 steps, ~10% less network work). Each level's
    steps are then the DP over its own range of the model's curve. Every count here is an
    integer function of (h, w, steps, curve, version), the same on every machine."""
    if not uses_pyramid(steps, h, w):
        return None
    d, dc = h * w * channels, ((h + 1) // 2) * ((w + 1) // 2) * channels
    one_level, _ = schedule(d, steps, curve)
    coarse_steps = int(np.clip(np.count_nonzero(one_level[:-1] < dc), 1, steps - 1))
    fine_steps = steps - coarse_steps
    if version >= COARSE_STEPS_VERSION:
        moved = coarse_steps_moved(fine_steps)
        coarse_steps, fine_steps = coarse_steps + 4 * moved, fine_steps - moved
    fine, _ = schedule(d, fine_steps, curve, start=dc)
    hc, wc = (h + 1) // 2, (w + 1) // 2
    if version < THREE_LEVEL_VERSION or min((hc + 1) // 2, (wc + 1) // 2) < THREE_LEVEL_MIN_SIDE:
        coarse, _ = schedule(dc, coarse_steps, curve)
        return coarse, fine
    dcc = ((hc + 1) // 2) * ((wc + 1) // 2) * channels      # (coarse_steps is at least 5 here)
    one_level, _ = schedule(dc, coarse_steps, curve)
    smallest = int(np.clip(np.count_nonzero(one_level[:-1] < dcc), 1, coarse_steps - 1))
    middle = coarse_steps - smallest
    moved = min(1, middle - 1)
    smallest, middle = smallest + 4 * moved, middle - moved
    return schedule(dcc, smallest, curve)[0], schedule(dc, middle, curve, start=dcc)[0], fine


def coarse_steps_moved(fine_steps: int) -> int:
    """How many of a pyramid's fine steps format version 8 trades for four coarse steps each:
    a quarter of them, at least one, and never the fine level's last. Measured at the same
    network work on 16 train pictures (12 imagenet_samples, 4 wikipedia_photos 512x384 crops),
    bpsp at 16 steps (7 coarse + 9 fine): 4.2641; 1 moved 4.2429, 2 moved 4.2382, 3 moved
    4.2510; at 10 steps (5 + 5): 4.3569, 1 moved 4.3486, 2 moved 4.3933; at 32 (14 + 18):
    4.1783, 2 moved 4.1668, 4 moved 4.1662."""
    return min(max(1, fine_steps // 4), fine_steps - 1)


@dataclass
class Stage:
    """The picture one step's network call sees: the plane itself (stride 1) or, in a
    pyramid's coarser steps, its pixels whose row and column are multiples of the stride (2;
    4 for the coarsest of three levels: an h x w picture of its own), cut into strips for
    the trunk."""
    stride: int
    h: int
    w: int
    strips: list[tuple[int, int]]
    empty_trunk: tuple[torch.Tensor, torch.Tensor] | None = None    # head_outputs(empty=True)


class PlaneCoder:
    """The schedule, order and network calls for one plane; shared by encoder and decoder.

    ``pyramid`` (format version 6 on, interlaced planes of at least PYRAMID_MIN_STEPS steps):
    the coarse level (pixels with even row and column) is coded as the picture it forms, in
    its own interlaced order and schedule, by calls on that quarter-size picture (from
    version 10 on that picture's own coarse level first, by calls on the 1/16 picture it
    forms); then the rest at full size (module docstring). Its value: the format version
    whose split of the steps between the levels applies (``pyramid_split``; True: the
    newest); 0 or False: none."""

    def __init__(self, net: IntegerNet, curve: np.ndarray, h: int, w: int, gray: bool, steps: int, seed: int,
                 strip_pixels: int = STRIP_PIXELS, chunk: int = CHUNK, *, order: str | None = None,
                 pyramid: int | bool = 0):
        self.net, self.h, self.w, self.gray = net, h, w, gray
        self.channels = 1 if gray else 3
        self.per_row = w * self.channels
        d = h * self.per_row
        # the plane's order (``plane_order``); by default the model's order for a non-palette plane
        order = order or plane_order(net.config.order, palette=False)
        rule = container.FORMAT_VERSION if pyramid is True else int(pyramid)
        interlaced = order in ("interlace2", "interlace2g")
        split = pyramid_split(h, w, self.channels, steps, curve, rule) if rule and interlaced else None
        # each variable's step (bounds run from 0 to d): which rank range of the order it falls
        # in, from partitions of the order's keys at the bounds (the ranks themselves need sorts)
        if split is None:
            bounds, _ = schedule(d, steps, curve)
            step_of = plane_steps(order, h, w, self.channels, seed, bounds)
            strides = [1] * (len(bounds) - 1)
        else:       # levels coarsest first; the ranks are pyramid_ranks' whatever the count of levels
            bounds = np.concatenate([split[0], *(level[1:] for level in split[1:])])
            step_of = pyramid_steps(h, w, self.channels, seed, bounds, green_first=order == "interlace2g")
            strides = [2 ** (len(split) - 1 - i) for i, level in enumerate(split) for _ in range(len(level) - 1)]
        self.step_of = step_of
        # variables grouped by step, ascending index: a stable sort of 16-bit keys is numpy's radix sort
        narrow = step_of.astype(np.int16) if len(bounds) <= 1 << 15 else step_of
        self.by_step = np.argsort(narrow, kind="stable")
        self.starts = np.concatenate([[0], np.cumsum(np.bincount(step_of, minlength=len(bounds) - 1))])
        self.steps = len(bounds) - 1
        self.strides = strides
        self.stages = {s: self._stage(s, strip_pixels) for s in sorted(set(strides))}
        self.chunk = chunk

    def _stage(self, stride: int, strip_pixels: int) -> Stage:
        """The picture of every ``stride``-th row and column, and its strips."""
        h, w = -(-self.h // stride), -(-self.w // stride)
        halo = self.net.config.halo
        # at least MIN_STRIP_ROWS useful rows, so that wide images do not spend most work on halos
        rows = max(MIN_STRIP_ROWS, strip_pixels // max(1, w) - 2 * halo)
        # even, so that every strip starts at an even row, and so does its halo (even where the
        # network has 2x2 cells, config.grid): the cells of every strip are the picture's
        rows += rows % 2
        return Stage(stride, h, w, [(r, min(h, r + rows)) for r in range(0, h, rows)])

    @property
    def strips(self) -> list[tuple[int, int]]:
        """The full-size picture's strips (a pyramid's fine level has at least one step)."""
        return self.stages[1].strips

    def mask(self, step: int) -> torch.Tensor:
        """(1, 3, H, W) uint8: variables revealed before ``step``."""
        m = torch.from_numpy((self.step_of < step).view(np.uint8))
        if self.gray:
            return m.view(1, 1, self.h, self.w).expand(1, 3, -1, -1)
        return m.view(1, self.h, self.w, 3).permute(0, 3, 1, 2)

    def step_size(self, step: int) -> int:
        """How many variables ``step`` codes."""
        return int(self.starts[step + 1] - self.starts[step])

    def work(self, step: int):
        """Yield (strip, variables of this step in the strip, the same variables' indices in the
        step's stage picture), strips top to bottom."""
        idx = self.by_step[self.starts[step]:self.starts[step + 1]]
        stage = self.stages[self.strides[step]]
        local = idx
        if stage.stride > 1:      # (row, col, channel) -> (row / s, col / s, channel): still ascending
            row, rest = np.divmod(idx, self.per_row)
            col, ch = np.divmod(rest, self.channels)
            local = ((row // stage.stride) * stage.w + col // stage.stride) * self.channels + ch
        cuts = np.searchsorted(local // (stage.w * self.channels), [r for _, r in stage.strips], side="left")
        lo = 0
        for strip, hi in zip(stage.strips, cuts):
            if hi > lo:
                yield strip, idx[lo:hi], local[lo:hi]
            lo = hi

    def chunks(self, variables: np.ndarray) -> list[np.ndarray]:
        return [variables[i:i + self.chunk] for i in range(0, len(variables), self.chunk)]

    def head_outputs(self, values: torch.Tensor, mask: torch.Tensor, strip: tuple[int, int],
                     chunks: list[np.ndarray], empty: bool = False, stage: Stage | None = None):
        """Yield the integer head outputs (B, n, 3, M) and anchors (B, n) of each chunk of
        variables, in the given order.

        values: (B, 3, H, W), a batch of planes of this shape (they share the order, so
        they share the mask); ``stage``: the picture they are (default the plane itself) and
        the one ``strip`` and the chunks' indices refer to. All variables of a step share one mask, so their outputs do
        not depend on the order they are computed in: the encoder walks the chunks
        backwards, the decoder forwards, and both hold one chunk's outputs at a time.
        The integer network is exact per pixel, so batching changes no output.

        ``empty``: the mask reveals nothing (the first step). Then every feature is the
        same at every pixel (no counts, anchor 128), so the trunk's output depends only on
        how far a pixel is from the border, and only within ``halo`` pixels of it: one
        trunk call on a (2 halo + 1)^2 canvas, read back through clamped coordinates,
        gives exactly the full picture's outputs (tests compare both). A network on
        ``grid`` x ``grid`` cells (s2d) also sees a pixel's place in its cell: its canvas
        sides have the picture's parity and interior pixels map to canvas pixels of the same
        parity."""
        r0, r1 = strip
        stage = stage or self.stages[1]
        h, w = stage.h, stage.w
        halo, grid = self.net.config.halo, self.net.config.grid
        b = values.shape[0]
        # 2 halo + 1 for grid 1; halo is a multiple of grid, so canvas positions keep theirs
        side_h, side_w = 2 * halo + grid + h % grid, 2 * halo + grid + w % grid
        dev = values.device
        if empty and h >= side_h and w >= side_w:
            if stage.empty_trunk is None:
                zeros = torch.zeros(1, 3, side_h, side_w, dtype=torch.long, device=dev)
                stage.empty_trunk = self.net.trunk(zeros, zeros)
            x, anchor = (t.expand(b, -1, -1, -1) for t in stage.empty_trunk)
            canvas = True
        else:
            top, bottom = max(0, r0 - halo), min(h, r1 + halo)
            # with nothing revealed the values are not seen: one plane's outputs serve the batch
            n_run = 1 if empty else b
            strip_values, strip_mask = values[:n_run, :, top:bottom], mask[:, :, top:bottom].expand(n_run, -1, -1, -1)
            if dev.type == "cpu":       # bands that stay in cache, each row once (same values as trunk)
                x, anchor = self.net.trunk_banded(strip_values, strip_mask)
            else:                       # a GPU wants few large calls
                x, anchor = self.net.trunk(strip_values, strip_mask)
            if n_run < b:
                x, anchor = x.expand(b, -1, -1, -1), anchor.expand(b, -1, -1, -1)
            canvas = False
        dev = x.device
        for chunk in chunks:
            n = len(chunk)
            v = torch.from_numpy(chunk).to(dev)
            if self.gray:
                row, col, ch = v // w, v % w, torch.zeros_like(v)
            else:
                row, col, ch = v // (3 * w), (v // 3) % w, v % 3
            if canvas:      # border distance, capped at the halo, on the canvas's own border
                row = _canvas_position(row, h, side_h, halo, grid)
                col = _canvas_position(col, w, side_w, halo, grid)
            else:
                row = row - top
            if x.stride(1) == 1:    # channels last (CPU): each pixel's C values one gathered row
                xh, xw = x.shape[2:]
                pixels = x.permute(0, 2, 3, 1).reshape(b, xh * xw, -1)         # a view
                feats = pixels.index_select(1, row * xw + col).reshape(b * n, -1)   # 10x faster
            else:
                feats = x[:, :, row, col].permute(0, 2, 1).reshape(b * n, -1)    # (B n, C)
            params = self.net.head(feats.contiguous()).view(b, n, 3, 3, -1)       # (B, n, 3, 3, M)
            params = params[:, torch.arange(n, device=dev), ch]                  # (B, n, 3, M)
            yield params, anchor[:, ch, row, col]

    def step_outputs(self, values: torch.Tensor, mask: torch.Tensor, step: int, reverse: bool = False):
        """Yield (variables, head outputs (B, n, 3, M), anchors (B, n)) of ``step`` by coding
        groups (``_regroup``), first to last, or last to first with ``reverse`` (the encoder:
        ANS is a stack, so it pushes in the reverse of the decoder's order)."""
        stage = self.stages[self.strides[step]]
        if stage.stride > 1:        # the coarse picture (nothing else is revealed yet)
            values = values[:, :, ::stage.stride, ::stage.stride].contiguous()
            mask = mask[:, :, ::stage.stride, ::stage.stride].contiguous()

        def chunk_outputs():
            work = list(self.work(step))
            for strip, variables, local in (reversed(work) if reverse else work):
                chunks, locals_ = self.chunks(variables), self.chunks(local)
                if reverse:
                    chunks, locals_ = chunks[::-1], locals_[::-1]
                for var, (params, anchor) in zip(chunks, self.head_outputs(values, mask, strip, locals_,
                                                                            empty=step == 0, stage=stage)):
                    yield var, params, anchor
        yield from _regroup(chunk_outputs(), self.step_size(step), reverse)


def _canvas_position(pos: torch.Tensor, size: int, side: int, halo: int, grid: int) -> torch.Tensor:
    """Where positions ``pos`` of a picture side of ``size`` read the empty-step canvas of
    ``side`` (head_outputs): within ``halo`` of an edge, the same distance from the canvas's
    edge; elsewhere the canvas's interior, at the same position modulo ``grid``."""
    from_end = size - 1 - pos
    return torch.where(pos < halo, pos, torch.where(from_end < halo, side - 1 - from_end, halo + pos % grid))


def _plane_tensor(plane: np.ndarray, gray: bool) -> torch.Tensor:
    """(H, W) gray or (H, W, 3) RGB uint8 -> (1, 3, H, W) uint8 (the features widen each strip
    to int32 when they need it: a whole picture in int64 took 24 bytes a gray pixel)."""
    t = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.uint8))
    if gray:
        return t.view(1, 1, *t.shape).expand(1, 3, -1, -1).contiguous()
    return t.permute(2, 0, 1).unsqueeze(0).contiguous()


CODING_GROUP = 1 << 15   # variables of a step coded together (binary decisions go level-major within one)


def _regroup(items, total: int, reverse: bool):
    """Re-cut a step's (variables, outputs (B, n, 3, M), anchors (B, n)) into its coding groups:
    runs of CODING_GROUP consecutive variables from the step's first, the last one shorter.

    Binary decisions are pushed level by level within a group, so group boundaries are part
    of the format (unlike strips and chunks, which are decoder settings). ``reverse``: items
    come last to first (the encoder) and groups go out last to first too."""
    sizes = [CODING_GROUP] * (total // CODING_GROUP) + ([total % CODING_GROUP] if total % CODING_GROUP else [])
    if reverse:
        sizes.reverse()
    held: list[tuple] = []
    count = 0
    for item in items:
        held = [item] + held if reverse else held + [item]
        count += len(item[0])
        while sizes and count >= sizes[0]:
            var, params, anchor = (np.concatenate([h[0] for h in held]), torch.cat([h[1] for h in held], 1),
                                   torch.cat([h[2] for h in held], 1))
            size = sizes.pop(0)
            cut = len(var) - size if reverse else size
            out, rest = ((slice(cut, None), slice(None, cut)) if reverse else (slice(None, cut), slice(cut, None)))
            yield var[out], params[:, out], anchor[:, out]
            held = [(var[rest], params[:, rest], anchor[:, rest])] if len(var) > size else []
            count -= size


def _chunk_outputs(pc: PlaneCoder, values: torch.Tensor, device: torch.device, progress: bool):
    """Yield (step, variables, head outputs (B, n, 3, M), anchors (B, n)) by coding groups, in
    the encoder's push order: the reverse of decoding."""
    for step in step_bar(range(pc.steps - 1, -1, -1), progress, "compress"):
        for var, params, anchor in pc.step_outputs(values, pc.mask(step).to(device), step, reverse=True):
            yield step, var, params, anchor


BINARY_VERSION = 4       # files from this version on code PLAIN and VALUES planes as binary decisions
BINARY_KINDS = (constraint.PLAIN, constraint.VALUES)


def codes_binary(rule: constraint.Constraint, version: int) -> bool:
    """Whether a plane with this (resolved) constraint is coded as 8 binary decisions per
    subpixel (coder.encode_binary: 8 cdf points instead of a 256-wide row; format version 4),
    or with 256-way rows (older files; palettes, chroma blocks and colour copies, whose masks
    and mixtures need every value's frequency)."""
    return version >= BINARY_VERSION and rule.kind in BINARY_KINDS


def _value_sets(rule: constraint.Constraint, var: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The allowed-value table and each variable's row of it, for the binary coder."""
    if rule.kind != constraint.VALUES:
        return None, None
    return rule.data, var % rule.channels


def _frequencies(params: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """(B, n, 3, M), (B, n) -> integer frequencies (B, n, 256)."""
    b, n = anchor.shape
    return exact_frequencies(params.reshape(b * n, 3, -1), anchor.reshape(-1)).view(b, n, -1)


def _chunk_bits(rule: constraint.Constraint, binary: bool, params: torch.Tensor, anchor: torch.Tensor,
                freq: Callable[[], torch.Tensor], var: np.ndarray, flat: np.ndarray, step_of: np.ndarray,
                step: int, w: int) -> float:
    """Ideal bits of one plane's chunk under ``rule`` (``freq()``: its raw frequencies, made on demand)."""
    sym = flat[var]
    if binary:
        return decision_bits(*_binary_runs([rule], [0], var, [flat], params[None], anchor[None])[0])
    return bits_of(rule.restrict(freq(), var, flat, step_of, step, w).cpu(), torch.from_numpy(sym.astype(np.int64)))


def _stacked_sets(rules: list[constraint.Constraint], var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Several VALUES planes' allowed-value tables as one (C, 256) table, and each plane's
    rows of it for ``var`` (B, n): the form coder.decisions_batch / decode_binary_batch take."""
    tables, channels, offset = [], [], 0
    for rule in rules:
        table, ch = _value_sets(rule, var)
        tables.append(table)
        channels.append(ch + offset)
        offset += len(table)
    return np.concatenate(tables), np.stack(channels)


def _binary_runs(rules: list[constraint.Constraint], rows: list[int], var: np.ndarray, flats: list[np.ndarray],
                 params: torch.Tensor, anchor: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """The binary decisions (coder.decisions_batch) of one chunk of several planes of a batch
    at once: run j codes plane ``rows[j]``'s values ``flats[j][var]`` under ``rules[j]``
    (PLAIN or VALUES). Plain runs share one pass, value-set runs another (their tables
    stacked); each run's decisions are those it gets alone, so the streams do not change.
    For many small planes (CIFAR) this is one call a chunk instead of one per plane."""
    out: list = [None] * len(rules)
    for with_sets in (False, True):
        js = [j for j, r in enumerate(rules) if (r.kind == constraint.VALUES) == with_sets]
        if not js:
            continue
        sel = torch.as_tensor([rows[j] for j in js], device=params.device)
        symbols = np.stack([flats[j][var] for j in js])
        allowed, channel = _stacked_sets([rules[j] for j in js], var) if with_sets else (None, None)
        for j, run in zip(js, decisions_batch(params.index_select(0, sel), anchor.index_select(0, sel), symbols,
                                              allowed, channel)):
            out[j] = run
    return out


def batch_subpixels(device: str | torch.device) -> int:
    """Subpixels per network call for same-size planes. A CPU is as fast on 42 CIFAR images
    at a time as on more; a GPU needs far larger calls to be more than launch overhead.
    Batches are not part of the format (each plane's stream is the one it gets alone)."""
    kind = str(device).split(":")[0]         # (an unknown name is resolve_device's to refuse)
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    return BATCH_SUBPIXELS * (GPU_BATCH_FACTOR if kind == "cuda" else 1)


def _batches(members: list, subpixels: int, device: torch.device) -> list[list]:
    """Same-shape planes of ``subpixels`` each, batch_subpixels(device) at a time (at least one)."""
    per = max(1, batch_subpixels(device) // subpixels)
    return [members[k:k + per] for k in range(0, len(members), per)]


def _route(plane: np.ndarray) -> tuple[bytes, np.ndarray | None, list[constraint.Constraint]]:
    """(stream prefix, the plane the network must code or None, its constraint candidates).

    A constant plane is all prefix; a gray plane stored as RGB is coded as its gray plane."""
    cands = constraint.candidates(plane)
    if cands[0].kind == constraint.CONSTANT:
        return cands[0].to_bytes(), None, []
    if cands[0].kind == constraint.GRAY:
        gray = plane[..., 0]
        return cands[0].to_bytes(), gray, constraint.candidates(gray)
    return b"", plane, cands


def encode_planes(model: Model, planes: list[np.ndarray], steps: int, seed: int, device: torch.device,
                  stats: Stats, progress: bool = False, version: int = container.FORMAT_VERSION) -> list[bytes]:
    """The streams of several planes (any shapes): each its value constraint, then its ANS words.

    Planes of one shape (and order) share the order and the schedule, so they go through
    the network together, BATCH_SUBPIXELS at a time; each still gets its own stream,
    identical to the one it gets alone. Where the model's order depends on the constraint
    (``plane_order``), a small plane is coded in each order its candidates imply and keeps
    its shortest stream. ``version``: the newest format the streams may use (below
    BINARY_VERSION every plane gets 256-way rows, as older ardmzip wrote them)."""
    out: list[bytes] = [b""] * len(planes)
    tried: list[list[tuple[bytes, Stats]]] = [[] for _ in planes]
    groups: dict[tuple, list[tuple[int, np.ndarray, list]]] = {}
    prefix_bytes = [0] * len(planes)
    for i, plane in enumerate(planes):
        prefix, coded, cands = _route(plane)
        stats.subpixels += plane.size
        stats.side_bits += 8 * len(prefix)
        out[i], prefix_bytes[i] = prefix, len(prefix)
        if coded is not None:
            for order, subset in _by_order(model, coded, cands):
                groups.setdefault((coded.shape, order), []).append((i, coded, subset))
    for (_, order), members in groups.items():
        for batch in _batches(members, members[0][1].size, device):
            results = _encode_batch(model, [p for _, p, _ in batch], [c for _, _, c in batch], steps, seed,
                                    device, stats.measure_ideal, progress, order, version)
            for (i, _, _), result in zip(batch, results):
                tried[i].append(result)
    for i, results in enumerate(tried):
        cost = None
        if results:
            stream, cost = min(results, key=lambda r: len(r[0]))
            out[i] += stream
        stored = bytes([constraint.STORED]) + np.ascontiguousarray(planes[i]).tobytes()
        if version >= BINARY_VERSION and len(stored) < len(out[i]):      # coding would only add bytes
            stats.side_bits += 8 - 8 * prefix_bytes[i]                     # its kind byte replaces the prefix
            stats.file_bits += 8 * (len(stored) - 1)
            stats.ideal_bits += 8 * (len(stored) - 1)
            out[i] = stored
        elif cost is not None:
            stats.add(cost)
    return out


def _by_order(model: Model, plane: np.ndarray, cands: list[constraint.Constraint]
              ) -> list[tuple[str, list[constraint.Constraint]]]:
    """The plane's candidate constraints split by the order they imply: (order, candidates).
    Large planes choose their constraint by rule first, so they are coded once."""
    if plane.size > TRY_ALL_CONSTRAINTS:
        cands = [constraint.by_rule(cands, plane.shape[0] * plane.shape[1])]
    declared = model.net.config.order
    plain_order, palette_order = plane_order(declared, False), plane_order(declared, True)
    if plain_order == palette_order:
        return [(plain_order, cands)]
    # A palette whose side information alone exceeds 4 bits per pixel would have to save more
    # than that to win; skipping it spares small pictures (CIFAR-size) a second network pass.
    pixels = plane.shape[0] * plane.shape[1]
    palettes = [c for c in cands if c.palette and 8 * len(c.to_bytes()) <= 4 * pixels]
    split = [(plain_order, [c for c in cands if not c.palette]), (palette_order, palettes)]
    return [(order, subset) for order, subset in split if subset]


def _encode_batch(model: Model, planes: list[np.ndarray], cands: list[list[constraint.Constraint]], steps: int,
                  seed: int, device: torch.device, measure_ideal: bool, progress: bool, order: str | None = None,
                  version: int = container.FORMAT_VERSION) -> list[tuple[bytes, Stats]]:
    """Each plane's stream (constraint head + ANS words) and what it cost."""
    h, w = planes[0].shape[:2]
    gray = planes[0].ndim == 2
    pc = PlaneCoder(model.net_on(device), model.curve, h, w, gray, steps, seed, order=order,
                    pyramid=pyramid_rule(version))
    if device.type == "cpu":                            # enough work: the compiled CPU kernels
        jit.expect(len(planes) * h * w * pc.steps)
    values = torch.cat([_plane_tensor(p, gray) for p in planes]).to(device)
    flats = [p.reshape(-1) for p in planes]
    costs_of = [Stats() for _ in planes]
    work = _chunk_outputs(pc, values, device, progress)
    measured = None                     # per chunk, each binary candidate's decisions (small planes)
    if flats[0].size > TRY_ALL_CONSTRAINTS or all(len(c) == 1 for c in cands):
        choices = [constraint.by_rule(c, h * w) for c in cands]
        measure = measure_ideal
    else:
        # Small planes: side information matters, so measure every candidate on the same
        # network outputs (cached: BATCH_SUBPIXELS x 48 bytes at most) and keep the cheapest
        # stream. The binary candidates' decisions are kept too (~12 bytes a decision, at most
        # 8 x BATCH_SUBPIXELS a candidate): the chosen one's are pushed as measured.
        work = list(work)
        costs = [[8 * len(c.to_bytes()) for c in cs] for cs in cands]
        runs = [(b, i, c) for b, cs in enumerate(cands) for i, c in enumerate(cs) if codes_binary(c, version)]
        measured = []
        for step, var, params, anchor in work:
            freq = _lazy(lambda: _frequencies(params, anchor))
            measured.append({})
            if runs:                    # every plane's binary candidates in one pass
                decided = _binary_runs([c for _, _, c in runs], [b for b, _, _ in runs], var,
                                       [flats[b] for b, _, _ in runs], params, anchor)
                for (b, i, _), run, bits in zip(runs, decided, decision_bits_batch(decided)):
                    costs[b][i] += bits
                    measured[-1][b, i] = run
            for b, (flat, cs) in enumerate(zip(flats, cands)):
                for i, c in enumerate(cs):
                    if not codes_binary(c, version):
                        costs[b][i] += _chunk_bits(c, False, params[b], anchor[b], lambda: freq()[b], var, flat,
                                                   pc.step_of, step, w)
        best = [int(np.argmin(cost)) for cost in costs]
        choices = [cs[i] for cs, i in zip(cands, best)]
        measured = [{b: run for (b, i), run in chunk.items() if i == best[b]} for chunk in measured]
        for st, cost, i, c in zip(costs_of, costs, best, choices):
            st.ideal_bits += cost[i] - 8 * len(c.to_bytes())
        measure = False                                       # the costs above already hold them
    binary = [codes_binary(c, version) for c in choices]
    encoders = [Encoder() for _ in planes]
    coded_binary = [b for b in range(len(planes)) if binary[b]]
    for k, (step, var, params, anchor) in enumerate(work):
        freq = _lazy(lambda: _frequencies(params, anchor))
        if measured is not None:
            decided = measured[k]
        else:
            decided = dict(zip(coded_binary, _binary_runs([choices[b] for b in coded_binary], coded_binary, var,
                                                          [flats[b] for b in coded_binary], params, anchor)))
        for b, (flat, choice, enc) in enumerate(zip(flats, choices, encoders)):
            sym = flat[var].astype(np.int32)
            if binary[b]:
                if measure:
                    costs_of[b].ideal_bits += decision_bits(*decided[b])
                push_decisions(enc, *decided[b])
            else:
                if measure:
                    costs_of[b].ideal_bits += _chunk_bits(choice, False, params[b], anchor[b], lambda: freq()[b],
                                                          var, flat, pc.step_of, step, w)
                enc.push(sym, choice.probabilities(freq()[b], var, flat, pc.step_of, step, w))
    results = []
    for choice, enc, st in zip(choices, encoders, costs_of):
        head, data = choice.to_bytes(), enc.finish()
        st.side_bits += 8 * len(head)
        st.file_bits += 8 * len(data)
        results.append((head + data, st))
    return results


def _lazy(make):
    """A function that computes ``make()`` on its first call and returns the same value after."""
    cache = []

    def get():
        if not cache:
            cache.append(make())
        return cache[0]
    return get


@dataclass
class PlaneJob:
    """One plane to decode; ``pixels`` or ``error`` is set by ``decode_planes``."""
    stream: bytes
    h: int
    w: int
    gray: bool
    steps: int
    seed: int
    version: int = container.FORMAT_VERSION
    pixels: np.ndarray | None = None
    error: Exception | None = None


def decode_planes(model: Model, jobs: list[PlaneJob], device: torch.device, progress: bool = False,
                  strip_pixels: int = STRIP_PIXELS, chunk: int = CHUNK) -> None:
    """Decode planes, batching those of one shape, steps and seed into one network call.

    A damaged stream fails only its own job (``job.error``); the others decode on."""
    groups: dict[tuple, list[tuple[PlaneJob, constraint.Constraint, bytes]]] = {}
    for job in jobs:
        channels, as_gray = (1 if job.gray else 3), job.gray
        try:
            if job.version >= 2:
                rule, data = constraint.Constraint.parse(job.stream, channels)
            else:
                rule, data = constraint.Constraint(constraint.PLAIN, channels), job.stream
            shape = (job.h, job.w) if job.gray else (job.h, job.w, 3)
            if rule.kind == constraint.STORED:
                if job.version < BINARY_VERSION:
                    raise FormatError(f"corrupt .ardm file: stored plane in a format version {job.version} file")
                if len(data) != int(np.prod(shape)):
                    raise FormatError("corrupt .ardm file: stored plane of the wrong size")
                job.pixels = np.frombuffer(data, np.uint8).reshape(shape).copy()
                continue
            if rule.kind == constraint.CONSTANT:
                if data:
                    raise FormatError("corrupt .ardm file: data after a constant plane")
                value = rule.data.reshape(-1) if not job.gray else rule.data[0]
                job.pixels = np.broadcast_to(value, shape).copy()
                continue
            if rule.kind == constraint.GRAY:                 # the rest is a gray plane's stream
                as_gray = True
                rule, data = constraint.Constraint.parse(data, 1)
                if rule.kind not in (constraint.PLAIN, constraint.VALUES):
                    raise FormatError("corrupt .ardm file: bad gray plane inside an RGB plane")
            if rule.kind in constraint.WRAPPERS and job.version < 3:
                raise FormatError(f"corrupt .ardm file: {constraint.KIND_NAMES[rule.kind]} in a format version "
                                  f"{job.version} file")
        except FormatError as e:
            job.error = e
            continue
        order = plane_order(model.net.config.order, rule.palette)   # may follow the constraint
        pyramid = pyramid_rule(job.version)
        groups.setdefault((job.h, job.w, as_gray, job.steps, job.seed, order, pyramid), []).append((job, rule, data))
    for (h, w, gray, steps, seed, order, pyramid), members in groups.items():
        for batch in _batches(members, h * w * (1 if gray else 3), device):
            _decode_batch(model, batch, h, w, gray, steps, seed, device, progress, strip_pixels, chunk, order,
                          pyramid)


def stream_bit_budget(stream_bytes: int) -> float:
    """The most information (in the decoder's float64 estimate, ``symbol_bits``) that a stream
    of this many bytes can yield before it must be exhausted. A stream of W words codes at most
    32 W + 64 bits (the ANS state); the float estimate can exceed the quantized cost constriction
    really paid by at most 31/24 (a 2^-31 probability costs 24 bits after its 24-bit quantization),
    so 1.5x plus slack never refuses a good stream."""
    return 1.5 * (8 * stream_bytes + 64) + 256


def symbol_bits(probs: np.ndarray, symbols: np.ndarray) -> float:
    """Estimated information of decoded symbols: sum of -log2 p(symbol) of their rows."""
    if not len(symbols):
        return 0.0
    return float(-np.log2(probs[np.arange(len(symbols)), symbols]).sum())


def _decode_binary_runs(members: list, decoders: list[Decoder | None], var: np.ndarray, params: torch.Tensor,
                        anchor: torch.Tensor) -> dict[int, tuple[np.ndarray | Exception, float]]:
    """Pop one chunk of every live binary-coded plane of a batch (coder.decode_binary_batch:
    plain planes in one pass, value-set planes in another): {plane: (its symbols or the
    error its stream raised, the information read)}. Each stream pops what it would alone."""
    out: dict[int, tuple[np.ndarray | Exception, float]] = {}
    for with_sets in (False, True):
        rows = [b for b, ((job, rule, _), dec) in enumerate(zip(members, decoders))
                if dec is not None and codes_binary(rule, job.version) and (rule.kind == constraint.VALUES) == with_sets]
        if not rows:
            continue
        allowed, channel = _stacked_sets([members[b][1] for b in rows], var) if with_sets else (None, None)
        sel = torch.as_tensor(rows, device=params.device)
        infos = [[0.0] for _ in rows]
        results = decode_binary_batch([decoders[b] for b in rows], params.index_select(0, sel),
                                      anchor.index_select(0, sel), allowed, channel, infos)
        out.update((b, (r, info[0])) for b, r, info in zip(rows, results, infos))
    return out


def _decode_batch(model: Model, members: list, h: int, w: int, gray: bool, steps: int, seed: int,
                  device: torch.device, progress: bool, strip_pixels: int, chunk: int, order: str | None = None,
                  pyramid: int = 0) -> None:
    pc = PlaneCoder(model.net_on(device), model.curve, h, w, gray, steps, seed, strip_pixels, chunk, order=order,
                    pyramid=pyramid)
    if device.type == "cpu":
        jit.expect(len(members) * h * w * pc.steps)
    shape = (h, w) if gray else (h, w, 3)
    flats = [np.zeros(h * pc.per_row, dtype=np.uint8) for _ in members]
    values = torch.zeros(len(members), 3, h, w, dtype=torch.uint8, device=device)
    decoders: list[Decoder | None] = []
    for job, _, data in members:
        try:
            decoders.append(Decoder(data))
        except FormatError as e:
            job.error = e
            decoders.append(None)
    remaining = h * pc.per_row
    budgets = [stream_bit_budget(len(data)) for _, _, data in members]
    for step in step_bar(range(pc.steps), progress, "decompress"):
        if all(dec is None for dec in decoders):      # every stream failed: no more work to do
            break
        for var, params, anchor in pc.step_outputs(values, pc.mask(step).to(device), step):
            remaining -= len(var)
            freq = _lazy(lambda: _frequencies(params, anchor))
            decoded = _decode_binary_runs(members, decoders, var, params, anchor)
            for b, ((job, rule, _), flat, dec) in enumerate(zip(members, flats, decoders)):
                if dec is None:
                    continue
                try:
                    if b in decoded:
                        symbols, info = decoded[b]
                        if isinstance(symbols, Exception):
                            raise symbols
                        flat[var] = symbols
                        budgets[b] -= info
                    else:
                        probs = rule.probabilities(freq()[b], var, flat, pc.step_of, step, w)
                        symbols = dec.pop(probs)
                        flat[var] = symbols
                        budgets[b] -= symbol_bits(probs, symbols)
                except (ValueError, RuntimeError, OverflowError) as e:
                    job.error = FormatError(f"corrupt .ardm file: bitstream does not decode ({e})")
                    decoders[b] = None
                    continue
                # Every coded symbol has probability < 1, so a stream is back in its empty
                # state only after its last symbol; and it cannot hold more information
                # than its words: either way a truncated stream is refused as soon as it
                # runs dry, so the work follows the bytes present, not the claimed size.
                if (remaining and dec.finished_cleanly()) or budgets[b] < 0:
                    job.error = FormatError("corrupt .ardm file: bitstream ends early (truncated or damaged)")
                    decoders[b] = None
        # reveal this step's values to the next steps (the mask hides them until then)
        for b, flat in enumerate(flats):
            values[b].copy_(_plane_tensor(flat.reshape(shape), gray)[0].to(device))
    for (job, _, _), flat, dec in zip(members, flats, decoders):
        if dec is None:
            continue
        if not dec.finished_cleanly():
            job.error = FormatError("corrupt .ardm file: bitstream has data left over")
            continue
        plane = flat.reshape(shape)
        job.pixels = plane if job.gray else (np.repeat(plane[..., None], 3, axis=2) if gray else plane)


def format_version(streams: list[bytes], newest: int = container.FORMAT_VERSION, pyramid: bool = False) -> int:
    """The version a picture's plane streams are written as, so that older decoders refuse
    what they would misread as "made by a newer ardmzip": 10 (8 where ``newest`` is 8 or 9, 6
    where it is 6 or 7) where a plane went through the network (anything but a constant or stored plane),
    ``pyramid`` (``uses_pyramid``) and ``newest`` allows it, else 4 where a plane is coded as
    binary decisions (PLAIN or VALUES, ``codes_binary``) or stored (only when ``newest``
    allows), else 3 where the colour plane uses chroma blocks or colour copies, else 2. Files
    written as 2 to 6 are those older versions byte for byte."""
    def kind(stream: bytes) -> int | None:         # the constraint that decides the coding (GRAY: its inner one)
        if len(stream) >= 2 and stream[0] == constraint.GRAY:
            return stream[1]
        return stream[0] if stream else None
    if pyramid and newest >= PYRAMID_VERSION and any(kind(s) not in (None, constraint.CONSTANT, constraint.STORED)
                                         for s in streams):
        return max(v for v in (PYRAMID_VERSION, COARSE_STEPS_VERSION, THREE_LEVEL_VERSION) if v <= newest)
    if newest >= BINARY_VERSION and any(kind(s) in (*BINARY_KINDS, constraint.STORED) for s in streams):
        return BINARY_VERSION
    wrapped = bool(streams) and kind(streams[0]) in constraint.WRAPPERS
    return 3 if wrapped else container.COMMON_VERSION


def pixel_crc(pixels: np.ndarray) -> int:
    """CRC32 of the pixel array's bytes (16-bit samples little-endian, whatever the machine)."""
    if pixels.dtype.itemsize > 1:
        pixels = pixels.astype(pixels.dtype.newbyteorder("<"))
    return zlib.crc32(np.ascontiguousarray(pixels).tobytes())


def check_steps(steps: int | None) -> int:
    """The step budget to use: the default for None; InputError below 1."""
    steps = DEFAULT_STEPS if steps is None else int(steps)
    if steps < 1:
        raise InputError("steps must be at least 1")
    return steps


def compress_pictures(pictures: list[Picture], steps: int | None = None, model: str | None = None, seed: int = 0,
                      device: str = "cpu", progress: bool | PictureBar = False, stats: Stats | None = None, *,
                      max_pixels: int = container.MAX_PIXELS, version: int | None = None, adapt: int = 0
                      ) -> list[bytes]:
    """One .ardm file per picture, each identical to ``compress_picture``'s; pictures of one
    size share network calls (the integer network is exact per pixel, so batching changes
    nothing in the files). A picture over ``max_pixels`` (0: no limit) raises LimitError
    before any is coded. ``version``: the newest format version to write (default the
    newest; 3 writes the files ardmzip wrote before binary coding, for older decoders).
    ``adapt``: Adam steps tuning the network's biases to each picture (0: none; adapt.py):
    the picture is coded both ways and the smaller file kept (format version 11 if adapted).
    The other arguments are those of ``compress``."""
    steps = check_steps(steps)
    version = container.FORMAT_VERSION if version is None else int(version)
    if not container.COMMON_VERSION + 1 <= version <= container.FORMAT_VERSION or version in container.ADAPTED_VERSIONS:
        raise InputError(f"can write format versions 3 to 6, 8 and {container.FORMAT_VERSION}, not {version}")
    for p in pictures:
        container.check_pixels(p.pixels.shape[1], p.pixels.shape[0], max_pixels)
        if p.mode in container.SIXTEEN_BIT_MODES and version < container.SIXTEEN_BIT_VERSION:
            raise InputError(f"16-bit pictures need format version {container.SIXTEEN_BIT_VERSION}, "
                             f"not {version}")
    if adapt and version != container.FORMAT_VERSION:
        raise InputError(f"adapted files are format version {container.ADAPTED_VERSION}, not {version}")
    dev = resolve_device(device)
    stats = stats if stats is not None else Stats(measure_ideal=False)
    by_model: dict[str, tuple[Model, list[int]]] = {}       # pictures of one model share network calls
    for i, m in enumerate(pictures_models(pictures, model)):
        by_model.setdefault(m.sha256, (m, []))[1].append(i)
    out: list[bytes] = [b""] * len(pictures)
    for m, members in by_model.values():
        group = [pictures[i] for i in members]
        if not adapt:
            files = _code_pictures(m, group, steps, seed, dev, stats, progress, version)
        else:
            files = [_adapted(m, p, steps, seed, dev, stats, progress, adapt) for p in group]
        for i, data in zip(members, files):
            out[i] = data
    return out


def network_plane(picture: Picture) -> np.ndarray | None:
    """The plane of ``picture`` the network codes ((H, W) or (H, W, 3) uint8; the high bytes
    of a 16-bit picture), or None where none is (a constant picture)."""
    plane = _color(_eight_bit(picture))
    flat = plane.reshape(-1, 1 if plane.ndim == 2 else 3)          # _route's first two cases, cheaply
    if (flat == flat[0]).all():
        return None
    if plane.ndim == 3 and (flat[:, :1] == flat[:, 1:]).all():
        return plane[..., 0]
    return plane


def _eight_bit(picture: Picture) -> np.ndarray:
    """The picture's pixels the ARDM codes: as they are, or a 16-bit picture's high bytes."""
    return lowbyte.split(picture.pixels)[0] if picture.mode in container.SIXTEEN_BIT_MODES else picture.pixels


def _color(pixels: np.ndarray) -> np.ndarray:
    """The colour plane of (H, W, C) pixels: (H, W) for gray (C <= 2), else (H, W, 3); alpha apart."""
    return pixels[..., 0] if pixels.shape[2] <= 2 else pixels[..., :3]


def pictures_models(pictures: list[Picture], model: str | None = None) -> list[Model]:
    """The model each picture is coded with: ``model`` for all of them, or with None or
    "auto" the candidate (``choose.candidates`` of its size) estimated to code that picture
    smallest; the pictures' estimates share network calls (each the same as alone)."""
    if model not in (None, choose.AUTO):
        return [load(model)] * len(pictures)
    if (only := choose.only_candidate()) is not None:
        return [load(only)] * len(pictures)
    planes = [network_plane(p) for p in pictures]
    coded = [i for i, plane in enumerate(planes) if plane is not None]
    names = {i: choose.candidates([planes[i].shape]) for i in coded}
    tiles: dict[bool, dict[int, tuple]] = {}      # drawn once for all candidates of one kind of order
    costs: dict[tuple[str, int], float] = {}
    for name in dict.fromkeys(n for i in coded for n in names[i]):          # each candidate once, in order
        mine = [i for i in coded if name in names[i]]
        kind = choose.green_first(load(name))
        if kind not in tiles:
            tiles[kind] = dict(zip(coded, choose.tiles_of([planes[i] for i in coded], green=kind)))
        costs.update(zip(((name, i) for i in mine), choose.estimate_many(
            load(name), [planes[i] for i in mine], tiles=[tiles[kind][i] for i in mine])))
    out = [load(choose.CANDIDATES[0])] * len(pictures)
    for i in coded:                 # min keeps the first candidate on a tie, as choose.choose
        out[i] = load(min(names[i], key=lambda n: costs[n, i]))
    return out


def auto_model(pictures: list[Picture]) -> Model:
    """The one candidate estimated to code all of ``pictures`` smallest (an archive's choice)."""
    planes = [plane for plane in map(network_plane, pictures) if plane is not None]
    return choose.choose([load(name) for name in choose.candidates([p.shape for p in planes])], planes)


def _adapted(m: Model, picture: Picture, steps: int, seed: int, dev: torch.device, stats: Stats,
             progress: bool | PictureBar, adapt_steps: int) -> bytes:
    """The smaller of ``picture``'s file with ``m`` and with ``m`` adapted to it (adapt.py)."""
    from . import adapt
    eight = _eight_bit(picture)
    color = eight[..., :1] if eight.shape[2] <= 2 else eight[..., :3]
    tuned, stream = adapt.adapt(m, color, adapt_steps, seed, progress)
    costs = [Stats(measure_ideal=stats.measure_ideal) for _ in range(2)]
    files = [_code_pictures(m, [picture], steps, seed, dev, costs[0], progress)[0],
             _code_pictures(tuned, [picture], steps, seed, dev, costs[1], progress, adaptation=stream)[0]]
    best = int(len(files[1]) < len(files[0]))
    stats.add(costs[best])
    stats.subpixels += costs[best].subpixels
    if best:
        stats.side_bits += 8 * len(stream)
    return files[best]


def _code_pictures(m: Model, pictures: list[Picture], steps: int, seed: int, dev: torch.device, stats: Stats,
                   progress: bool | PictureBar, version: int = container.FORMAT_VERSION,
                   adaptation: bytes | None = None) -> list[bytes]:
    """``compress_pictures`` with the model loaded; ``adaptation``: the adaptation stream of
    ``m`` (written first, as format version 11, or 7 where the planes are version 6 or below)."""
    # 16-bit pictures: the ARDM codes their high bytes like any 8-bit picture's planes
    split = {i: lowbyte.split(p.pixels) for i, p in enumerate(pictures) if p.mode in container.SIXTEEN_BIT_MODES}
    eight = [split[i][0] if i in split else p.pixels for i, p in enumerate(pictures)]
    colors = [_color(px) for px in eight]
    color_streams = encode_planes(m, colors, steps, seed, dev, stats, progress, version)
    with_alpha = [i for i, p in enumerate(pictures) if p.pixels.shape[2] in (2, 4)]
    alpha_streams = dict(zip(with_alpha, encode_planes(m, [eight[i][..., -1] for i in with_alpha],
                                                       steps, (seed + 1) % 2**64, dev, stats, progress, version)))
    out = []
    for i, (picture, color) in enumerate(zip(pictures, color_streams)):
        px = picture.pixels
        streams = [color] + ([alpha_streams[i]] if i in alpha_streams else [])
        written = format_version(streams, version, uses_pyramid(steps, px.shape[0], px.shape[1]))
        if i in split:                                   # the low bytes, given the high bytes
            low, ideal = lowbyte.encode(*split[i])
            streams.append(low)
            stats.file_bits += 8 * len(low)
            stats.ideal_bits += ideal
            written = max(written, container.SIXTEEN_BIT_VERSION)
        if adaptation is not None:          # 11 (10's planes), 9 (8's) or 7 (planes of 6 and below, as 6 reads them)
            streams.insert(0, adaptation)
            written = max(v for v, planes in container.ADAPTED_VERSIONS.items() if planes <= max(written, 6))
        header = container.Header(m.name, m.hash8, picture.mode, px.shape[1], px.shape[0], steps, seed,
                                  pixel_crc(px), tuple(picture.metadata), version=written)
        out.append(container.pack(header, streams))
    return out


def compress_picture(picture: Picture, steps: int | None = None, model: str | None = None, seed: int = 0,
                     device: str = "cpu", progress: bool | PictureBar = False, stats: Stats | None = None, *,
                     max_pixels: int = container.MAX_PIXELS, version: int | None = None, adapt: int = 0) -> bytes:
    """A Picture (pixels, mode, metadata: imageio.read_picture) -> .ardm bytes; ``stats``, if
    given, receives what the coding cost. The other arguments are those of ``compress``."""
    return compress_pictures([picture], steps, model, seed, device, progress, stats, max_pixels=max_pixels,
                             version=version, adapt=adapt)[0]


def decompress_pictures(files: list[bytes], device: str = "cpu", progress: bool | PictureBar = False,
                        strip_pixels: int = STRIP_PIXELS, chunk: int = CHUNK, *,
                        max_pixels: int = container.MAX_PIXELS) -> list[Picture | Exception]:
    """Decode several .ardm files, batching planes of one size into one network call.

    Returns a Picture, or the error (FormatError, ChecksumError, ModelMismatch, LimitError for a
    picture over ``max_pixels``, 0: no limit) for each file: one damaged file does not stop the others.
    ``strip_pixels`` and ``chunk`` bound the memory (any values decode any file); ``device``
    and ``progress`` as for ``compress``."""
    dev = resolve_device(device)
    results: list[Picture | Exception | None] = [None] * len(files)
    parsed = []                                    # (index, header, [PlaneJob or array per plane])
    low_streams: dict[int, bytes] = {}             # 16-bit files: the low-byte stream
    by_model: dict[int, tuple[Model, list[PlaneJob]]] = {}
    for i, data in enumerate(files):
        try:
            header, streams = container.unpack(data, max_pixels=max_pixels)
            c = CHANNELS[header.mode]
            deep = header.mode in container.SIXTEEN_BIT_MODES
            if deep and header.version < container.SIXTEEN_BIT_VERSION:
                raise FormatError(f"corrupt .ardm file: 16-bit mode in a format version {header.version} file")
            adaptation, streams = container.split_adaptation(header, streams)
            if len(streams) != (2 if c in (2, 4) else 1) + deep:
                raise FormatError(f"corrupt .ardm file: {len(streams) + (adaptation is not None)} streams "
                                  f"for mode {header.mode}")
            m = find_by_hash(header.model_name, header.model_hash)
            if adaptation is not None:                   # the planes as version 6 or 8 with the adapted network
                from . import adapt
                m = adapt.apply(m, adapt.unpack(adaptation, m.net))
                header = dataclasses.replace(header, version=container.ADAPTED_VERSIONS[header.version])
        except ArdmzipError as e:                 # reported per file, like a damaged stream
            results[i] = e
            continue
        h, w = header.height, header.width
        planes = [PlaneJob(streams[0], h, w, c <= 2, header.steps, header.seed, header.version)]
        if c in (2, 4):
            if header.version < 2 and len(streams[1]) == 1:      # version 1: constant alpha as one byte
                planes.append(np.full((h, w), streams[1][0], dtype=np.uint8))
            else:
                planes.append(PlaneJob(streams[1], h, w, True, header.steps, (header.seed + 1) % 2**64,
                                       header.version))
        by_model.setdefault(id(m), (m, []))[1].extend(p for p in planes if isinstance(p, PlaneJob))
        parsed.append((i, header, planes))
        if deep:
            low_streams[i] = streams[-1]
    for m, jobs in by_model.values():
        decode_planes(m, jobs, dev, progress, strip_pixels, chunk)
    for i, header, planes in parsed:
        arrays = []
        for p in planes:
            if isinstance(p, PlaneJob):
                if p.error is not None:
                    results[i] = p.error
                    break
                arrays.append(p.pixels)
            else:
                arrays.append(p)
        else:
            px = np.ascontiguousarray(np.concatenate([a if a.ndim == 3 else a[..., None] for a in arrays], axis=2))
            if header.mode in container.SIXTEEN_BIT_MODES:
                try:
                    px = lowbyte.join(px, lowbyte.decode(px, low_streams[i]))
                except FormatError as e:
                    results[i] = e
                    continue
            if pixel_crc(px) != header.pixel_crc:
                results[i] = ChecksumError("decoded pixels do not match the stored checksum: the file is damaged")
            else:
                results[i] = Picture(px, header.mode, tuple(header.metadata))
    return results


def decompress_picture(data: bytes, device: str = "cpu", progress: bool | PictureBar = False,
                       strip_pixels: int = STRIP_PIXELS, chunk: int = CHUNK, *,
                       max_pixels: int = container.MAX_PIXELS) -> Picture:
    """.ardm bytes -> the Picture (pixels (H, W, C), mode, metadata); raises what
    ``decompress_pictures`` reports."""
    (result,) = decompress_pictures([data], device, progress, strip_pixels, chunk, max_pixels=max_pixels)
    if isinstance(result, Exception):
        raise result
    return result


def compress(array: np.ndarray, steps: int | None = None, *, model: str | None = None, seed: int = 0,
             device: str = "cpu", progress: bool | PictureBar = False, max_pixels: int = container.MAX_PIXELS,
             version: int | None = None, adapt: int = 0) -> bytes:
    """Compress a uint8 or uint16 image array, (H, W) or (H, W, C) with C in 1..4 (gray, gray
    + alpha, RGB, RGBA), to .ardm bytes. The same arguments always give the same bytes
    (with ``adapt``: on the same machine and thread count).
    uint16 is kept 16-bit (format version 5: the high bytes through the network, the low
    bytes given them, ``lowbyte.py``).

    ``steps``: network calls per plane (default DEFAULT_STEPS = 16; more is smaller and
    slower, LEVEL_STEPS lists the CLI's levels). ``model``: a registered model name (default
    weights.DEFAULT_MODEL); the file records it, and decoding needs the same model.
    ``seed``: picks the coding order (any value decodes; 0 to 2^64 - 1). ``device``: "cpu",
    "cuda" or "auto" (cuda when available): where the network runs; the integer network is
    meant to give the same bytes everywhere, but only the CPU path is verified so far.
    ``progress``: a tqdm bar per step loop on stderr (True), or a ``progress.PictureBar`` one
    picture's loops share. ``max_pixels``: LimitError above that many pixels (0: no limit).
    ``version``: the newest format to write (see compress_pictures). ``adapt``: steps of
    tuning the network's biases to this picture before coding it (0: none; adapt.DEFAULT_STEPS
    is what the CLI's --adapt uses): the encoder trains (seconds per step on a CPU), the
    decoder does not, and the file is the smaller of the two codings (adapt.py)."""
    return compress_picture(picture_from_array(array), steps, model, seed, device, progress, max_pixels=max_pixels,
                            version=version, adapt=adapt)


def decompress(data: bytes, *, device: str = "cpu", progress: bool | PictureBar = False,
               max_pixels: int = container.MAX_PIXELS) -> np.ndarray:
    """Decompress .ardm bytes to a uint8 array (uint16 for a 16-bit picture): (H, W) for a
    one-channel picture (gray or 1-bit, as numpy gives for a gray Pillow image; an (H, W, 1)
    array given to ``compress`` comes back (H, W) too: ``out[..., None]`` restores it), else
    (H, W, C), C in 2..4.

    A file whose picture is over ``max_pixels`` pixels (0: no limit) raises LimitError
    before anything is decoded; ``device`` and ``progress`` as for ``compress``."""
    pixels = decompress_picture(data, device, progress, max_pixels=max_pixels).pixels
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels

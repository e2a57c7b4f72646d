"""Value constraints: restrict each subpixel's categorical to the values the image can have.

Many real images use few values: palette (GIF-era) pictures, gray pictures stored as RGB,
scans quantised to 6 bits. Half of Set14 is like that (baboon has 220 colours, lenna 255,
bridge 64 gray levels). The network spreads probability over all 256 levels; the encoder
knows the exact set, writes it at the head of the plane's stream, and both sides zero the
frequencies of impossible values before coding. Restricting never raises a symbol's ideal
cost (the true value is always allowed and the mass renormalises over fewer values), so
the only price is the side information.

A plane stream (format versions 2 and 3) starts with one kind byte:

    0 PLAIN     nothing more
    1 VALUES    per channel, a 256-bit set of the values that occur (32 bytes, value v is
                bit v & 7 of byte v >> 3)
    2 PALETTE   three-channel planes only: varint P (1..MAX_PALETTE), then the P colours,
                3 bytes each, in strictly increasing order. A subpixel may only take the
                values of palette colours that agree with its pixel's revealed channels:
                once one channel of a gray-as-RGB pixel is known, the other two cost ~0.
    3 CONSTANT  every pixel is the same colour: C bytes, and no bitstream at all
    4 GRAY      three-channel planes whose channels are all equal: the rest of the stream
                is a gray plane's stream (its own kind byte first), coded with the gray
                model over H x W variables instead of 3 H W
    5 CHROMA    (format version 3) three-channel video frames with half-resolution chroma
                (chroma.py): a block byte (bit 0: 2-row blocks, bit 1: 2-column blocks,
                bit 2 / bit 3: blocks start at row / column 1), the residual tables (for
                each (channel, sibling) of chroma.PAIRS, 6 bytes: weights of residuals
                -2..2, then the network's, which is at least 1), then the inner
                constraint (PLAIN, VALUES or PALETTE) with its own kind byte; the inner
                masking applies, then the mixture with the tables
    6 COPY      (format version 3) three-channel planes, mostly palette pictures
                (copies.py): radius (1..15), votes a_0, a_1, a_2, the network's weight
                (at least 1), then the inner constraint (PLAIN, VALUES or PALETTE); the
                inner masking applies, then the mixture with the neighbours' votes
    7 STORED    (format version 4) the plane's bytes as they are, H x W x C, row-major:
                written where coding would cost more (tiny or noise-like pictures), so
                no file is larger than a stored copy plus its header

followed by the ANS words (none for CONSTANT and STORED). Everything here is integer table lookups,
so encoder and decoder mask identically on every machine.
"""
from __future__ import annotations

import numpy as np
import torch

from . import chroma, copies
from .container import _varint    # LEB128, as everywhere in the formats
from .dlm import ALL_VALUES, apply_mask, frequencies_to_probabilities
from .errors import FormatError

PLAIN, VALUES, PALETTE, CONSTANT, GRAY, CHROMA, COPY, STORED = 0, 1, 2, 3, 4, 5, 6, 7
KIND_NAMES = {PLAIN: "plain", VALUES: "value sets", PALETTE: "palette", CONSTANT: "constant", GRAY: "gray as RGB",
              CHROMA: "chroma blocks", COPY: "colour copies", STORED: "stored"}
WRAPPERS = (CHROMA, COPY)         # kinds that wrap an inner constraint (format version 3)
MAX_PALETTE = 4096
# Where only a rule decides (large planes): a palette must cost under 1/4 bit per pixel.
PALETTE_BITS_PER_PIXEL = 0.25


class Constraint:
    """One plane's constraint: its bytes, and the masking it implies."""

    def __init__(self, kind: int, channels: int, data: np.ndarray | None = None, inner: "Constraint | None" = None,
                 blocks: tuple[int, int, int, int] | None = None):
        self.kind, self.channels = kind, channels
        # VALUES (C, 256) bool; PALETTE (P, 3) uint8; CONSTANT (C,) uint8; CHROMA its tables (3, 3, 6)
        # uint8; COPY (radius, a_0, a_1, a_2, network weight) uint8
        self.data = data
        self.inner = inner                  # CHROMA and COPY: the constraint they wrap
        self.blocks = blocks                # CHROMA: (rows, columns, row offset, column offset)
        self._tables: dict[str, tuple[torch.Tensor, np.ndarray | None]] = {}

    def __repr__(self) -> str:
        if self.kind == CHROMA:
            return f"Constraint(chroma blocks {self.blocks}, {self.inner!r})"
        if self.kind == COPY:
            return f"Constraint(colour copies {tuple(int(v) for v in self.data)}, {self.inner!r})"
        extra = f", {len(self.data)} colours" if self.kind == PALETTE else ""
        return f"Constraint({KIND_NAMES[self.kind]}{extra})"

    @property
    def palette(self) -> bool:
        """Whether the plane is coded with a palette (wrapped in CHROMA or COPY or not)."""
        return self.kind == PALETTE or (self.kind in WRAPPERS and self.inner.kind == PALETTE)

    @staticmethod
    def chroma_blocks(inner: "Constraint", blocks: tuple[int, int, int, int], tables: np.ndarray) -> "Constraint":
        """``inner`` mixed with residual ``tables`` (chroma.measure_tables) for ``blocks`` =
        (rows, columns, row offset, column offset)."""
        return Constraint(CHROMA, 3, tables, inner=inner, blocks=blocks)

    @staticmethod
    def colour_copies(inner: "Constraint", radius: int = copies.DEFAULT_RADIUS,
                      weights: tuple[int, int, int] = copies.DEFAULT_WEIGHTS,
                      network: int = copies.DEFAULT_NETWORK) -> "Constraint":
        """``inner`` mixed with the votes of revealed neighbours within ``radius`` (copies.py)."""
        return Constraint(COPY, 3, np.array([radius, *weights, network], np.uint8), inner=inner)

    # ------------------------------------------------------------ bytes

    def to_bytes(self) -> bytes:
        if self.kind == PLAIN:
            return bytes([PLAIN])
        if self.kind == VALUES:
            return bytes([VALUES]) + np.packbits(self.data, axis=1, bitorder="little").tobytes()
        if self.kind == PALETTE:
            return bytes([PALETTE]) + _varint(len(self.data)) + self.data.tobytes()
        if self.kind == GRAY:
            return bytes([GRAY])
        if self.kind == CHROMA:
            by, bx, oy, ox = self.blocks
            tables = np.stack([self.data[c, s] for c, s in chroma.PAIRS]).astype(np.uint8).tobytes()
            return bytes([CHROMA, (by - 1) | (bx - 1) << 1 | oy << 2 | ox << 3]) + tables + self.inner.to_bytes()
        if self.kind == COPY:
            return bytes([COPY]) + self.data.tobytes() + self.inner.to_bytes()
        if self.kind == STORED:
            return bytes([STORED])
        return bytes([CONSTANT]) + self.data.tobytes()

    @staticmethod
    def parse(stream: bytes, channels: int) -> tuple["Constraint", bytes]:
        """Split a plane stream into its constraint and its ANS words; FormatError if malformed."""
        if not stream:
            raise FormatError("corrupt .ardm file: empty plane stream")
        kind, pos = stream[0], 1

        def take(n: int) -> bytes:
            nonlocal pos
            if n > len(stream) - pos:
                raise FormatError("corrupt .ardm file: truncated plane constraint")
            pos += n
            return stream[pos - n:pos]

        if kind == PLAIN:
            c = Constraint(PLAIN, channels)
        elif kind == VALUES:
            bits = np.frombuffer(take(32 * channels), np.uint8).reshape(channels, 32)
            masks = np.unpackbits(bits, axis=1, bitorder="little").astype(bool)
            if not masks.any(axis=1).all():
                raise FormatError("corrupt .ardm file: empty value set")
            c = Constraint(VALUES, channels, masks)
        elif kind == PALETTE and channels == 3:
            n, shift = 0, 0
            for _ in range(3):                       # MAX_PALETTE needs at most 2 varint bytes
                byte = take(1)[0]
                n |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    if byte == 0 and shift > 7:
                        raise FormatError("corrupt .ardm file: overlong palette size")
                    break
            else:
                raise FormatError("corrupt .ardm file: palette size out of range")
            if not 1 <= n <= MAX_PALETTE:
                raise FormatError(f"corrupt .ardm file: palette of {n} colours")
            pal = np.frombuffer(take(3 * n), np.uint8).reshape(n, 3)
            key = _color_keys(pal)
            if (np.diff(key) <= 0).any():
                raise FormatError("corrupt .ardm file: palette not in increasing order")
            c = Constraint(PALETTE, 3, pal.copy())
        elif kind == CONSTANT:
            c = Constraint(CONSTANT, channels, np.frombuffer(take(channels), np.uint8).copy())
        elif kind == GRAY and channels == 3:
            c = Constraint(GRAY, 3)
        elif kind == STORED:
            c = Constraint(STORED, channels)
        elif kind == CHROMA and channels == 3:
            shape = take(1)[0]
            by, bx, oy, ox = 1 + (shape & 1), 1 + (shape >> 1 & 1), shape >> 2 & 1, shape >> 3 & 1
            if shape >> 4 or by * bx == 1 or oy >= by or ox >= bx:
                raise FormatError(f"corrupt .ardm file: bad chroma block byte {shape}")
            rows = np.frombuffer(take(len(chroma.PAIRS) * chroma.TABLE_WIDTH), np.uint8)
            rows = rows.reshape(len(chroma.PAIRS), chroma.TABLE_WIDTH)
            if (rows[:, -1] == 0).any():
                raise FormatError("corrupt .ardm file: chroma table without network weight")
            tables = np.zeros((3, 3, chroma.TABLE_WIDTH), np.uint8)
            for (c, s), row in zip(chroma.PAIRS, rows):
                tables[c, s] = row
            inner, rest = _parse_inner(stream[pos:], CHROMA)
            return Constraint.chroma_blocks(inner, (by, bx, oy, ox), tables), rest
        elif kind == COPY and channels == 3:
            radius, a0, a1, a2, network = take(5)
            if not 1 <= radius <= copies.MAX_RADIUS:
                raise FormatError(f"corrupt .ardm file: colour copy radius {radius}")
            if network == 0:
                raise FormatError("corrupt .ardm file: colour copies without network weight")
            inner, rest = _parse_inner(stream[pos:], COPY)
            return Constraint.colour_copies(inner, radius, (a0, a1, a2), network), rest
        else:
            raise FormatError(f"corrupt .ardm file: unknown plane constraint {kind}")
        return c, stream[pos:]

    # ------------------------------------------------------------ masking

    def restrict(self, freq: torch.Tensor, var: np.ndarray, flat: np.ndarray, step_of: np.ndarray,
                 step: int, width: int) -> torch.Tensor:
        """Zero the frequencies of values ``var`` cannot take (CHROMA and COPY then mix in their
        predictions).

        freq: (n, 256) int32 for the variables ``var`` (flat indices into the plane, pixel-major);
        flat: the plane's values, correct wherever ``step_of < step`` (revealed before this step);
        width: the plane's width in pixels. Returns int32, or int64 for CHROMA and COPY.
        A row left empty (only possible when decoding a damaged stream) keeps its frequencies,
        so decoding stays defined and the pixel checksum reports the damage.
        """
        if self.kind in WRAPPERS:
            return self._mixed(freq, var, flat, step_of, step, width, probabilities=False)
        if self.kind == PLAIN:
            return freq
        return apply_mask(freq, *self.mask_rows(var, flat, step_of, step, freq.device))

    def mask_rows(self, var: np.ndarray, flat: np.ndarray, step_of: np.ndarray, step: int,
                  device: torch.device = torch.device("cpu")) -> tuple[torch.Tensor, np.ndarray]:
        """The values each variable of ``var`` may take (``restrict``'s arguments): a table
        (R, 256) int32 of 0/1 and each variable's row of it, (n,) int64. VALUES: its channel's
        set; PALETTE: by the channels of its pixel revealed before ``step``; PLAIN: one row
        allowing every value."""
        if self.kind == PLAIN:
            return ALL_VALUES.to(device), np.zeros(len(var), np.int64)
        table, pair_row = self._device_tables(device)
        ch = var % self.channels
        if self.kind == VALUES:
            row = ch
        else:
            base = var - ch
            u1, u2 = base + (ch + 1) % 3, base + (ch + 2) % 3
            r1, r2 = step_of[u1] < step, step_of[u2] < step
            v1, v2 = flat[u1].astype(np.int64), flat[u2].astype(np.int64)
            row = np.where(r1 & r2, pair_row[ch, v1 * 256 + v2],
                           np.where(r1, 3 + ch * 256 + v1, np.where(r2, 3 + 768 + ch * 256 + v2, ch)))
        return table, np.ascontiguousarray(row, dtype=np.int64)

    def probabilities(self, freq: torch.Tensor, var: np.ndarray, flat: np.ndarray, step_of: np.ndarray,
                      step: int, width: int) -> np.ndarray:
        """The coder's float64 rows for ``var``: dlm.frequencies_to_probabilities of
        ``restrict``'s frequencies (same arguments). Chroma blocks and colour copies mask,
        mix and write them in one pass: the same bits without the masked int32 rows and the
        mixed int64 rows ever stored."""
        if self.kind in WRAPPERS:
            return self._mixed(freq, var, flat, step_of, step, width, probabilities=True)
        return frequencies_to_probabilities(self.restrict(freq, var, flat, step_of, step, width))

    def _mixed(self, freq: torch.Tensor, var: np.ndarray, flat: np.ndarray, step_of: np.ndarray, step: int,
               width: int, probabilities: bool) -> torch.Tensor | np.ndarray:
        """A CHROMA or COPY constraint's rows: its inner constraint's mask and its mixture,
        applied in one pass (chroma.mix / copies.mix with ``mask``)."""
        mask = self.inner.mask_rows(var, flat, step_of, step, freq.device)
        if self.kind == CHROMA:
            return chroma.mix(freq, var, flat, step_of, step, width, self.blocks, self.data,
                              probabilities=probabilities, mask=mask)
        radius, a0, a1, a2, network = (int(v) for v in self.data)
        return copies.mix(freq, var, flat, step_of, step, width, radius, (a0, a1, a2), network,
                          probabilities=probabilities, mask=mask)

    def _device_tables(self, device: torch.device) -> tuple[torch.Tensor, np.ndarray | None]:
        key = str(device)
        if key not in self._tables:
            if self.kind == VALUES:
                table, pair_row = self.data, None
            else:
                table, pair_row = _palette_tables(self.data)
            self._tables[key] = (torch.from_numpy(table.astype(np.int32)).to(device), pair_row)
        return self._tables[key]


def describe(stream: bytes, channels: int) -> str:
    """A plane's constraint in words, for ``ardmzip info`` (format version 2 and 3 streams)."""
    c, rest = Constraint.parse(stream, channels)
    if c.kind == CHROMA:
        by, bx, oy, ox = c.blocks
        inner = describe(c.inner.to_bytes(), 3)
        return f"chroma blocks {by}x{bx} at ({oy}, {ox}), " + inner
    if c.kind == COPY:
        return f"colour copies (radius {int(c.data[0])}), " + describe(c.inner.to_bytes(), 3)
    if c.kind == GRAY:
        return "gray as RGB, " + describe(rest, 1)
    if c.kind == VALUES:
        return "value sets (" + "/".join(str(int(n)) for n in c.data.sum(1)) + " of 256)"
    if c.kind == PALETTE:
        return f"palette ({len(c.data)} colours)"
    return KIND_NAMES[c.kind]


def _parse_inner(stream: bytes, wrapper: int) -> tuple[Constraint, bytes]:
    """The constraint a CHROMA or COPY wraps: PLAIN, VALUES or PALETTE of an RGB plane."""
    inner, rest = Constraint.parse(stream, 3)
    if inner.kind not in (PLAIN, VALUES, PALETTE):
        raise FormatError(f"corrupt .ardm file: bad constraint inside {KIND_NAMES[wrapper]}")
    return inner, rest


def _color_keys(pal: np.ndarray) -> np.ndarray:
    p = pal.astype(np.int64)
    return (p[:, 0] << 16) | (p[:, 1] << 8) | p[:, 2]


def _palette_tables(pal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of allowed values for every (target channel, revealed other channels) case.

    Rows: 0..2 nothing revealed; 3 + 256 ch + v the next channel (ch+1)%3 revealed as v;
    771 + 256 ch + v the one after, (ch+2)%3; then one row per (ch, pair of both others)
    that occurs in the palette, looked up through ``pair_row[ch, 256 v1 + v2]``; the last
    row allows everything (pairs absent from the palette: damaged streams only).
    """
    p = pal.astype(np.int64)
    fixed = np.zeros((3 + 2 * 768, 256), bool)
    pair_rows, pair_row = [], np.empty((3, 65536), np.int64)
    start = len(fixed)
    for ch in range(3):
        c1, c2 = (ch + 1) % 3, (ch + 2) % 3
        fixed[ch, p[:, ch]] = True
        fixed[3 + ch * 256 + p[:, c1], p[:, ch]] = True
        fixed[771 + ch * 256 + p[:, c2], p[:, ch]] = True
        keys, inverse = np.unique(p[:, c1] * 256 + p[:, c2], return_inverse=True)
        rows = np.zeros((len(keys), 256), bool)
        rows[inverse.reshape(-1), p[:, ch]] = True
        pair_rows.append(rows)
        pair_row[ch] = -1
        pair_row[ch, keys] = start + np.arange(len(keys))
        start += len(keys)
    table = np.concatenate([fixed, *pair_rows, np.ones((1, 256), bool)])
    pair_row[pair_row < 0] = len(table) - 1
    return table, pair_row


def _distinct_colours(px: np.ndarray) -> np.ndarray:
    """The sorted distinct ``_color_keys`` of (N, 3) uint8 pixels. A large picture marks them in
    a 2^24 bitmap (16 MB, a few passes over memory), 4x faster there than np.unique's sort."""
    keys = _color_keys(px)
    if len(keys) < 1 << 17:
        return np.unique(keys)
    seen = np.zeros(1 << 24, bool)
    seen[keys] = True
    return np.flatnonzero(seen)


def candidates(plane: np.ndarray) -> list[Constraint]:
    """Constraints worth trying for a plane ((H, W) gray or (H, W, 3)), least restrictive first.

    A constant plane gets CONSTANT alone, a gray plane stored as RGB GRAY alone (both are
    always best). Each later candidate allows a subset of what the one before allows, so its
    ideal bits are never higher; only its bytes are. A video frame (chroma.detect) then gets
    the same list again, each wrapped in CHROMA, and a palette also comes wrapped in COPY.
    """
    channels = 1 if plane.ndim == 2 else plane.shape[2]
    px = plane.reshape(-1, channels)
    if (px == px[0]).all():
        return [Constraint(CONSTANT, channels, px[0].copy())]
    if channels == 3 and (px[:, :1] == px[:, 1:]).all():
        return [Constraint(GRAY, 3)]
    out = [Constraint(PLAIN, channels)]
    masks = np.stack([np.bincount(px[:, ch], minlength=256) > 0 for ch in range(channels)])
    if not masks.all():
        out.append(Constraint(VALUES, channels, masks))
    if channels == 3:
        keys = _distinct_colours(px)
        if len(keys) <= MAX_PALETTE:
            pal = np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], 1).astype(np.uint8)
            out.append(Constraint(PALETTE, 3, pal))
        blocks = chroma.detect(plane)
        if blocks is not None:                 # video frames: each candidate also with the tables
            tables = chroma.measure_tables(plane, blocks)
            out += [Constraint.chroma_blocks(c, blocks, tables) for c in out]
        # palette pictures: the palette also with colour copies (last, so by_rule takes it)
        out += [Constraint.colour_copies(c) for c in out if c.kind == PALETTE]
    return out


def by_rule(cands: list[Constraint], pixels: int) -> Constraint:
    """The most restrictive candidate whose side information is cheap for ``pixels`` pixels."""
    for c in reversed(cands):
        if not c.palette or 8 * len(c.to_bytes()) <= PALETTE_BITS_PER_PIXEL * pixels:
            return c
    return cands[0]

"""Dataset archives: many images in one file, with random access; what all members share is
written once (model, steps, seed, the arrays' shapes), and a member is its coded streams plus
a CRC (format 3; format 1 and 2 archives still read).

    ardmzip.archive.write_archive("photos/", "photos.ardm", steps=32)
    ardmzip.archive.write_archive("thumbs.npz", "t.ardm", model="thumbs.npz")   # carries the model
    ardmzip.archive.list_archive("photos.ardm")              # reads only the index
    ardmzip.archive.extract_member("photos.ardm", "sub/a.png")
    ardmzip.archive.extract_all("photos.ardm", "out/")       # or "x.npz" for array sources

Sources are a folder of images (walked recursively; member names are the relative POSIX
paths, sorted by code point) or a .npz/.npy file of uint8 image arrays (N, H, W) or
(N, H, W, C), C in 1..4 (members named "KEY/000123" for .npz, "000123" for .npy; the
archive keeps each array's key and shape so extraction rebuilds the same arrays, bit-exact);
sources.py reads them. Members are coded and decoded in batches, in order, in this process,
in worker processes or on a Ray cluster (jobs.py, cluster.py), the same bytes every way.

Byte layout, format version 4.  "varint" is the unsigned LEB128 of container.py; CRCs
are CRC32 (zlib), 4 bytes little-endian::

    header        magic b"ARDS", version 4, then:
      flags         1 byte   bits 0-1 the kind (0 images from a folder, 1 one .npy array,
                             2 .npz arrays), bit 2 the .npz entries were deflate-compressed,
                             bit 3 the model is carried, bits 4-7 the newest .ardm format
                             version the members were coded with
      arrays        folders: none; .npy: a shape; .npz: varint count, per array varint key
                    length, key utf-8 (length 0: the usual key, "images"), shape. A shape is
                    varints N, H, W, C (C 0: (N, H, W))
      model         varint name length, name utf-8, 8 bytes of the model file's sha256
      steps, seed   varints, as in every member's .ardm header
      model size    varint, only with bit 3: bytes of the carried model as stored
    model         the carried model file, xz-compressed (lzma; about 2/3 of a model file's
                  bytes); the decompressed file's sha256 must start with the model hash
    members       one after another, in index order; each is
      metadata      folder members that have any: varint count, per entry varint key
                    length, key, varint value length, value (PNG text, ICC, EXIF: as in .ardm)
      streams       the coded plane streams (one; two with alpha; a third: 16-bit low bytes)
      CRC           4 bytes  CRC32 of its index entry and its bytes above, carried over
                             8·W·H zero bytes, XOR CRC32 of its decoded pixels (``_member_crc``)
    index         per member: (folders only: varint name length, name utf-8, mode byte (index
                  into container.MODES; bit 7: metadata follows), varint width, varint height,
                  varint metadata length if bit 7), then a varint length per stream. Array
                  members are counted, named, sized and moded by their arrays; a folder's
                  index holds as many members as it has bytes for
    footer        the index length (varint, its bytes reversed: it reads from the end), then
                  4 bytes CRC32 of the header, the index and that length

A member's stream count comes from its mode and its .ardm format version from its streams
(``_streams_version``). An array member thus costs its streams plus 4 bytes and a varint
per stream (about 6 bytes for a 32x32 picture, against 21 of a compact single .ardm file's
header); the fixed overhead is a header and a footer about 20 bytes larger than a compact
file's header (the archive names its model in full), so from three images on an archive is
smaller than the single files but for the folder members' names or an .npz key other than
"images".
``ArchiveIndex.overhead_per_image`` is everything but the coded streams per image. Decoding
a member rebuilds the single .ardm file it was cut from (``_member_crc`` gives back its pixel
CRC), so a damaged member fails alone, as a pixel checksum mismatch, and a wrong decode is
caught the same way; a damaged header or index fails the footer's CRC before anything is
decoded. A carried model is checked against the model hash before any member is decoded.

Format 3 (read, no longer written) is format 4 with the carried model stored as the file
itself. Formats 2 and 1 (read, no longer written) are described and read in ``archive_old.py``.

Names: every member name and every .npz key, of every kind, passes ``name_problem`` when
an archive is written and again when it is read: 1..4096 UTF-8 bytes, a relative POSIX
path of plain components (no "", "." or ".."), no backslash, no control character. A .npy
archive's key is "". So extraction never leaves its folder whatever the file says, and it
does not write through a symbolic link to a folder either (``follow_symlinks``; see
``imageio.write_file_under``). Counts are checked against the bytes present before
anything is built from them (a member takes at least 4 bytes and one index byte, so 41
bytes cannot claim 10^12 members), and each picture's size against ``max_pixels`` before
decoding; members tile the file with no gaps, which ``read_index`` checks.

Writing appends members to ``OUT.partial`` and their index entries to ``OUT.partial-index``
(the journal), fsynced member by member, so a crash loses at most the member in flight;
``resume=True`` keeps the members whose journal entry, bytes and CRC still match the source
(same name, pixels, mode, metadata; the header holds model, steps and seed, and another
header starts over), cuts a torn or damaged tail, and compresses the rest.  Only when every
member is in is the index and footer written, the file renamed to OUT and the journal
removed; a .partial has no footer (what ends it fails the footer's CRC), so it never passes
for a complete archive.  Because coding is deterministic, a resumed archive is
byte-identical to one written in a single run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import lzma
import os
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import numpy as np

from . import choose, codec, container, jit, weights
from .codec import DEFAULT_STEPS, check_steps, compress_pictures, decompress_picture, decompress_pictures, pixel_crc
from .errors import FormatError, InputError, ModelMismatch, OutputError
from .imageio import MODE_CHANNELS, PNG_LEVEL, Picture, check_png_level, commit_file
from .jobs import Jobs, _batches, _ordered_map, _read_ahead
from .progress import PictureBar, bar as progress_bar, decoded_planes, for_picture
# What a source is (names, arrays, the pictures) is sources.py's; its names stay importable from here.
from .sources import (ARRAY_MODES, ARRAY_SUFFIXES, CONTROL_CHARACTERS, IMAGE_SUFFIXES, MAX_ARRAYS,  # noqa: F401
                      MAX_NAME_BYTES, MAX_SIDE, _U1, ArraySpec, _open_source, _Source, name_problem)

__all__ = [
    "MAGIC", "VERSION", "IMAGE_SUFFIXES", "ARRAY_SUFFIXES", "PARTIAL_SUFFIX", "JOURNAL_SUFFIX", "FOOTER_SIZE",
    "ArraySpec", "MemberInfo", "Shared", "ArchiveIndex", "WriteResult",
    "is_archive", "write_archive", "read_index", "archive_info", "list_archive", "extract_member", "extract_all",
    "test_archive", "png_names", "name_problem",
]

MAGIC = b"ARDS"
VERSION = 4                         # what this ardmzip writes; versions 1, 2 and 3 still read
VERSIONS = (1, 2, 3, 4)
MAX_CARRIED_MODEL = 1 << 28         # bytes a carried model may decompress to (model files are a few MB)
HEADER = MAGIC + bytes([VERSION])
FOOTER_SIZE = 4                     # versions 3, 4: the CRC32 that ends the file (the index length before it)
FOOTER_SIZE_V2 = 12                 # index offset, magic
FOOTER_SIZE_V1 = 20                 # index offset, member count, magic
PARTIAL_SUFFIX = ".partial"
JOURNAL_SUFFIX = ".partial-index"   # the index entries of the members in the .partial
KINDS = ("images", "npy", "npz")
FLAG_DEFLATED = 1                   # versions 1 and 2: the flags byte
# Version 3's flags byte: bits 0-1 the kind, bit 2 deflated, bit 3 a carried model, bits 4-7 the
# newest .ardm format version of the members; and bit 7 of a folder member's mode byte.
KIND_MASK, DEFLATED, CARRIED, CODEC_SHIFT = 0x03, 0x04, 0x08, 4
HAS_METADATA = 0x80
# Fewest index bytes one member / one array takes (each field at least one byte), so the
# index's size bounds the counts it may claim before anything is built from them.
MIN_MEMBER_BYTES = 7               # version 1: name length, name, offset, size, mode, width, height
MIN_ARRAY_BYTES = 5                # versions 1, 2: key length, ndim, N, H, W (version 3: N, H, W, C)
MIN_SHAPE_BYTES = 4
MIN_ENTRY_BYTES = {2: {"images": 9, "npy": 1, "npz": 1},      # index bytes of one member (name .. one length)
                   3: {"images": 6, "npy": 1, "npz": 1}}
MIN_ENTRY_BYTES[4] = MIN_ENTRY_BYTES[3]                         # format 4 differs only in the carried model
MEMBER_CRC_BYTES = 4               # versions 2-4: each member ends with its CRC, so takes at least these


# ---------------------------------------------------------------- data types


@dataclass(frozen=True)
class MemberInfo:
    """One archive member as the index describes it (no member bytes are read)."""
    name: str
    offset: int          # of the member's bytes in the archive (version 1: of its .ardm blob)
    size: int            # bytes of the member (versions 2-4: metadata, streams and CRC; 1: the .ardm blob)
    mode: str
    width: int
    height: int
    streams: tuple[int, ...] = ()     # versions 2-4: the length of each coded plane stream
    meta_size: int = 0                # versions 2-4, folders: bytes of metadata before the streams
    codec_version: int = 0            # version 2, folders: the member's .ardm format version (3: from its streams)

    @property
    def channels(self) -> int:
        return MODE_CHANNELS[self.mode]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def subpixels(self) -> int:
        return self.width * self.height * self.channels

    @property
    def bpsp(self) -> float:
        return 8 * self.size / max(1, self.subpixels)


@dataclass(frozen=True)
class Shared:
    """What every member of a version 2-4 archive has in common, written once in its header."""
    kind: str                          # "images", "npy" or "npz"
    deflated: bool
    arrays: tuple[ArraySpec, ...]
    model_name: str
    model_hash: bytes                  # first 8 bytes of the model file's sha256
    steps: int
    seed: int
    codec_version: int                 # the newest .ardm format version the members were coded with
    model_size: int = 0                # bytes of the carried model file; 0: registered, not carried

    def pack(self, version: int = VERSION) -> bytes:
        """The archive's header: magic, version and the shared fields (version 3; its CRC is the
        footer's, over the header and the index). ``version`` 2 (tests build such archives):
        with a length before the fields and a CRC after them."""
        name = self.model_name.encode("utf-8")
        if version == 2:
            body = bytes((KINDS.index(self.kind), FLAG_DEFLATED if self.deflated else 0)) + _pack_arrays(self.arrays)
            body += _varint(len(name)) + name + self.model_hash + _varint(self.steps) + _varint(self.seed)
            body += bytes((self.codec_version,)) + _varint(self.model_size)
            head = MAGIC + bytes((2,)) + _varint(len(body)) + body
            return head + _crc(head)
        if not 1 <= self.codec_version < 1 << (8 - CODEC_SHIFT):
            raise ValueError(f".ardm format version {self.codec_version} does not fit an archive's flags")
        flags = KINDS.index(self.kind) | (DEFLATED if self.deflated else 0) | (CARRIED if self.model_size else 0)
        head = HEADER + bytes((flags | self.codec_version << CODEC_SHIFT,)) + _pack_shapes(self.kind, self.arrays)
        head += _varint(len(name)) + name + self.model_hash + _varint(self.steps) + _varint(self.seed)
        return head + (_varint(self.model_size) if self.model_size else b"")


@dataclass(frozen=True)
class ArchiveIndex:
    """What an archive's index holds, plus the archive's size."""
    kind: str                          # "images", "npy" or "npz"
    deflated: bool                     # the .npz entries were deflate-compressed
    arrays: tuple[ArraySpec, ...]
    members: tuple[MemberInfo, ...]
    size: int                          # bytes of the whole archive
    index_offset: int
    version: int = VERSION
    shared: Shared | None = None       # versions 2-4 (version 1 members carry these in their headers)
    model_offset: int = 0              # versions 2-4: where a carried model's bytes start

    @property
    def member_bytes(self) -> int:
        return sum(m.size for m in self.members)

    @property
    def stream_bytes(self) -> int:
        """Bytes of the members' coded plane streams (version 1: the whole .ardm members)."""
        if self.version == 1:
            return self.member_bytes
        return sum(sum(m.streams) for m in self.members)

    @property
    def overhead_bytes(self) -> int:
        """Everything but the coded streams: header (and a carried model), per-member CRCs and
        metadata, index and footer (version 1: everything but the members' .ardm files)."""
        return self.size - self.stream_bytes

    @property
    def model_bytes(self) -> int:
        """Bytes of the carried model (0: the archive names a registered model)."""
        return self.shared.model_size if self.shared else 0

    @property
    def overhead_per_image(self) -> float:
        return self.overhead_bytes / max(1, len(self.members))

    @property
    def subpixels(self) -> int:
        return sum(m.subpixels for m in self.members)

    @property
    def bpsp(self) -> float:
        """Bits per subpixel of the whole archive, overhead included."""
        return 8 * self.size / max(1, self.subpixels)

    @property
    def member_bpsp(self) -> float:
        """Bits per subpixel of the members alone (what the progress bar shows)."""
        return 8 * self.member_bytes / max(1, self.subpixels)

    def member(self, name: str) -> MemberInfo:
        for m in self.members:
            if m.name == name:
                return m
        raise InputError(f"no member named {name!r} in the archive")


@dataclass(frozen=True)
class WriteResult:
    """What ``write_archive`` did."""
    path: str
    index: ArchiveIndex
    resumed: int          # members kept from an earlier, interrupted run
    compressed: int       # members compressed by this run
    seconds: float


OnWrite = Callable[[MemberInfo, bool], None]                      # (member, resumed)
OnRead = Callable[[str, "BaseException | None"], None]             # (name, error)


# ---------------------------------------------------------------- small encodings


# The same LEB128 varints and little-endian CRC32s as the single-image container.
_varint = container._varint
_crc = container._crc


class _Short(FormatError):
    """The bytes given end inside a field (a version 3 header is read in growing pieces)."""


class _Cursor(container._Reader):
    """The .ardm reader's bounds checks and varints, with the archive's messages, plus names."""

    def __init__(self, data: bytes, what: str) -> None:
        super().__init__(memoryview(data), f"corrupt archive: {what}", f"corrupt archive: {what}: truncated")

    def take(self, n: int) -> memoryview:
        if n > len(self.data) - self.pos:
            raise _Short(self.truncated)
        return super().take(n)

    def text(self, low: int = 1, high: int = MAX_NAME_BYTES) -> str:
        n = self.varint()
        if not low <= n <= high:
            raise self.fail("bad name length")
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("name is not utf-8") from None


USUAL_KEY = "images"           # the .npz key most datasets use


# ---------------------------------------------------------------- index


def _pack_shapes(kind: str, arrays: Sequence[ArraySpec]) -> bytes:
    """Version 3's arrays: none for a folder; a .npy's shape; an .npz's count, keys and shapes.
    A shape is N, H, W, C (0 for an (N, H, W) array)."""
    if kind == "npy" and [a.key for a in arrays] != [""] or kind == "images" and arrays:
        raise ValueError(f"a {kind} archive with arrays {[a.key for a in arrays]} (a .npy's one array has no key)")
    out = bytearray(_varint(len(arrays)) if kind == "npz" else b"")
    for a in arrays:
        if kind == "npz":           # the usual key costs no bytes, so a 1-image .npz archive is
            key = b"" if a.key == USUAL_KEY else a.key.encode("utf-8")     # no larger than its file
            out += _varint(len(key)) + key
        out += b"".join(_varint(d) for d in (*a.shape[:3], a.shape[3] if len(a.shape) == 4 else 0))
    return bytes(out)


def _footer(header: bytes, index: bytes) -> bytes:
    """Version 3: the index length (a varint, bytes reversed, so it reads from the end) and one
    CRC32 over the header, the index and that length."""
    length = _varint(len(index))[::-1]
    return length + zlib.crc32(index + length, zlib.crc32(header)).to_bytes(4, "little")


def stream_count(mode: str) -> int:
    """Coded streams of a picture of ``mode``: colour, alpha where there is one, and the low
    bytes of a 16-bit picture."""
    return (2 if MODE_CHANNELS[mode] in (2, 4) else 1) + (mode in container.SIXTEEN_BIT_MODES)


def _pack_metadata(metadata: Sequence[tuple[str, bytes]]) -> bytes:
    out = bytearray(_varint(len(metadata)))
    for key, value in metadata:
        out += container._blob(key.encode("utf-8")) + container._blob(value)
    return bytes(out)


def _streams_version(mode: str, streams: Sequence[bytes], newest: int, steps: int, width: int, height: int) -> int:
    """The .ardm format version a picture of ``mode`` and size with these streams, coded in
    ``steps`` steps, is written as (what ``codec.compress_pictures`` picks), so a member need
    not store it."""
    version = codec.format_version(list(streams), newest, codec.uses_pyramid(steps, height, width))
    return max(version, container.SIXTEEN_BIT_VERSION) if mode in container.SIXTEEN_BIT_MODES else version


def _member_parts(shared: Shared, name: str, ardm: bytes, version: int = VERSION) -> tuple[bytes, bytes, MemberInfo]:
    """A member coded as a single .ardm file -> (its bytes in the archive, its index entry,
    its MemberInfo at offset 0). Refuses a file that does not share the archive's header.
    ``version`` 2: as format 2 lays members out (tests build such archives)."""
    h, streams = container.unpack(ardm)
    if (h.model_name, h.model_hash, h.steps, h.seed) != (shared.model_name, shared.model_hash, shared.steps,
                                                         shared.seed):
        raise ModelMismatch(f"{name}: coded with another model or settings than the archive's "
                            "(did the model file change while writing?)")
    if len(streams) != stream_count(h.mode):
        raise FormatError(f"{name}: {len(streams)} streams for mode {h.mode}")
    folder = shared.kind == "images"
    # The member's .ardm version is recomputed from its streams when it is read (format 2: a
    # folder member's is in its index entry).
    if (h.metadata and not folder) or ((version > 2 or not folder) and h.version != _streams_version(
            h.mode, streams, shared.codec_version, h.steps, h.width, h.height)):
        raise FormatError(f"{name}: an array member with metadata, or .ardm format version {h.version} where "
                          "its streams give another")
    meta = _pack_metadata(h.metadata) if folder and (h.metadata or version == 2) else b""
    body = meta + b"".join(streams)
    info = MemberInfo(name, 0, len(body) + MEMBER_CRC_BYTES, h.mode, h.width, h.height, tuple(map(len, streams)),
                      len(meta), h.version if folder and version == 2 else 0)
    entry = _pack_entry(shared.kind, info, version)
    return body + _member_crc(entry + body, h.pixel_crc, h.width, h.height).to_bytes(4, "little"), entry, info


def _pack_entry(kind: str, m: MemberInfo, version: int = VERSION) -> bytes:
    """A member's index entry (what ``_read_entry`` reads)."""
    lengths = b"".join(_varint(n) for n in m.streams)
    if kind != "images":
        return lengths
    raw = m.name.encode("utf-8")
    head = _varint(len(raw)) + raw
    if version == 2:
        return head + bytes((container.MODES.index(m.mode),)) + _varint(m.width) + _varint(m.height) \
            + bytes((m.codec_version,)) + _varint(m.meta_size) + _varint(len(m.streams)) + lengths
    code = container.MODES.index(m.mode) | (HAS_METADATA if m.meta_size else 0)
    return head + bytes((code,)) + _varint(m.width) + _varint(m.height) \
        + (_varint(m.meta_size) if m.meta_size else b"") + lengths


_POLY = 0xEDB88320                  # CRC32's polynomial, bit-reflected as zlib uses it


def _mulmod(a: int, b: int) -> int:
    """a(x) * b(x) modulo CRC32's polynomial (reflected bit order), as zlib's multmodp."""
    p, m = 0, 1 << 31
    while m:
        if a & m:
            p ^= b
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


def _carry(crc: int, n: int) -> int:
    """``crc`` carried over ``n`` zero bytes: x^(8n) * crc(x), by squaring (O(log n) even for a
    hostile size), so that crc32(A + B) == _carry(crc32(A), len(B)) ^ crc32(B)."""
    power, x2k = 1 << 31, 1 << 23          # x^0; x^8 (one byte)
    while n:
        if n & 1:
            power = _mulmod(x2k, power)
        n >>= 1
        x2k = _mulmod(x2k, x2k)
    return _mulmod(power, crc)


def _member_crc(body: bytes | memoryview, crc: int, width: int, height: int) -> int:
    """A member's CRC from its bytes and its pixel CRC, and the pixel CRC from the member CRC.

    The CRC32 of ``body`` (the member's index entry, then its bytes) is carried over 8·W·H
    zero bytes (at least the pixels' length) and XORed with the pixel CRC: CRC32 is affine, so
    this is the CRC32 of the body followed by the pixels (zero-padded in between), with
    CRC32's guarantees over both; a plain XOR of the two CRCs would let a flip in a stored
    plane cancel the same flip in the pixels."""
    return crc ^ _carry(zlib.crc32(body), 8 * width * height)


def _read_entry(cur: "_Cursor", shared: Shared, version: int, name: str, mode: str, width: int,
                height: int) -> MemberInfo:
    """One member's index entry (the array's ``name``, ``mode`` and size for array kinds);
    offset 0. FormatError if it is malformed."""
    meta_size = codec_version = 0
    if shared.kind == "images":
        name = cur.text()
        if problem := name_problem(name):
            raise cur.fail(f"unsafe member name {name!r} ({problem})")
        code, width, height = cur.byte(), cur.varint(), cur.varint()
        if version == 2:
            codec_version, meta_size, count = cur.byte(), cur.varint(), cur.varint()
            bad = not container.OLDEST_VERSION <= codec_version <= container.FORMAT_VERSION
        else:
            meta_size = cur.varint() if code & HAS_METADATA else 0
            bad, code = bool(code & HAS_METADATA and not meta_size), code & ~HAS_METADATA
        if code >= len(container.MODES) or not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or bad:
            raise cur.fail(f"bad image for member {name!r}")
        mode = container.MODES[code]
        if version == 2 and count != stream_count(mode):
            raise cur.fail(f"bad stream count for member {name!r}")
    streams = tuple(cur.varint() for _ in range(stream_count(mode)))
    return MemberInfo(name, 0, meta_size + sum(streams) + MEMBER_CRC_BYTES, mode, width, height, streams,
                      meta_size, codec_version)


def _check_shared(shared: Shared) -> None:
    """The header's values (after its CRC held)."""
    if shared.codec_version > container.FORMAT_VERSION:
        raise FormatError(f"archive made by a newer ardmzip (its members use .ardm format version "
                          f"{shared.codec_version})")
    if not 1 <= shared.steps < 2**32 or shared.codec_version < container.OLDEST_VERSION:
        raise FormatError("corrupt archive: header: bad steps or format version")


def _read_shared(f: BinaryIO, size: int) -> tuple[Shared, int]:
    """A version 3 archive's header and where it ends; read in growing pieces (it has no
    length), its values not yet judged (``_check_shared``, once the footer's CRC held)."""
    want = 1 << 12
    while True:
        f.seek(0)
        raw = f.read(min(want, size))
        cur = _Cursor(raw, "header")
        try:
            cur.take(len(HEADER))
            flags = cur.byte()
            if flags & KIND_MASK >= len(KINDS):
                raise cur.fail("unknown archive kind")
            kind = KINDS[flags & KIND_MASK]
            arrays = _read_shapes(cur, kind, size)
            name = cur.text(1, container.MAX_NAME_BYTES)
            model_hash = bytes(cur.take(container.HASH_BYTES))
            steps, seed = cur.varint(), cur.varint()
            model_size = cur.varint() if flags & CARRIED else 0
        except _Short:
            if len(raw) >= size:
                raise FormatError("truncated archive (header)") from None
            want <<= 4
            continue
        if flags & CARRIED and not model_size:
            raise cur.fail("a carried model of 0 bytes")
        return Shared(kind, bool(flags & DEFLATED), arrays, name, model_hash, steps, seed, flags >> CODEC_SHIFT,
                      model_size), cur.pos


def _pack_model(data: bytes) -> bytes:
    """A model file as a version 4 archive carries it: xz (lzma, the standard library's;
    186,851 -> 123,012 bytes for cifar10-s48: its int8 weights and zip headers compress).
    Deterministic, so a resumed archive's header matches the one it started with."""
    return lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)


def _unpack_model(stored: bytes) -> bytes:
    """The model file a version 4 archive carries; b"" (a hash mismatch for the caller) when the
    bytes are not one complete xz stream of at most MAX_CARRIED_MODEL bytes."""
    inflate = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        data = inflate.decompress(stored, max_length=MAX_CARRIED_MODEL)
    except lzma.LZMAError:
        return b""
    return data if inflate.eof and not inflate.unused_data else b""


def _read_members(cur: "_Cursor", shared: Shared, version: int, start: int, end: int,
                  count: int | None) -> list[MemberInfo]:
    """The members the index at ``cur`` lists, tiling the file from ``start`` to ``end`` (the
    index); ``count`` members (None: a folder's, as many as the index holds), checked against
    the bytes present before anything is built from it."""
    room = min((len(cur.data) - cur.pos) // MIN_ENTRY_BYTES[version][shared.kind], (end - start) // MEMBER_CRC_BYTES)
    if count is not None and count > room:
        raise FormatError(f"corrupt archive: {count} members cannot fit in the index and members present")
    if shared.kind != "images" and sum(a.count for a in shared.arrays) != count:
        raise cur.fail("the arrays' images do not add up to the member count")
    slots: Iterable[tuple[str, str, int, int]] = (
        (name, a.mode, a.shape[2], a.shape[1]) for a in shared.arrays for name in a.member_names())
    if shared.kind == "images":
        slots = itertools.repeat(("", "L", 1, 1), count) if count is not None else _until_end(cur, ("", "L", 1, 1))
    members: list[MemberInfo] = []
    pos = start
    for slot in slots:
        m = _read_entry(cur, shared, version, *slot)
        if pos + m.size > end:
            raise cur.fail(f"member {m.name!r} is not where the index says")
        members.append(dataclasses.replace(m, offset=pos))
        pos += m.size
    if cur.pos != len(cur.data) or pos != end:
        raise cur.fail("members and index do not tile the file")
    if len({m.name for m in members}) != len(members):
        raise cur.fail("duplicate member names")
    return members


def _until_end(cur: "_Cursor", item: Any) -> Iterator[Any]:
    while cur.pos < len(cur.data):
        yield item


_INCOMPLETE = ("(truncated, or an unfinished .partial; an interrupted write continues with --resume)")


def _read_index_v3(f: BinaryIO, size: int, version: int = 3) -> ArchiveIndex:
    """Formats 3 and 4 (the same but for how a carried model is stored)."""
    shared, header_end = _read_shared(f, size)
    members_start = header_end + shared.model_size
    if size < members_start + FOOTER_SIZE + 1:
        raise FormatError(f"incomplete archive: no footer {_INCOMPLETE}")
    tail_start = max(members_start, size - FOOTER_SIZE - 10)
    f.seek(tail_start)
    tail = f.read(size - tail_start)
    cur = _Cursor(tail[-FOOTER_SIZE - 1::-1], "footer")             # the index length, read backwards
    try:
        length = cur.varint()
    except FormatError:
        raise FormatError(f"incomplete archive: no footer {_INCOMPLETE}") from None
    index_offset = size - FOOTER_SIZE - cur.pos - length
    if index_offset < members_start:
        raise FormatError(f"incomplete archive: no footer {_INCOMPLETE}")
    f.seek(0)
    header = f.read(header_end)
    f.seek(index_offset)
    raw = f.read(size - index_offset)
    if zlib.crc32(raw[:-FOOTER_SIZE], zlib.crc32(header)) != int.from_bytes(raw[-FOOTER_SIZE:], "little"):
        raise FormatError(f"corrupt archive: header or index checksum mismatch {_INCOMPLETE}")
    _check_shared(shared)
    count = None if shared.kind == "images" else sum(a.count for a in shared.arrays)
    members = _read_members(_Cursor(raw[:length], "index"), shared, version, members_start, index_offset, count)
    return ArchiveIndex(shared.kind, shared.deflated, shared.arrays, tuple(members), size, index_offset, version,
                        shared, header_end)


def _check_header(head: bytes) -> None:
    if not head:
        raise FormatError("not an ardmzip archive (empty file)")
    if head[:len(MAGIC)] != MAGIC[:len(head)]:
        if head.startswith(container.MAGIC):
            raise FormatError("a single-image .ardm file, not an archive (see ardmzip info)")
        raise FormatError("not an ardmzip archive")
    if len(head) < len(HEADER):
        raise FormatError("truncated archive")
    if head[4] > VERSION:
        raise FormatError(f"archive made by a newer ardmzip (archive version {head[4]})")
    if head[4] not in VERSIONS:
        raise FormatError(f"corrupt archive: unknown archive version {head[4]}")


def _read_shapes(cur: _Cursor, kind: str, size: int) -> tuple[ArraySpec, ...]:
    """Version 3's arrays (``_pack_shapes``), checked as ``_read_arrays`` checks them; ``size``,
    the file's, bounds the count."""
    if kind == "images":
        return ()
    n_arrays = 1 if kind == "npy" else cur.varint()
    if n_arrays > min(MAX_ARRAYS, size // MIN_SHAPE_BYTES):
        raise cur.fail("bad array count")
    arrays = []
    for _ in range(n_arrays):
        key = (cur.text(low=0) or USUAL_KEY) if kind == "npz" else ""
        n, h, w, c = (cur.varint() for _ in range(4))
        arrays.append(_array(cur, kind, key, (n, h, w, c) if c else (n, h, w)))
    return tuple(_distinct(cur, arrays))


def _array(cur: _Cursor, kind: str, key: str, shape: tuple[int, ...]) -> ArraySpec:
    """One array as an index or header gives it, its key and shape checked."""
    if kind == "npz" and (problem := name_problem(key)):
        raise cur.fail(f"unsafe array key {key!r} ({problem})")
    if (len(shape) == 4 and not 1 <= shape[3] <= 4) or max(shape[1:3]) > MAX_SIDE or \
            (shape[0] and not (shape[1] and shape[2])):
        raise cur.fail("bad array shape")
    return ArraySpec(key, shape)


def _distinct(cur: _Cursor, arrays: list[ArraySpec]) -> list[ArraySpec]:
    if len({a.key for a in arrays}) != len(arrays):
        raise cur.fail("duplicate array keys")
    return arrays


def _read_index(f: BinaryIO, size: int) -> ArchiveIndex:
    f.seek(0)
    head = f.read(len(HEADER))
    _check_header(head)
    if head[4] >= 3:
        return _read_index_v3(f, size, head[4])
    return {1: _read_index_v1, 2: _read_index_v2}[head[4]](f, size)


@contextlib.contextmanager
def _open_archive(path: str | os.PathLike) -> Iterator[tuple[BinaryIO, int]]:
    name = os.fsdecode(path)
    try:
        f = open(name, "rb")
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name} is a directory") from None
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or e}") from None
    with f:
        yield f, os.fstat(f.fileno()).st_size


def is_archive(path: str | os.PathLike) -> bool:
    """True if ``path`` is a readable file that starts like an archive (b"ARDS")."""
    try:
        with open(os.fsdecode(path), "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_index(path: str | os.PathLike) -> ArchiveIndex:
    """The archive's index (reads the header, footer and index only)."""
    with _open_archive(path) as (f, size):
        return _read_index(f, size)


def list_archive(path: str | os.PathLike) -> list[MemberInfo]:
    """The members of an archive, in order, from its index alone."""
    return list(read_index(path).members)


def archive_info(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of an archive for ``ardmzip info``: the index, plus the model, steps and seed
    (version 1: from the first member's header, the only member bytes read)."""
    with _open_archive(path) as (f, size):
        index = _read_index(f, size)
        first = index.shared
        if first is None and index.members:
            try:
                first = container.peek_header(_read_blob(f, index, index.members[0]))
            except FormatError:
                pass                                    # damaged: `ardmzip test` will say
    return {
        "archive": True, "version": index.version, "kind": index.kind, "images": len(index.members),
        "bytes": index.size, "member_bytes": index.member_bytes, "stream_bytes": index.stream_bytes,
        "overhead_bytes": index.overhead_bytes, "overhead_per_image": index.overhead_per_image,
        "subpixels": index.subpixels, "bpsp": index.bpsp,
        "arrays": [{"key": a.key, "shape": list(a.shape), "dtype": "uint8"} for a in index.arrays],
        "model": first.model_name if first else None, "model_hash": first.model_hash.hex() if first else None,
        "model_carried_bytes": index.model_bytes, "model_source": _model_source(index) if first else None,
        "steps": first.steps if first else None, "seed": first.seed if first else None,
    }


def _model_source(index: ArchiveIndex) -> str:
    """How the archive's model is found: "carried (N bytes[, xz])" in the archive, or "registered"."""
    if not index.model_bytes:
        return "registered"
    return f"carried ({index.model_bytes} bytes{', xz' if index.version >= 4 else ''})"


def _carried_model(f: BinaryIO, index: ArchiveIndex) -> tuple[str, bytes] | None:
    """The carried model as (name, file bytes), checked against the model hash and known to
    this process from now on (weights.remember); None when the archive names a registered one."""
    if not index.model_bytes:
        return None
    shared = index.shared
    f.seek(index.model_offset)
    data = f.read(shared.model_size)
    data = data if len(data) == shared.model_size else b""
    if index.version >= 4 and data:
        data = _unpack_model(data)
    if hashlib.sha256(data).digest()[:container.HASH_BYTES] != shared.model_hash:
        raise FormatError(f"corrupt archive: the carried model {shared.model_name!r} does not match its hash "
                          f"({shared.model_hash.hex()})")
    weights.remember(data, shared.model_name)
    return shared.model_name, data


def _workers_model(f: BinaryIO, index: ArchiveIndex) -> tuple[str, bytes] | None:
    """The model decode jobs take along to worker processes (-j, Ray), as (name, file bytes):
    a carried one, or an unregistered model the archive names that this process was given
    (``--model FILE``, ``weights.load(path)``); None for a registered model (or one this process
    lacks too: each member then fails naming it, as without workers)."""
    carried = _carried_model(f, index)
    if carried is not None:
        return carried
    named = index.shared
    if named is None and index.members:                # format 1: the first member's header
        with contextlib.suppress(FormatError):
            named = container.peek_header(_read_blob(f, index, index.members[0]))
    registered = weights.REGISTRY.get(named.model_name) if named else None
    if named is None or (registered and bytes.fromhex(registered[1])[:container.HASH_BYTES] == named.model_hash):
        return None                                     # every ardmzip has it (not loaded here for nothing)
    try:
        model = weights.find_by_hash(named.model_name, named.model_hash)
    except ModelMismatch:
        return None
    return None if weights.registered_name(model.sha256) else (model.name, model.data)


def _read_blob(f: BinaryIO, index: ArchiveIndex, m: MemberInfo) -> bytes:
    """Member ``m`` as the single .ardm file it was coded as (versions 2-4: rebuilt from the
    archive's header, its index entry and its bytes)."""
    return _member_ardm(f, index, m) if index.version >= 2 else _read_blob_v1(f, m)


def _member_ardm(f: BinaryIO, index: ArchiveIndex, m: MemberInfo) -> bytes:
    shared = index.shared
    f.seek(m.offset)
    data = f.read(m.size)
    if len(data) != m.size:
        raise FormatError("truncated archive member")
    body = memoryview(data)[:-MEMBER_CRC_BYTES]
    # What is left of the member CRC is the pixel CRC the .ardm header holds, so any damage to
    # the bytes shows as decoded pixels that do not match.
    crc_of_pixels = _member_crc(_pack_entry(shared.kind, m, index.version) + bytes(body),
                                int.from_bytes(data[-MEMBER_CRC_BYTES:], "little"), m.width, m.height)
    metadata: list[tuple[str, bytes]] = []
    cur = _Cursor(bytes(body[:m.meta_size]), f"member {m.name!r}")
    if m.meta_size or (shared.kind == "images" and index.version == 2):    # format 2: a count, maybe 0
        count = cur.count(container.MAX_METADATA, "metadata entries")
        if not count and index.version > 2:
            raise cur.fail("empty metadata")
        for _ in range(count):
            key, value = cur.blob(container.MAX_KEY_BYTES), cur.blob()
            metadata.append((key.decode("utf-8", "surrogateescape"), value))
        if cur.pos != m.meta_size:
            raise cur.fail("metadata length mismatch")
    streams, pos = [], m.meta_size
    for n in m.streams:
        streams.append(bytes(body[pos:pos + n]))
        pos += n
    version = m.codec_version or _streams_version(m.mode, streams, shared.codec_version, shared.steps, m.width,
                                                  m.height)
    try:
        header = container.Header(shared.model_name, shared.model_hash, m.mode, m.width, m.height, shared.steps,
                                  shared.seed, crc_of_pixels, tuple(metadata), version)
    except ValueError as e:
        raise cur.fail(str(e)) from None
    return container.pack(header, streams)


def _check_member(m: MemberInfo, picture: Picture) -> Picture:
    if picture.mode != m.mode or picture.pixels.shape[:2] != (m.height, m.width):
        raise FormatError("corrupt archive: member does not match its index entry")
    return picture


def _decode(f: BinaryIO, index: ArchiveIndex, m: MemberInfo, device: str, max_pixels: int,
            progress: bool | PictureBar = False) -> Picture:
    container.check_pixels(m.width, m.height, max_pixels, f"member {m.name!r}")     # before reading it
    _carried_model(f, index)
    blob = _read_blob(f, index, m)
    with for_picture(progress, m.name, lambda: decoded_planes(blob)) as bar:
        return _check_member(m, decompress_picture(blob, device, bar, max_pixels=max_pixels))


def _decompress_job(blobs: list[bytes], device: str, max_pixels: int, model: tuple[str, bytes] | None = None) -> list:
    """Decode a batch of .ardm files; ``model``: the archive's model (name, file bytes) where
    a worker may not have it (``_workers_model``)."""
    if model is not None:
        weights.remember(model[1], model[0])
    return decompress_pictures(blobs, device, max_pixels=max_pixels)


def _decoded(f: BinaryIO, index: ArchiveIndex, device: str, jobs: int = 1,
             max_pixels: int = container.MAX_PIXELS) -> Iterator[tuple[MemberInfo, Any]]:
    """(member, Picture or the exception it raised) for each of ``index``'s members, in order;
    members of one size share network calls (same pixels as decoding each alone). With jobs >
    1 worker processes decode batches in parallel, at most 2 * jobs batches ahead (a model that
    is carried, or not registered and given to this process, travels with each batch, the same
    bytes object: Ray puts it in its object store once). A member over ``max_pixels`` (its
    index entry, then its header) fails with LimitError before its bytes are decoded."""
    model = _workers_model(f, index)
    def read(batch: list[MemberInfo]) -> tuple[list[bytes], dict[int, BaseException]]:
        blobs, errors = [], {}
        for i, m in enumerate(batch):
            try:
                container.check_pixels(m.width, m.height, max_pixels, f"member {m.name!r}")
                blobs.append(_read_blob(f, index, m))
            except Exception as e:  # noqa: BLE001 - reported per member, the others go on
                errors[i] = e
        return blobs, errors

    def results(batch: list[MemberInfo], errors: dict[int, BaseException], decoded: list) -> Iterator:
        it = iter(decoded)
        for i, m in enumerate(batch):
            result = errors[i] if i in errors else next(it)
            if isinstance(result, Picture):
                try:
                    result = _check_member(m, result)
                except FormatError as e:
                    result = e
            yield m, result

    def tasks() -> Iterator[tuple[Any, tuple]]:
        for batch in _batches(index.members, lambda m: m.subpixels, device):
            blobs, errors = read(batch)
            yield (batch, errors), (blobs, device, max_pixels, model)

    for (batch, errors), decoded in _ordered_map(_decompress_job, tasks(), jobs):
        yield from results(batch, errors, decoded)


def extract_member(path: str | os.PathLike, name: str, device: str = "cpu", *,
                   max_pixels: int = container.MAX_PIXELS, progress: bool | PictureBar = False) -> Picture:
    """Decode one member (only its bytes are read); its pixels are CRC-checked. LimitError if
    it is over ``max_pixels`` pixels (0: no limit). ``progress``: a bar over its steps."""
    with _open_archive(path) as (f, size):
        index = _read_index(f, size)
        return _decode(f, index, index.member(name), device, max_pixels, progress)


def _progress_bar(total: int, progress: bool, desc: str):
    """Images done of ``total``, on stderr when ``progress``."""
    return progress_bar(total, desc, "img", progress)


def _report(results: list, on_member: OnRead | None, name: str, error: BaseException | None) -> None:
    """Record one member's outcome and tell the caller (damaged members do not stop the others)."""
    results.append((name, error))
    if on_member:
        on_member(name, error)


def test_archive(path: str | os.PathLike, device: str = "cpu", progress: bool = False,
                 on_member: OnRead | None = None, jobs: Jobs = 1, *,
                 max_pixels: int = container.MAX_PIXELS) -> list[tuple[str, BaseException | None]]:
    """Decode and check every member, writing nothing: [(name, error or None)]; ``jobs``
    worker processes decode in parallel; a member over ``max_pixels`` fails with LimitError."""
    results: list[tuple[str, BaseException | None]] = []
    with _open_archive(path) as (f, size):
        index = _read_index(f, size)
        with _progress_bar(len(index.members), progress, "test") as bar:
            for m, result in _decoded(f, index, device, jobs, max_pixels):
                _report(results, on_member, m.name, result if isinstance(result, BaseException) else None)
                bar.update(1)
    return results


test_archive.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def png_names(names: Sequence[str]) -> dict[str, str]:
    """Member name -> PNG file name for extraction to a folder: "a/b.bmp" -> "a/b.png",
    "arr_0/000001" -> "arr_0/000001.png"; a name two members would share gets the full
    member name plus ".png" instead."""
    out: dict[str, str] = {}
    used = {n for n in names if n.lower().endswith(".png")}
    for n in names:
        if n.lower().endswith(".png"):
            out[n] = n
            continue
        p = PurePosixPath(n)
        candidate = str(p.with_suffix(".png")) if p.suffix.lower() in IMAGE_SUFFIXES else n + ".png"
        if candidate in used:
            candidate = n + ".png"
        i = 1
        while candidate in used:
            candidate, i = f"{n}.{i}.png", i + 1
        used.add(candidate)
        out[n] = candidate
    return out


def _announce(arrays: Sequence[ArraySpec], steps: int, device: str, jobs: Jobs) -> None:
    """Arrays' whole work up front (jit.expect: images x pixels x steps), where this process
    codes them on the CPU: a dataset of ~130 thumbnails or more starts the compiled kernels
    before its first batch, not once ~130 of them are done."""
    if jobs == 1 and codec.resolve_device(device).type == "cpu":
        jit.expect(steps * sum(a.count * a.image_shape[0] * a.image_shape[1] for a in arrays))


def extract_all(path: str | os.PathLike, output: str | os.PathLike, force: bool = False, device: str = "cpu",
                progress: bool = False, on_member: OnRead | None = None,
                jobs: Jobs = 1, *, max_pixels: int = container.MAX_PIXELS,
                follow_symlinks: bool = False, png_level: int = PNG_LEVEL) -> list[tuple[str, BaseException | None]]:
    """Extract every member: to a folder of PNGs mirroring the names, or, for an array
    archive and an ``output`` ending in .npz/.npy, to that array file, bit-exact.

    A damaged member is reported (in the result and to ``on_member``) and the others
    are still extracted: its PNG is not written, its image in an array file is zeros.
    Existing outputs are not replaced unless ``force`` (checked before any decoding).
    ``jobs`` worker processes decode in parallel (same pixels). Files land inside
    ``output`` only, and not through a symbolic link to a folder unless ``follow_symlinks``;
    a member over ``max_pixels`` pixels (0: no limit) fails with LimitError (an array file
    with images that large is refused before anything is written). PNGs are written at zlib
    level ``png_level`` (0 .. 9).
    """
    check_png_level(png_level)
    out = os.fsdecode(output)
    with _open_archive(path) as (f, size):
        index = _read_index(f, size)
        if out.lower().endswith(ARRAY_SUFFIXES):
            want = out.lower()[-3:]
            if index.kind != want:
                what = "image files" if index.kind == "images" else f"a .{index.kind}"
                where = "a folder" if index.kind == "images" else f"a folder or a .{index.kind}"
                raise InputError(f"the archive was made from {what}: extract it to {where}, not a .{want}")
            for a in index.arrays:           # a failed member is zero-filled, so none may be a bomb
                if a.count:
                    container.check_pixels(a.shape[2], a.shape[1], max_pixels, f"array {a.key or 'data'!r}: each image")
            if index.shared is not None:
                _announce(index.arrays, index.shared.steps, device, jobs)
            return _extract_arrays(f, index, out, force, device, progress, on_member, jobs, max_pixels)
        return _extract_folder(f, index, out, force, device, progress, on_member, jobs, max_pixels, follow_symlinks,
                               png_level)


def _extract_folder(f: BinaryIO, index: ArchiveIndex, out: str, force: bool, device: str, progress: bool,
                    on_member: OnRead | None, jobs: int, max_pixels: int,
                    follow_symlinks: bool, png_level: int) -> list[tuple[str, BaseException | None]]:
    from .imageio import picture_to_png, write_file_under
    if os.path.lexists(out) and not os.path.isdir(out):
        raise OutputError(f"{out} exists and is not a folder")
    names = png_names([m.name for m in index.members])
    targets = {m.name: os.path.join(out, *names[m.name].split("/")) for m in index.members}
    if not force:
        existing = [t for t in targets.values() if os.path.lexists(t)]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise OutputError(f"{existing[0]} exists{more}; use -f to overwrite")
    results: list[tuple[str, BaseException | None]] = []
    with _progress_bar(len(index.members), progress, "extract") as bar:
        for m, result in _decoded(f, index, device, jobs, max_pixels):
            error: BaseException | None = None
            try:
                if isinstance(result, BaseException):
                    raise result
                write_file_under(out, names[m.name], picture_to_png(result, png_level), force, follow_symlinks)
            except Exception as e:  # noqa: BLE001 - reported per member, the others go on
                error = e
            _report(results, on_member, m.name, error)
            bar.update(1)
    return results


def _extract_arrays(f: BinaryIO, index: ArchiveIndex, out: str, force: bool, device: str, progress: bool,
                    on_member: OnRead | None, jobs: int, max_pixels: int) -> list[tuple[str, BaseException | None]]:
    if not force and os.path.lexists(out):
        raise OutputError(f"{out} exists; use -f to overwrite")
    results: list[tuple[str, BaseException | None]] = []
    members = _decoded(f, index, device, jobs, max_pixels)

    def write_array(fp: BinaryIO, spec: ArraySpec, bar) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(_U1), "fortran_order": False, "shape": spec.shape}
        np.lib.format.write_array_header_1_0(fp, header)
        for _ in range(spec.count):
            m, result = next(members)
            error: BaseException | None = None
            try:
                if isinstance(result, BaseException):
                    raise result
                pixels = result.pixels
                if pixels.size != spec.image_bytes:
                    raise FormatError("corrupt archive: member does not match its array shape")
                data = pixels.tobytes()
            except Exception as e:  # noqa: BLE001 - reported per member, the others go on
                error, data = e, bytes(spec.image_bytes)
            fp.write(data)
            _report(results, on_member, m.name, error)
            bar.update(1)

    with _atomic_output(out, force) as tmp, _progress_bar(len(index.members), progress, "extract") as bar:
        if index.kind == "npy":
            with open(tmp, "wb") as fp:
                write_array(fp, index.arrays[0], bar)
                fp.flush()
                os.fsync(fp.fileno())
        else:
            compression = zipfile.ZIP_DEFLATED if index.deflated else zipfile.ZIP_STORED
            with zipfile.ZipFile(tmp, "w", compression=compression, allowZip64=True) as zf:
                for spec in index.arrays:
                    with zf.open(spec.key + ".npy", "w", force_zip64=True) as fp:
                        write_array(fp, spec, bar)
            with open(tmp, "rb+") as fp:
                os.fsync(fp.fileno())
    return results


@contextlib.contextmanager
def _atomic_output(path: str, force: bool) -> Iterator[str]:
    """A temp file name beside ``path``, renamed onto it when the block succeeds."""
    directory = os.path.dirname(path) or os.curdir
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ardmzip-", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    try:
        yield tmp
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        commit_file(tmp, path, force)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class _ModelChoice:
    """The model an archive is written with: the model, what compress jobs are given (a
    registered name, or (name, model file bytes)), and the bytes the archive carries (b"": none)."""
    model: Any
    job_arg: str | tuple[str, bytes]
    carried: bytes


def _choose_model(model: str | os.PathLike | None, carry_model: bool, src: _Source) -> _ModelChoice:
    """A registered model is named (carried only with ``carry_model``); a model file that is
    not registered is always carried, so the archive decodes anywhere. None or "auto": the
    candidate estimated to code a sample of the source's pictures smallest (choose.py)."""
    if model is None or model == choose.AUTO:       # one candidate: nothing to sample
        m = codec.auto_model(src.sample(choose.ARCHIVE_SAMPLE) if choose.only_candidate() is None else [])
    else:
        m = weights.load(model)
    registered = weights.registered_name(m.sha256)
    if registered is not None:
        return _ModelChoice(m, registered, m.data if carry_model else b"")
    return _ModelChoice(m, (m.name, m.data), m.data)


def _resume(f: BinaryIO, journal: BinaryIO, prelude: bytes, shared: Shared,
            pictures: Iterator[tuple[str, Picture]]) -> tuple[list[tuple[bytes, MemberInfo]], Iterator]:
    """The finished members at the start of a .partial that still match the source, as
    (index entry, member), and the source's pictures after them.

    A member is kept when its journal entry parses and names the source picture (name, mode,
    size), its metadata is the picture's, and its CRC holds with the picture's pixels; the
    first that fails ends the scan (the writer fsyncs member by member, so only the last can
    be torn). Another header (model, steps, seed, source kind or arrays) keeps nothing."""
    f.seek(0)
    if f.read(len(prelude)) != prelude:
        return [], pictures
    journal.seek(0)
    cur = _Cursor(journal.read(), "journal")
    kept: list[tuple[bytes, MemberInfo]] = []
    pos = len(prelude)
    for item in pictures:
        name, picture = item
        height, width = picture.pixels.shape[:2]
        start = cur.pos
        try:
            m = _read_entry(cur, shared, VERSION, name, picture.mode, width, height)
        except FormatError:
            return kept, itertools.chain([item], pictures)
        entry = bytes(cur.data[start:cur.pos])
        if not _finished(f, pos, entry, m, shared, name, picture):
            return kept, itertools.chain([item], pictures)
        kept.append((entry, dataclasses.replace(m, offset=pos)))
        pos += m.size
    return kept, pictures


def _finished(f: BinaryIO, pos: int, entry: bytes, m: MemberInfo, shared: Shared, name: str,
              picture: Picture) -> bool:
    """Whether the member at ``pos`` with index ``entry`` is ``picture``'s, whole and undamaged."""
    height, width = picture.pixels.shape[:2]
    if (m.name, m.mode, m.width, m.height) != (name, picture.mode, width, height):
        return False
    f.seek(pos)
    data = f.read(m.size)
    metadata = _pack_metadata(picture.metadata) if shared.kind == "images" and picture.metadata else b""
    if len(data) != m.size or data[:m.meta_size] != metadata:
        return False
    want = _member_crc(entry + data[:-MEMBER_CRC_BYTES], pixel_crc(picture.pixels), width, height)
    return int.from_bytes(data[-MEMBER_CRC_BYTES:], "little") == want


def _compress_job(pictures: list[Picture], steps: int, model: str | tuple[str, bytes] | None, seed: int,
                  device: str, max_pixels: int) -> list[bytes]:
    """One .ardm file per picture (the writer cuts each into a member); ``model``: a registered
    name, or (name, model file bytes) for a model the archive carries."""
    if isinstance(model, tuple):
        model = weights.remember(model[1], model[0])
    return compress_pictures(pictures, steps, model, seed, device, max_pixels=max_pixels)


def _compressed(items: Iterable[tuple[str, Picture]], jobs: int, steps: int, model: Any, seed: int,
                device: str, max_pixels: int) -> Iterator[tuple[str, bytes]]:
    """(name, .ardm bytes) in input order, batch by batch (identical to coding each alone);
    one process reads ahead in a thread, worker processes (jobs > 1) work ahead in a pool."""
    serial = not callable(jobs) and jobs <= 1           # else workers (or a cluster) work ahead

    def tasks() -> Iterator[tuple[Any, tuple]]:
        for batch in _batches(_read_ahead(items) if serial else items, lambda item: item[1].pixels.size, device):
            yield [n for n, _ in batch], ([p for _, p in batch], steps, model, seed, device, max_pixels)

    for names, blobs in _ordered_map(_compress_job, tasks(), jobs):
        yield from zip(names, blobs)


def write_archive(source: str | os.PathLike, out_path: str | os.PathLike, steps: int | None = None, *,
                  resume: bool = False, force: bool = False, model: str | os.PathLike | None = None, seed: int = 0,
                  device: str = "cpu", jobs: Jobs = 1, progress: bool = False,
                  on_member: OnWrite | None = None, max_pixels: int = container.MAX_PIXELS,
                  carry_model: bool = False) -> WriteResult:
    """Compress a folder of images or a .npz/.npy of uint8 image arrays into one archive.

    ``model``: a registered model's name (default weights.DEFAULT_MODEL), or the path of a
    model file, which the archive then carries (``carry_model`` carries a registered one too).
    Members go to ``out_path + ".partial"``, fsynced one by one with their index entries
    in ``out_path + ".partial-index"``; the finished archive is renamed to ``out_path`` (an
    existing one is replaced only with ``force``).  An existing .partial is an error unless
    ``resume`` (continue it) or ``force`` (start over).  ``on_member(member, resumed)`` is
    called for every member in order, with ``resumed`` True for those kept from an earlier
    run.  ``jobs`` > 1 compresses in that many worker processes (same bytes).  If a member
    fails, the exception propagates and the .partial keeps the finished members (it has
    ``archive_partial`` set to its path); a write that fails (a full disk, a file size
    limit) is an OutputError, the .partial cut back to its last finished member.  A picture
    over ``max_pixels`` (0: no limit) is a LimitError (for arrays, before anything is written).
    """
    t0 = time.perf_counter()
    steps = check_steps(steps)
    out = os.fsdecode(out_path)
    partial, journal_path = out + PARTIAL_SUFFIX, out + JOURNAL_SUFFIX
    if os.path.isdir(out):
        raise OutputError(f"{out} is a folder")
    if not force and os.path.lexists(out):
        raise OutputError(f"{out} exists; use -f to overwrite")
    src = _open_source(source, max_pixels)
    _announce(src.arrays, steps, device, jobs)
    choice = _choose_model(model, carry_model, src)
    stored_model = _pack_model(choice.carried) if choice.carried else b""
    shared = Shared(src.kind, src.deflated, src.arrays, choice.model.name, choice.model.hash8, steps, seed,
                    container.FORMAT_VERSION, len(stored_model))
    try:
        prelude = shared.pack() + stored_model
    except ValueError as e:                      # a model file name that cannot be a model name
        raise InputError(f"model {choice.model.name!r}: {e}") from None
    if os.path.lexists(partial) and not (resume or force):
        raise OutputError(f"{partial} exists (an interrupted run?): use --resume to continue it or -f to start over")
    try:
        fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise OutputError(f"cannot write {partial}: {e.strerror or e}") from None
    # Unbuffered: a write that fails (ENOSPC, EFBIG) fails once, where it is handled, and
    # leaves no buffered bytes for seek() or close() to fail on again.
    with os.fdopen(fd, "r+b", buffering=0) as f:
        _lock(f, partial)
        try:
            _check_partial(f, partial)
            try:
                journal = open(journal_path, "r+b" if os.path.exists(journal_path) else "w+b", buffering=0)
            except OSError as e:
                raise OutputError(f"cannot write {journal_path}: {e.strerror or e}") from None
            with journal:
                result = _write(f, journal, src, shared, prelude, partial, out, resume, force, choice.job_arg, device,
                                jobs, progress, on_member, t0, max_pixels)
            with contextlib.suppress(OSError):
                os.unlink(journal_path)
            return result
        except BaseException as e:
            with contextlib.suppress(OSError):
                f.seek(0)
                ours = MAGIC.startswith(f.read(len(MAGIC)))             # not someone else's file
                if ours and os.fstat(f.fileno()).st_size <= len(prelude):     # no member worth keeping
                    os.unlink(partial)
                    with contextlib.suppress(OSError):
                        os.unlink(journal_path)
                elif ours and isinstance(e, Exception):
                    e.archive_partial = partial  # type: ignore[attr-defined]
            raise


def _check_partial(f: BinaryIO, partial: str) -> None:
    """Refuse to touch a .partial that is not an unfinished archive (someone else's file)."""
    f.seek(0)
    head = f.read(len(MAGIC))
    if not MAGIC.startswith(head):
        raise OutputError(f"{partial} is not an unfinished ardmzip archive; remove it or use -f")


def _lock(f: BinaryIO, partial: str) -> None:
    try:
        import fcntl
    except ImportError:                  # not POSIX: no lock, as with other tools there
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputError(f"{partial} is being written by another ardmzip") from None
    except OSError:
        pass                             # a file system without locks


def _append(f: BinaryIO, data: bytes, end: int, what: str) -> None:
    """Write ``data`` at ``end`` (the end of the finished part) and fsync; on failure cut the
    file back to ``end`` (no torn member) and raise OutputError."""
    try:
        f.seek(end)
        view = memoryview(data)
        while view:
            view = view[f.write(view):]                 # an unbuffered write may be short
        os.fsync(f.fileno())
    except OSError as e:
        with contextlib.suppress(OSError):
            f.truncate(end)
        raise OutputError(f"cannot write {what}: {e.strerror or e}") from None


def _write(f: BinaryIO, journal: BinaryIO, src: _Source, shared: Shared, prelude: bytes, partial: str, out: str,
           resume: bool, force: bool, model: Any, device: str, jobs: int, progress: bool,
           on_member: OnWrite | None, t0: float, max_pixels: int) -> WriteResult:
    pictures = src.pictures()
    kept: list[tuple[bytes, MemberInfo]] = []
    if resume and os.fstat(f.fileno()).st_size:
        kept, pictures = _resume(f, journal, prelude, shared, pictures)
    entries = [entry for entry, _ in kept]
    end = kept[-1][1].offset + kept[-1][1].size if kept else len(prelude)
    journal_end = sum(map(len, entries))
    try:
        for handle, size in ((f, end), (journal, journal_end)):
            handle.truncate(size)
            os.fsync(handle.fileno())
    except OSError as e:
        raise OutputError(f"cannot write {partial}: {e.strerror or e}") from None
    if not kept:
        _append(f, prelude, 0, partial)
    members: list[MemberInfo] = []
    stats = {"bytes": 0, "subpixels": 0}
    with _progress_bar(len(src.names), progress, "compress") as bar:
        def done(m: MemberInfo, resumed: bool) -> None:
            members.append(m)
            stats["bytes"] += m.size
            stats["subpixels"] += m.subpixels
            bar.update(1)
            bar.set_postfix_str(f"{8 * stats['bytes'] / max(1, stats['subpixels']):.3f} bpsp", refresh=False)
            if on_member:
                on_member(m, resumed)

        for _, m in kept:
            done(m, True)
        for name, blob in _compressed(pictures, jobs, shared.steps, model, shared.seed, device, max_pixels):
            record, entry, info = _member_parts(shared, name, blob)
            _append(f, record, end, partial)
            _append(journal, entry, journal_end, partial)      # after its member: a crash cuts both
            entries.append(entry)
            done(dataclasses.replace(info, offset=end), False)
            end += len(record)
            journal_end += len(entry)

    if len(members) != len(src.names):
        raise InputError("the source changed while it was being read")
    header = prelude[:len(prelude) - shared.model_size]
    index = b"".join(entries)
    index += _footer(header, index)
    _append(f, index, end, partial)
    try:
        commit_file(partial, out, force)
    except OSError as e:
        raise OutputError(f"cannot write {out}: {e.strerror or e}") from None
    result_index = ArchiveIndex(src.kind, src.deflated, src.arrays, tuple(members), end + len(index), end, VERSION,
                                shared, len(header))
    return WriteResult(out, result_index, len(kept), len(members) - len(kept), time.perf_counter() - t0)


# Formats 1 and 2 (read, no longer written) are archive_old.py's, which builds on the above.
from .archive_old import (_footer_v1, _footer_v2, _pack_arrays, _pack_index, _read_blob_v1,  # noqa: E402,F401
                          _read_index_v1, _read_index_v2, _record)

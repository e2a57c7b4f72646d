"""Dataset archives: many images in one file, each a complete .ardm, with random access.

    ardmzip.archive.write_archive("photos/", "photos.ardm", steps=32)
    ardmzip.archive.list_archive("photos.ardm")              # reads only the index
    ardmzip.archive.extract_member("photos.ardm", "sub/a.png")
    ardmzip.archive.extract_all("photos.ardm", "out/")       # or "x.npz" for array sources

Sources are a folder of images (walked recursively; member names are the relative POSIX
paths, sorted by code point) or a .npz/.npy file of uint8 image arrays (N, H, W) or
(N, H, W, C), C in 1..4 (members named "KEY/000123" for .npz, "000123" for .npy; the
index keeps each array's key and shape so extraction rebuilds the same arrays, bit-exact).

Byte layout, format version 1.  "varint" is the unsigned LEB128 of container.py; CRCs
are CRC32 (zlib), 4 bytes little-endian::

    header        5 bytes   magic b"ARDS", version 1
    members       one after another, in index order; each is
      record        varint name length (1..4096), name (utf-8), varint blob length,
                    CRC32 of the record bytes before it
      blob          a complete single-image .ardm file (container.pack output), which
                    carries its own header CRC, streams CRC and pixel CRC
    index
      kind          1 byte   0 images from a folder, 1 one .npy array, 2 .npz arrays
      flags         1 byte   bit 0: the .npz entries were deflate-compressed
      array count   varint   (0 for folders); per array: varint key length, key utf-8,
                             ndim (1 byte, 3 or 4), ndim varints N, H, W[, C]; dtype uint8
      member count  varint;  per member: varint name length, name utf-8, varint offset
                             of the blob, varint blob length, mode (1 byte, index into
                             container.MODES), varint width, varint height
      index CRC     4 bytes  CRC32 of the index bytes above
    footer        20 bytes  index offset (8 bytes LE), member count (8 bytes LE), b"ARDS"

So an archive's size is exactly 5 + sum(record + blob) + index + 20; ``ArchiveIndex``
reports the overhead (everything but the blobs) in bytes per image.  Members tile the
file with no gaps, which ``read_index`` checks, so no byte is unaccounted for.

Names: every member name and every .npz key, of every kind, passes ``name_problem`` when
an archive is written and again when it is read: 1..4096 UTF-8 bytes, a relative POSIX
path of plain components (no "", "." or ".."), no backslash, no control character. A .npy
archive's key is "". So extraction never leaves its folder whatever the file says, and it
does not write through a symbolic link to a folder either (``follow_symlinks``; see
``imageio.write_file_under``). Counts are checked against the bytes present before
anything is built from them (an index member takes at least 7 bytes, so 41 bytes cannot
claim 10^12 members), and each picture's size against ``max_pixels`` before decoding.

Writing appends members to ``OUT.partial`` and fsyncs after each one, so a crash loses
at most the member in flight; ``resume=True`` scans the .partial from the start (every
record CRC and every blob's CRCs are checked, a torn or damaged tail is cut off), keeps
the finished members that still match the source (same name, pixels, mode, metadata,
model, steps and seed) and compresses the rest.  Only when every member is in is the
index and footer written and the file renamed to OUT; a .partial has no footer, so it
never passes for a complete archive.  Because coding is deterministic, a resumed
archive is byte-identical to one written in a single run.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import tempfile
import re
import time
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import numpy as np

from . import codec, container
from .codec import DEFAULT_STEPS, check_steps, compress_pictures, decompress_picture, decompress_pictures, pixel_crc
from .errors import FormatError, InputError, OutputError
from .imageio import MODE_CHANNELS, PNG_LEVEL, Picture, check_png_level, commit_file, picture_from_array, read_picture
from .progress import PictureBar, bar as progress_bar, decoded_planes, for_picture

__all__ = [
    "MAGIC", "VERSION", "IMAGE_SUFFIXES", "ARRAY_SUFFIXES", "PARTIAL_SUFFIX", "FOOTER_SIZE",
    "ArraySpec", "MemberInfo", "ArchiveIndex", "WriteResult",
    "is_archive", "write_archive", "read_index", "archive_info", "list_archive", "extract_member", "extract_all",
    "test_archive", "png_names", "name_problem",
]

MAGIC = b"ARDS"
VERSION = 1
HEADER = MAGIC + bytes([VERSION])
FOOTER_SIZE = 20
PARTIAL_SUFFIX = ".partial"
KINDS = ("images", "npy", "npz")
FLAG_DEFLATED = 1
MAX_NAME_BYTES = 4096
MAX_ARRAYS = 1 << 16
MAX_SIDE = 2**31 - 1                # the largest width or height a single .ardm can hold
# Fewest index bytes one member / one array takes (each field at least one byte), so the
# index's size bounds the counts it may claim before anything is built from them.
MIN_MEMBER_BYTES = 7               # name length, name, offset, size, mode, width, height
MIN_ARRAY_BYTES = 5                # key length, ndim, N, H, W
IMAGE_SUFFIXES = {".png", ".bmp", ".dib", ".ppm", ".pgm", ".pbm", ".pnm", ".tif", ".tiff", ".webp", ".gif",
                  ".tga", ".qoi", ".pcx"}
ARRAY_SUFFIXES = (".npz", ".npy")
ARRAY_MODES = ("L", "LA", "RGB", "RGBA")           # channels 1..4 of an array image
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"
_U1 = np.dtype(np.uint8)


# ---------------------------------------------------------------- data types


@dataclass(frozen=True)
class ArraySpec:
    """One source array: its .npz key ("" for a .npy) and shape (N, H, W) or (N, H, W, C)."""
    key: str
    shape: tuple[int, ...]

    @property
    def count(self) -> int:
        return self.shape[0]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def image_bytes(self) -> int:
        return math.prod(self.shape[1:])            # Python ints: a hostile shape cannot wrap

    @property
    def mode(self) -> str:
        return "L" if len(self.shape) == 3 else ARRAY_MODES[self.shape[3] - 1]

    def member_names(self) -> list[str]:
        width = max(6, len(str(max(0, self.count - 1))))
        prefix = f"{self.key}/" if self.key else ""
        return [f"{prefix}{i:0{width}d}" for i in range(self.count)]


@dataclass(frozen=True)
class MemberInfo:
    """One archive member as the index describes it (no member bytes are read)."""
    name: str
    offset: int          # of the .ardm blob in the archive
    size: int            # bytes of the .ardm blob
    mode: str
    width: int
    height: int

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
class ArchiveIndex:
    """What an archive's index holds, plus the archive's size."""
    kind: str                          # "images", "npy" or "npz"
    deflated: bool                     # the .npz entries were deflate-compressed
    arrays: tuple[ArraySpec, ...]
    members: tuple[MemberInfo, ...]
    size: int                          # bytes of the whole archive
    index_offset: int

    @property
    def member_bytes(self) -> int:
        return sum(m.size for m in self.members)

    @property
    def overhead_bytes(self) -> int:
        """Header, member records, index and footer: everything but the .ardm blobs."""
        return self.size - self.member_bytes

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
        """Bits per subpixel of the .ardm members alone (what the progress bar shows)."""
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


def _record(name: str, length: int) -> bytes:
    """The record in front of a member's blob."""
    raw = name.encode("utf-8")
    body = _varint(len(raw)) + raw + _varint(length)
    return body + _crc(body)


class _Cursor(container._Reader):
    """The .ardm reader's bounds checks and varints, with the archive's messages, plus names."""

    def __init__(self, data: bytes, what: str) -> None:
        super().__init__(memoryview(data), f"corrupt archive: {what}", f"corrupt archive: {what}: truncated")

    def text(self, low: int = 1, high: int = MAX_NAME_BYTES) -> str:
        n = self.varint()
        if not low <= n <= high:
            raise self.fail("bad name length")
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("name is not utf-8") from None


CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")    # C0 and C1: NUL, ESC (terminal codes), ...


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an archive member name or .npz array key, or None.

    The one check, for every kind of archive, on writing and on reading: 1..4096 UTF-8
    bytes, a relative POSIX path whose parts are plain names (not "", "." or ".."), no
    backslash (a separator elsewhere) and no control character (NUL, or escape codes a
    terminal would obey when the name is listed)."""
    if not isinstance(name, str):
        return "is not text"
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if not 1 <= len(raw) <= MAX_NAME_BYTES:
        return f"must be 1..{MAX_NAME_BYTES} bytes"
    if CONTROL_CHARACTERS.search(name):
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "is not a plain relative path"
    return None


# ---------------------------------------------------------------- index


def _pack_index(kind: str, deflated: bool, arrays: Sequence[ArraySpec], members: Sequence[MemberInfo]) -> bytes:
    out = bytearray((KINDS.index(kind), FLAG_DEFLATED if deflated else 0))
    out += _varint(len(arrays))
    for a in arrays:
        key = a.key.encode("utf-8")
        out += _varint(len(key)) + key + bytes((len(a.shape),))
        for d in a.shape:
            out += _varint(d)
    out += _varint(len(members))
    for m in members:
        name = m.name.encode("utf-8")
        out += _varint(len(name)) + name + _varint(m.offset) + _varint(m.size)
        out += bytes((container.MODES.index(m.mode),)) + _varint(m.width) + _varint(m.height)
    return bytes(out + _crc(out))


def _footer(index_offset: int, count: int) -> bytes:
    return index_offset.to_bytes(8, "little") + count.to_bytes(8, "little") + MAGIC


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
    if head[4] != VERSION:
        raise FormatError(f"corrupt archive: unknown archive version {head[4]}")


def _read_arrays(cur: _Cursor, kind: str, members: int) -> list[ArraySpec]:
    """The index's arrays, checked: keys (``name_problem``; "" in a .npy archive), shapes, and
    image counts adding up to the footer's ``members`` (so no name is made from a claim)."""
    n_arrays = cur.varint()
    if n_arrays > min(MAX_ARRAYS, len(cur.data) // MIN_ARRAY_BYTES) or (kind == "images" and n_arrays) \
            or (kind == "npy" and n_arrays != 1):
        raise cur.fail("bad array count")
    arrays = []
    for _ in range(n_arrays):
        key = cur.text(0, 0) if kind == "npy" else cur.text()
        if kind == "npz" and (problem := name_problem(key)):
            raise cur.fail(f"unsafe array key {key!r} ({problem})")
        ndim = cur.byte()
        if ndim not in (3, 4):
            raise cur.fail("bad array shape")
        shape = tuple(cur.varint() for _ in range(ndim))
        if (ndim == 4 and not 1 <= shape[3] <= 4) or max(shape[1:3]) > MAX_SIDE or \
                (shape[0] and not (shape[1] and shape[2])):
            raise cur.fail("bad array shape")
        arrays.append(ArraySpec(key, shape))
    if len({a.key for a in arrays}) != len(arrays):
        raise cur.fail("duplicate array keys")
    if kind != "images" and sum(a.count for a in arrays) != members:
        raise cur.fail("the arrays' images do not add up to the member count")
    return arrays


def _read_index(f: BinaryIO, size: int) -> ArchiveIndex:
    f.seek(0)
    _check_header(f.read(len(HEADER)))
    if size < len(HEADER) + FOOTER_SIZE:
        raise FormatError("truncated archive (no index)")
    f.seek(size - FOOTER_SIZE)
    footer = f.read(FOOTER_SIZE)
    if footer[16:] != MAGIC:
        raise FormatError("incomplete archive: no footer (truncated, or an unfinished .partial; "
                          "an interrupted write continues with --resume)")
    index_offset = int.from_bytes(footer[:8], "little")
    count = int.from_bytes(footer[8:16], "little")
    end = size - FOOTER_SIZE
    if not len(HEADER) <= index_offset <= end - 4:
        raise FormatError("corrupt archive: index offset out of range")
    if count > (end - 4 - index_offset) // MIN_MEMBER_BYTES:          # before reading anything
        raise FormatError(f"corrupt archive: {count} members cannot fit in a {end - 4 - index_offset}-byte index")
    f.seek(index_offset)
    raw = f.read(end - index_offset)
    if zlib.crc32(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
        raise FormatError("corrupt archive: index checksum mismatch")
    cur = _Cursor(raw[:-4], "index")
    kind_code, flags = cur.byte(), cur.byte()
    if kind_code >= len(KINDS) or flags & ~FLAG_DEFLATED:
        raise cur.fail("unknown archive kind or flags")
    kind = KINDS[kind_code]
    arrays = _read_arrays(cur, kind, count)
    n = cur.varint()
    if n != count:
        raise cur.fail("member count disagrees with the footer")
    members: list[MemberInfo] = []
    pos = len(HEADER)                      # where the next member's record must start
    for _ in range(n):
        name = cur.text()
        if problem := name_problem(name):
            raise cur.fail(f"unsafe member name {name!r} ({problem})")
        offset, length, mode_code, width, height = cur.varint(), cur.varint(), cur.byte(), cur.varint(), cur.varint()
        if mode_code >= len(container.MODES) or not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise cur.fail(f"bad image for member {name!r}")
        if offset != pos + len(_record(name, length)) or offset + length > index_offset:
            raise cur.fail(f"member {name!r} is not where the index says")
        members.append(MemberInfo(name, offset, length, container.MODES[mode_code], width, height))
        pos = offset + length
    if cur.pos != len(cur.data) or pos != index_offset:
        raise cur.fail("members and index do not tile the file")
    names = [m.name for m in members]
    if kind == "images":
        if len(set(names)) != len(names):
            raise cur.fail("duplicate member names")
    else:
        # The counts were checked against the index above, so these lists are bounded by it.
        expected = [name for a in arrays for name in a.member_names()]
        shapes = [(a.image_shape[:2], a.mode) for a in arrays for _ in range(a.count)]
        if names != expected or shapes != [((m.height, m.width), m.mode) for m in members]:
            raise cur.fail("members do not match the recorded arrays")
    return ArchiveIndex(kind, bool(flags & FLAG_DEFLATED), tuple(arrays), tuple(members), size, index_offset)


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
    from the first member's header (the only member bytes read)."""
    with _open_archive(path) as (f, size):
        index = _read_index(f, size)
        first = None
        if index.members:
            try:
                first = container.peek_header(_read_blob(f, index.members[0]))
            except FormatError:
                pass                                    # damaged: `ardmzip test` will say
    return {
        "archive": True, "kind": index.kind, "images": len(index.members), "bytes": index.size,
        "member_bytes": index.member_bytes, "overhead_bytes": index.overhead_bytes,
        "overhead_per_image": index.overhead_per_image, "subpixels": index.subpixels, "bpsp": index.bpsp,
        "arrays": [{"key": a.key, "shape": list(a.shape), "dtype": "uint8"} for a in index.arrays],
        "model": first.model_name if first else None, "model_hash": first.model_hash.hex() if first else None,
        "steps": first.steps if first else None, "seed": first.seed if first else None,
    }


def _read_blob(f: BinaryIO, m: MemberInfo) -> bytes:
    record = _record(m.name, m.size)
    f.seek(m.offset - len(record))
    data = f.read(len(record) + m.size)
    if len(data) != len(record) + m.size:
        raise FormatError("truncated archive member")
    if data[:len(record)] != record:
        raise FormatError("corrupt archive: member record damaged")
    return data[len(record):]


def _check_member(m: MemberInfo, picture: Picture) -> Picture:
    if picture.mode != m.mode or picture.pixels.shape[:2] != (m.height, m.width):
        raise FormatError("corrupt archive: member does not match its index entry")
    return picture


def _decode(f: BinaryIO, m: MemberInfo, device: str, max_pixels: int,
            progress: bool | PictureBar = False) -> Picture:
    container.check_pixels(m.width, m.height, max_pixels, f"member {m.name!r}")     # before reading it
    blob = _read_blob(f, m)
    with for_picture(progress, m.name, lambda: decoded_planes(blob)) as bar:
        return _check_member(m, decompress_picture(blob, device, bar, max_pixels=max_pixels))


def _batches(items: Iterable[Any], size: Callable[[Any], int]) -> Iterator[list[Any]]:
    """Consecutive items, about codec.BATCH_SUBPIXELS subpixels at a time (at least one), so
    that pictures of one size share network calls; reading stays one batch ahead. An error
    while reading comes after the batch read before it, so finished work still lands."""
    batch: list[Any] = []
    total = 0
    source = iter(items)
    while True:
        try:
            item = next(source)
        except StopIteration:
            break
        except Exception:
            if batch:
                yield batch
            raise
        if batch and total + size(item) > codec.BATCH_SUBPIXELS:
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size(item)
    if batch:
        yield batch


def _ordered_map(fn: Callable, tasks: Iterable[tuple[Any, tuple]], jobs: int) -> Iterator[tuple[Any, Any]]:
    """(tag, fn(*args)) for each (tag, args) in ``tasks``, in order. With jobs > 1 in a pool
    of spawned worker processes (one torch thread each), at most 2 * jobs tasks ahead, so
    memory stays bounded; ``fn`` must be a module-level function."""
    if jobs <= 1:
        for tag, args in tasks:
            yield tag, fn(*args)
        return
    import concurrent.futures
    import multiprocessing
    pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=_worker_init)
    pending: deque = deque()

    def drain() -> Iterator[tuple[Any, Any]]:
        while pending:
            tag, future = pending.popleft()
            yield tag, future.result()

    try:
        try:
            for tag, args in tasks:
                pending.append((tag, pool.submit(fn, *args)))
                if len(pending) >= 2 * jobs:
                    tag, future = pending.popleft()
                    yield tag, future.result()
        except Exception:                 # a failing input still lets the work before it land
            yield from drain()
            raise
        yield from drain()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _decompress_job(blobs: list[bytes], device: str, max_pixels: int) -> list:
    return decompress_pictures(blobs, device, max_pixels=max_pixels)


def _decoded(f: BinaryIO, members: Sequence[MemberInfo], device: str, jobs: int = 1,
             max_pixels: int = container.MAX_PIXELS) -> Iterator[tuple[MemberInfo, Any]]:
    """(member, Picture or the exception it raised), in order; members of one size share
    network calls (same pixels as decoding each alone). With jobs > 1 worker processes
    decode batches in parallel, at most 2 * jobs batches ahead. A member over ``max_pixels``
    (its index entry, then its header) fails with LimitError before its bytes are decoded."""
    def read(batch: list[MemberInfo]) -> tuple[list[bytes], dict[int, BaseException]]:
        blobs, errors = [], {}
        for i, m in enumerate(batch):
            try:
                container.check_pixels(m.width, m.height, max_pixels, f"member {m.name!r}")
                blobs.append(_read_blob(f, m))
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
        for batch in _batches(members, lambda m: m.subpixels):
            blobs, errors = read(batch)
            yield (batch, errors), (blobs, device, max_pixels)

    for (batch, errors), decoded in _ordered_map(_decompress_job, tasks(), jobs):
        yield from results(batch, errors, decoded)


def extract_member(path: str | os.PathLike, name: str, device: str = "cpu", *,
                   max_pixels: int = container.MAX_PIXELS, progress: bool | PictureBar = False) -> Picture:
    """Decode one member (only its bytes are read); its pixels are CRC-checked. LimitError if
    it is over ``max_pixels`` pixels (0: no limit). ``progress``: a bar over its steps."""
    with _open_archive(path) as (f, size):
        return _decode(f, _read_index(f, size).member(name), device, max_pixels, progress)


def _progress_bar(total: int, progress: bool, desc: str):
    """Images done of ``total``, on stderr when ``progress``."""
    return progress_bar(total, desc, "img", progress)


def _report(results: list, on_member: OnRead | None, name: str, error: BaseException | None) -> None:
    """Record one member's outcome and tell the caller (damaged members do not stop the others)."""
    results.append((name, error))
    if on_member:
        on_member(name, error)


def test_archive(path: str | os.PathLike, device: str = "cpu", progress: bool = False,
                 on_member: OnRead | None = None, jobs: int = 1, *,
                 max_pixels: int = container.MAX_PIXELS) -> list[tuple[str, BaseException | None]]:
    """Decode and check every member, writing nothing: [(name, error or None)]; ``jobs``
    worker processes decode in parallel; a member over ``max_pixels`` fails with LimitError."""
    results: list[tuple[str, BaseException | None]] = []
    with _open_archive(path) as (f, size):
        index = _read_index(f, size)
        with _progress_bar(len(index.members), progress, "test") as bar:
            for m, result in _decoded(f, index.members, device, jobs, max_pixels):
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


def extract_all(path: str | os.PathLike, output: str | os.PathLike, force: bool = False, device: str = "cpu",
                progress: bool = False, on_member: OnRead | None = None,
                jobs: int = 1, *, max_pixels: int = container.MAX_PIXELS,
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
        for m, result in _decoded(f, index.members, device, jobs, max_pixels):
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
    members = _decoded(f, index.members, device, jobs, max_pixels)

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


# ---------------------------------------------------------------- sources


class _Source:
    """What to archive: the kind, array specs, member names, and the pictures lazily."""
    kind: str = "images"
    deflated: bool = False
    arrays: tuple[ArraySpec, ...] = ()
    names: list[str]

    def pictures(self) -> Iterator[tuple[str, Picture]]:
        raise NotImplementedError


class _FolderSource(_Source):
    def __init__(self, root: str, max_pixels: int = container.MAX_PIXELS) -> None:
        self.max_pixels = max_pixels
        def fail(e: OSError) -> None:
            raise InputError(f"cannot read folder {e.filename}: {e.strerror or e}")

        files: list[tuple[str, str]] = []
        for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
            dirnames.sort()
            for fn in filenames:
                if os.path.splitext(fn)[1].lower() in IMAGE_SUFFIXES:
                    full = os.path.join(dirpath, fn)
                    name = PurePosixPath(*os.path.relpath(full, root).split(os.sep)).as_posix()
                    if problem := name_problem(name):
                        raise InputError(f"{full}: file name {problem}; cannot be an archive member")
                    files.append((name, full))
        files.sort()
        if not files:
            raise InputError(f"no images in {root}")
        self.files = files
        self.names = [n for n, _ in files]

    def pictures(self) -> Iterator[tuple[str, Picture]]:
        for name, full in self.files:
            yield name, read_picture(full, self.max_pixels)


class _ArraySource(_Source):
    def __init__(self, path: str, max_pixels: int = container.MAX_PIXELS) -> None:
        self.path, self.max_pixels = path, max_pixels
        try:
            with open(path, "rb") as f:
                head = f.read(6)
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror or e}") from None
        if head == _NPY_MAGIC:
            self.kind = "npy"
            with open(path, "rb") as f:
                shape, fortran, dtype = self._header(f, path)
                spec = self._spec("", shape, dtype, path, os.fstat(f.fileno()).st_size - f.tell())
            self.arrays = (spec,)
            self.entries = [(None, fortran)]
        elif head[:4] in (_ZIP_MAGIC, _EMPTY_ZIP):
            self.kind = "npz"
            specs, self.entries = [], []
            try:
                with zipfile.ZipFile(path) as zf:
                    for info in zf.infolist():
                        if not info.filename.endswith(".npy"):
                            raise InputError(f"{path}: entry {info.filename!r} is not a .npy array")
                        key = info.filename[:-4]
                        if problem := name_problem(key):
                            raise InputError(f"{path}: array key {key!r} {problem}; cannot name archive members")
                        with zf.open(info) as fp:
                            shape, fortran, dtype = self._header(fp, f"{path}[{key}]")
                            held = info.file_size - fp.tell()
                        specs.append(self._spec(key, shape, dtype, f"{path}[{key}]", held))
                        self.entries.append((info.filename, fortran))
                        self.deflated |= info.compress_type == zipfile.ZIP_DEFLATED
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
                raise InputError(f"cannot read {path} as a .npz file ({e})") from None
            if len(specs) > MAX_ARRAYS:
                raise InputError(f"{path}: more than {MAX_ARRAYS} arrays")
            self.arrays = tuple(specs)
        else:
            raise InputError(f"{path} is not a .npy or .npz file")
        # The image counts were checked against the bytes held, so these names are bounded.
        self.names = [n for a in self.arrays for n in a.member_names()]
        for name in self.names:
            if problem := name_problem(name):
                raise InputError(f"{path}: member name {name!r} {problem}")
        if len(set(self.names)) != len(self.names):
            raise InputError(f"{path}: array keys give clashing member names")

    @staticmethod
    def _header(fp: BinaryIO, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
        try:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(fp)
            if version == (2, 0):
                return np.lib.format.read_array_header_2_0(fp)
        except ValueError as e:
            raise InputError(f"cannot read {where} as a .npy array ({e})") from None
        raise InputError(f"{where}: unsupported .npy version {version}")

    def _spec(self, key: str, shape: tuple[int, ...], dtype: np.dtype, where: str, held: int) -> ArraySpec:
        """The array's spec, its shape checked, and against the ``held`` bytes after its header
        (so that a few bytes cannot claim 10^12 images) and the pixel limit."""
        if dtype != _U1:
            raise InputError(f"{where} has dtype {dtype}; only uint8 images can be archived")
        if len(shape) not in (3, 4) or (len(shape) == 4 and not 1 <= shape[3] <= 4):
            raise InputError(f"{where} has shape {shape}; expected (N, H, W) or (N, H, W, C) with C in 1..4")
        spec = ArraySpec(key, tuple(int(d) for d in shape))
        if spec.count and not (spec.shape[1] and spec.shape[2]):
            raise InputError(f"{where} has empty images (shape {shape})")
        if spec.count and max(spec.shape[1:3]) > MAX_SIDE:
            raise InputError(f"{where} has images of {shape[2]}x{shape[1]}; at most {MAX_SIDE} a side")
        if spec.count * spec.image_bytes > held:
            raise InputError(f"{where} is truncated: shape {shape} needs {spec.count * spec.image_bytes} bytes, "
                             f"it holds {held}")
        if spec.count:
            container.check_pixels(spec.shape[2], spec.shape[1], self.max_pixels, f"{where}: each image")
        return spec

    def pictures(self) -> Iterator[tuple[str, Picture]]:
        if self.kind == "npy":
            yield from self._images(self.arrays[0], *self.entries[0], None)
            return
        with zipfile.ZipFile(self.path) as zf:
            for spec, (entry, fortran) in zip(self.arrays, self.entries):
                yield from self._images(spec, entry, fortran, zf)

    def _images(self, spec: ArraySpec, entry: str | None, fortran: bool,
                zf: zipfile.ZipFile | None) -> Iterator[tuple[str, Picture]]:
        """Pictures of one array, read one image at a time (a Fortran-order array whole)."""
        names = spec.member_names()
        n = spec.image_bytes
        if fortran:
            if zf is None:
                array = np.load(self.path, mmap_mode="r", allow_pickle=False)
            else:
                with np.load(self.path, allow_pickle=False) as npz:
                    array = npz[spec.key]
            for name, image in zip(names, array):
                yield name, picture_from_array(np.ascontiguousarray(image))
            return
        with (open(self.path, "rb") if zf is None else zf.open(entry)) as fp:
            self._header(fp, self.path)
            for name in names:
                data = fp.read(n)
                if len(data) != n:
                    raise InputError(f"{self.path}: array {spec.key or 'data'!r} is truncated")
                yield name, picture_from_array(np.frombuffer(data, np.uint8).reshape(spec.image_shape))


def _open_source(source: str | os.PathLike, max_pixels: int = container.MAX_PIXELS) -> _Source:
    path = os.fsdecode(source)
    if os.path.isdir(path):
        return _FolderSource(path, max_pixels)
    if not os.path.lexists(path):
        raise InputError(f"{path}: no such file or folder")
    return _ArraySource(path, max_pixels)


# ---------------------------------------------------------------- writing


@dataclass
class _Scanned:
    """A finished member found in a .partial."""
    start: int           # of its record
    end: int             # after its blob
    info: MemberInfo
    header: container.Header


def _scan_partial(f: BinaryIO, size: int, partial: str) -> tuple[list[_Scanned], int]:
    """Finished members at the start of a .partial, and where the valid part ends.

    Stops at the first record or blob that is torn or fails a check; nothing after it
    is trusted (the writer fsyncs each member, so only the last can be torn)."""
    f.seek(0)
    head = f.read(len(HEADER))
    if head != HEADER:
        if HEADER.startswith(head):
            return [], 0                               # torn before the header was down
        raise OutputError(f"{partial} is not an unfinished ardmzip archive; remove it or use -f")
    members: list[_Scanned] = []
    pos = len(HEADER)
    while pos < size:
        f.seek(pos)
        cur = _Cursor(f.read(min(size - pos, 2 * 10 + MAX_NAME_BYTES + 4)), "record")
        try:
            name = cur.text()
            length = cur.varint()
            if cur.take(4) != _crc(cur.data[:cur.pos - 4]) or name_problem(name):
                break
            start = pos + cur.pos
            if length > size - start:
                break
            f.seek(start)
            blob = f.read(length)
            header, _ = container.unpack(blob)         # header and streams CRCs
        except FormatError:
            break
        info = MemberInfo(name, start, length, header.mode, header.width, header.height)
        members.append(_Scanned(pos, start + length, info, header))
        pos = start + length
    return members, pos


def _expected_header(model: Any, picture: Picture, steps: int, seed: int, version: int) -> container.Header:
    """The header compress_picture would write for ``picture`` (to recognise finished members);
    ``version`` is the found member's when this ardmzip writes it (it depends on the coding)."""
    px = picture.pixels
    if not container.COMMON_VERSION <= version <= container.FORMAT_VERSION:
        version = container.COMMON_VERSION
    return container.Header(model.name, model.hash8, picture.mode, px.shape[1], px.shape[0], steps, seed,
                            pixel_crc(px), tuple(picture.metadata), version)


def _worker_init() -> None:
    import torch
    torch.set_num_threads(1)        # one process per core; threads would only contend


def _compress_job(pictures: list[Picture], steps: int, model: str | None, seed: int, device: str,
                  max_pixels: int) -> list[bytes]:
    return compress_pictures(pictures, steps, model, seed, device, max_pixels=max_pixels)


def _read_ahead(items: Iterable[Any], depth: int = 64) -> Iterator[Any]:
    """``items``, read by a background thread up to ``depth`` ahead, so that decoding the
    next images overlaps the network (which releases the GIL). An error while reading
    arrives in order, after the items read before it."""
    import queue
    import threading
    box: queue.Queue = queue.Queue(depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((done, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, in order
            box.put((done, e))

    reader = threading.Thread(target=produce, name="ardmzip-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item, error = box.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()


def _compressed(items: Iterable[tuple[str, Picture]], jobs: int, steps: int, model: str | None, seed: int,
                device: str, max_pixels: int) -> Iterator[tuple[str, bytes]]:
    """(name, .ardm bytes) in input order, batch by batch (identical to coding each alone);
    one process reads ahead in a thread, worker processes (jobs > 1) work ahead in a pool."""
    def tasks() -> Iterator[tuple[Any, tuple]]:
        for batch in _batches(_read_ahead(items) if jobs <= 1 else items, lambda item: item[1].pixels.size):
            yield [n for n, _ in batch], ([p for _, p in batch], steps, model, seed, device, max_pixels)

    for names, blobs in _ordered_map(_compress_job, tasks(), jobs):
        yield from zip(names, blobs)


def write_archive(source: str | os.PathLike, out_path: str | os.PathLike, steps: int | None = None, *,
                  resume: bool = False, force: bool = False, model: str | None = None, seed: int = 0,
                  device: str = "cpu", jobs: int = 1, progress: bool = False,
                  on_member: OnWrite | None = None, max_pixels: int = container.MAX_PIXELS) -> WriteResult:
    """Compress a folder of images or a .npz/.npy of uint8 image arrays into one archive.

    Members go to ``out_path + ".partial"``, fsynced one by one; the finished archive is
    renamed to ``out_path`` (an existing one is replaced only with ``force``).  An
    existing .partial is an error unless ``resume`` (continue it) or ``force`` (start
    over).  ``on_member(member, resumed)`` is called for every member in order, with
    ``resumed`` True for those kept from an earlier run.  ``jobs`` > 1 compresses in that
    many worker processes (same bytes).  If a member fails, the exception propagates and
    the .partial keeps the finished members (it has ``archive_partial`` set to its path);
    a write that fails (a full disk, a file size limit) is an OutputError, the .partial cut
    back to its last finished member.  A picture over ``max_pixels`` (0: no limit) is a
    LimitError (for arrays, before anything is written).
    """
    t0 = time.perf_counter()
    steps = check_steps(steps)
    out = os.fsdecode(out_path)
    partial = out + PARTIAL_SUFFIX
    if os.path.isdir(out):
        raise OutputError(f"{out} is a folder")
    if not force and os.path.lexists(out):
        raise OutputError(f"{out} exists; use -f to overwrite")
    src = _open_source(source, max_pixels)
    from .weights import load
    model_obj = load(model)
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
            return _write(f, src, partial, out, steps, resume, force, model_obj, model, seed, device, jobs,
                          progress, on_member, t0, max_pixels)
        except BaseException as e:
            with contextlib.suppress(OSError):
                f.seek(0)
                if os.fstat(f.fileno()).st_size <= len(HEADER):     # nothing worth keeping
                    os.unlink(partial)
                elif isinstance(e, Exception) and f.read(len(HEADER)) == HEADER:
                    e.archive_partial = partial  # type: ignore[attr-defined]
            raise


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


def _write(f: BinaryIO, src: _Source, partial: str, out: str, steps: int, resume: bool, force: bool,
           model_obj: Any, model: str | None, seed: int, device: str, jobs: int, progress: bool,
           on_member: OnWrite | None, t0: float, max_pixels: int) -> WriteResult:
    size = os.fstat(f.fileno()).st_size
    scanned, valid = _scan_partial(f, size, partial) if resume and size else ([], 0)
    if valid < len(HEADER):
        _append(f, HEADER, 0, partial)
    end = len(HEADER)
    members: list[MemberInfo] = []
    stats = {"bytes": 0, "subpixels": 0}
    pictures = src.pictures()
    with _progress_bar(len(src.names), progress, "compress") as bar:
        def done(m: MemberInfo, resumed: bool) -> None:
            members.append(m)
            stats["bytes"] += m.size
            stats["subpixels"] += m.subpixels
            bar.update(1)
            bar.set_postfix_str(f"{8 * stats['bytes'] / max(1, stats['subpixels']):.3f} bpsp", refresh=False)
            if on_member:
                on_member(m, resumed)

        # Keep the finished members that match the source, in order; cut the rest away.
        for s in scanned:
            item = next(pictures, None)
            if item is None:
                break
            name, picture = item
            if name != s.info.name or s.header != _expected_header(model_obj, picture, steps, seed,
                                                                         s.header.version):
                pictures = itertools.chain([item], pictures)
                break
            end = s.end
            done(s.info, True)
        resumed = len(members)
        try:
            f.truncate(end)
            os.fsync(f.fileno())
        except OSError as e:
            raise OutputError(f"cannot write {partial}: {e.strerror or e}") from None

        for name, blob in _compressed(pictures, jobs, steps, model, seed, device, max_pixels):
            record = _record(name, len(blob))
            _append(f, record + blob, end, partial)
            h = container.peek_header(blob)
            end += len(record) + len(blob)
            done(MemberInfo(name, end - len(blob), len(blob), h.mode, h.width, h.height), False)

    if len(members) != len(src.names):
        raise InputError("the source changed while it was being read")
    index = _pack_index(src.kind, src.deflated, src.arrays, members)
    _append(f, index + _footer(end, len(members)), end, partial)
    try:
        commit_file(partial, out, force)
    except OSError as e:
        raise OutputError(f"cannot write {out}: {e.strerror or e}") from None
    result_index = ArchiveIndex(src.kind, src.deflated, src.arrays, tuple(members),
                                end + len(index) + FOOTER_SIZE, end)
    return WriteResult(out, result_index, resumed, len(members) - resumed, time.perf_counter() - t0)

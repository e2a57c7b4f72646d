"""Archive formats 1 and 2, which this ardmzip reads but no longer writes (archive.py writes
and reads format 3; ``archive._read_index`` and ``archive._read_blob`` come here for these).

Format 2: header magic b"ARDS", version 2, varint length of the fields, kind byte, flags byte
(bit 0: deflated), arrays as in format 1, model name and hash, steps, seed, .ardm version
byte, model size varint (0: registered), header CRC; the carried model; members as in format
3, a folder member's metadata always with its count; index: varint member count, per member
(folders: name, mode byte, width, height, .ardm version byte, metadata length, stream count)
and stream lengths, index CRC; footer index offset (8 bytes LE), b"ARDS". A format 2 member
is read as a format 3 one (``archive._read_entry``, ``archive._member_ardm``).

Format 1: header b"ARDS" 1; per member a record (varint name length, name, varint blob
length, CRC32 of those) and a complete single-image .ardm; an index (kind, flags, arrays
(varint count; per array key, ndim byte, ndim varints), member count, per member name, blob
offset, blob length, mode, width, height; CRC); footer index offset (8), member count (8),
b"ARDS".

The packers here (``_pack_index``, ``_pack_arrays``, the footers; and ``Shared.pack(2)``,
``archive._member_parts(..., 2)`` there) are what tests build old archives with; archive.py
imports what it and they use from here (``archive._read_index_v1``, ``archive._record``, ...).
"""
from __future__ import annotations

import zlib
from typing import BinaryIO, Sequence

from . import container
from .errors import FormatError

_HEADER_BYTES = 5                  # magic and version


def _record(name: str, length: int) -> bytes:
    """The record in front of a format 1 member's blob."""
    raw = name.encode("utf-8")
    body = _varint(len(raw)) + raw + _varint(length)
    return body + _crc(body)


def _pack_arrays(arrays: Sequence[ArraySpec]) -> bytes:
    out = bytearray(_varint(len(arrays)))
    for a in arrays:
        key = a.key.encode("utf-8")
        out += _varint(len(key)) + key + bytes((len(a.shape),))
        for d in a.shape:
            out += _varint(d)
    return bytes(out)


def _pack_index(kind: str, deflated: bool, arrays: Sequence[ArraySpec], members: Sequence[MemberInfo]) -> bytes:
    """A version 1 index (tests build version 1 archives with it)."""
    out = bytearray((KINDS.index(kind), FLAG_DEFLATED if deflated else 0))
    out += _pack_arrays(arrays)
    out += _varint(len(members))
    for m in members:
        name = m.name.encode("utf-8")
        out += _varint(len(name)) + name + _varint(m.offset) + _varint(m.size)
        out += bytes((container.MODES.index(m.mode),)) + _varint(m.width) + _varint(m.height)
    return bytes(out + _crc(out))


def _footer_v1(index_offset: int, count: int) -> bytes:
    return index_offset.to_bytes(8, "little") + count.to_bytes(8, "little") + MAGIC


def _footer_v2(index_offset: int) -> bytes:
    return index_offset.to_bytes(8, "little") + MAGIC


def _read_arrays(cur: _Cursor, kind: str, members: int | None) -> list[ArraySpec]:
    """The arrays, checked: keys (``name_problem``; "" in a .npy archive), shapes, and image
    counts adding up to ``members`` (so no name is made from a claim; None: the caller checks)."""
    n_arrays = cur.varint()
    if n_arrays > min(MAX_ARRAYS, len(cur.data) // MIN_ARRAY_BYTES) or (kind == "images" and n_arrays) \
            or (kind == "npy" and n_arrays != 1):
        raise cur.fail("bad array count")
    arrays = []
    for _ in range(n_arrays):
        key = cur.text(0, 0) if kind == "npy" else cur.text()
        ndim = cur.byte()
        if ndim not in (3, 4):
            raise cur.fail("bad array shape")
        arrays.append(_array(cur, kind, key, tuple(cur.varint() for _ in range(ndim))))
    if kind != "images" and members is not None and sum(a.count for a in arrays) != members:
        raise cur.fail("the arrays' images do not add up to the member count")
    return _distinct(cur, arrays)


def _footer_and_index(f: BinaryIO, size: int, footer_size: int, first: int,
                      min_index: int) -> tuple[int, int | None, _Cursor]:
    """The footer (index offset, format 1 a member count, magic) and the index it points to,
    CRC-checked: (index offset, the count (None: format 2), a cursor over the index). The index
    starts at ``first`` at the earliest and takes at least ``min_index`` bytes, CRC included; a
    format 1 count is checked against the index's size before the index is read."""
    if size < first + footer_size + min_index:
        raise FormatError("truncated archive (no index)")
    f.seek(size - footer_size)
    footer = f.read(footer_size)
    if footer[-len(MAGIC):] != MAGIC:
        raise FormatError(f"incomplete archive: no footer {_INCOMPLETE}")
    index_offset = int.from_bytes(footer[:8], "little")
    end = size - footer_size
    if not first <= index_offset <= end - min_index:
        raise FormatError("corrupt archive: index offset out of range")
    count = int.from_bytes(footer[8:16], "little") if footer_size == FOOTER_SIZE_V1 else None
    if count is not None and count > (end - 4 - index_offset) // MIN_MEMBER_BYTES:
        raise FormatError(f"corrupt archive: {count} members cannot fit in a {end - 4 - index_offset}-byte index")
    f.seek(index_offset)
    raw = f.read(end - index_offset)
    if zlib.crc32(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
        raise FormatError("corrupt archive: index checksum mismatch")
    return index_offset, count, _Cursor(raw[:-4], "index")


def _read_shared_v2(f: BinaryIO, size: int) -> tuple[Shared, int]:
    """A version 2 archive's header, checked, and where it ends."""
    f.seek(_HEADER_BYTES)
    head = f.read(10)
    cur = _Cursor(head, "header")
    length = cur.varint()
    start = _HEADER_BYTES + cur.pos
    if length > size - start - 4:
        raise FormatError("truncated archive (header)")
    f.seek(0)
    raw = f.read(start + length + 4)
    if zlib.crc32(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
        raise FormatError("corrupt archive: header checksum mismatch")
    cur = _Cursor(raw[start:-4], "header")
    kind_code, flags = cur.byte(), cur.byte()
    if kind_code >= len(KINDS) or flags & ~FLAG_DEFLATED:
        raise cur.fail("unknown archive kind or flags")
    kind = KINDS[kind_code]
    arrays = _read_arrays(cur, kind, None)
    name = cur.text(1, container.MAX_NAME_BYTES)
    model_hash = bytes(cur.take(container.HASH_BYTES))
    steps, seed, codec_version, model_size = cur.varint(), cur.varint(), cur.byte(), cur.varint()
    if cur.pos != len(cur.data):
        raise cur.fail("unexpected bytes")
    shared = Shared(kind, bool(flags & FLAG_DEFLATED), tuple(arrays), name, model_hash, steps, seed, codec_version,
                    model_size)
    _check_shared(shared)
    if model_size > size - len(raw):
        raise FormatError("truncated archive (carried model)")
    return shared, len(raw)


def _read_index_v2(f: BinaryIO, size: int) -> ArchiveIndex:
    shared, header_end = _read_shared_v2(f, size)
    members_start = header_end + shared.model_size
    index_offset, _, cur = _footer_and_index(f, size, FOOTER_SIZE_V2, members_start, 5)
    members = _read_members(cur, shared, 2, members_start, index_offset, cur.varint())
    return ArchiveIndex(shared.kind, shared.deflated, shared.arrays, tuple(members), size, index_offset, 2, shared,
                        header_end)


def _read_index_v1(f: BinaryIO, size: int) -> ArchiveIndex:
    index_offset, count, cur = _footer_and_index(f, size, FOOTER_SIZE_V1, _HEADER_BYTES, 4)
    kind_code, flags = cur.byte(), cur.byte()
    if kind_code >= len(KINDS) or flags & ~FLAG_DEFLATED:
        raise cur.fail("unknown archive kind or flags")
    kind = KINDS[kind_code]
    arrays = _read_arrays(cur, kind, count)
    n = cur.varint()
    if n != count:
        raise cur.fail("member count disagrees with the footer")
    members: list[MemberInfo] = []
    pos = _HEADER_BYTES                    # where the next member's record must start
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
    return ArchiveIndex(kind, bool(flags & FLAG_DEFLATED), tuple(arrays), tuple(members), size, index_offset, 1)


def _read_blob_v1(f: BinaryIO, m: MemberInfo) -> bytes:
    """A format 1 member: the .ardm blob after its record."""
    record = _record(m.name, m.size)
    f.seek(m.offset - len(record))
    data = f.read(len(record) + m.size)
    if len(data) != len(record) + m.size:
        raise FormatError("truncated archive member")
    if data[:len(record)] != record:
        raise FormatError("corrupt archive: member record damaged")
    return data[len(record):]


# What this module builds on, imported last: archive.py imports this module at its end, so
# either may be imported first.
from .archive import (FLAG_DEFLATED, FOOTER_SIZE_V1, FOOTER_SIZE_V2, KINDS, MAGIC, MAX_ARRAYS,  # noqa: E402
                      MAX_SIDE, MIN_ARRAY_BYTES, MIN_MEMBER_BYTES, _INCOMPLETE, ArchiveIndex, ArraySpec, MemberInfo,
                      Shared, _array, _check_shared, _crc, _Cursor, _distinct, _read_members, _varint, name_problem)

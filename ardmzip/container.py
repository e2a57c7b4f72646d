"""The ``.ardm`` container: one compressed image as pure bytes in and out.

Files are tiny (about 1.3 kB for a 32x32 image), so the layout is compact:
integers are unsigned LEB128 varints ("varint" below: 7 bits per byte, low
group first, high bit set on every byte but the last, at most 10 bytes,
shortest form only).  Multi-byte fixed fields are little-endian.

Layout, format versions 1-11 (the same fields; only the plane streams differ, see
``constraint.py`` and ``codec.codes_binary``; files of every version decode). The codec
writes version 10 where a plane goes through the network at 10 steps and more (its coarse
level coded as a picture of its own, as in version 6, with more of the steps as in version
8, and that picture's own coarse level a picture of its own too: ``codec.pyramid_split``;
everything of version 5 too), else version 5 for 16-bit pictures
(modes "L16" .. "RGBA16": high-byte planes as in version 4, then a low-byte stream,
``lowbyte.py``), 4 where a plane is coded as binary decisions (every plain or value-set
plane) or stored, else 3 for pictures coded with chroma blocks or colour copies, else 2, so
an older ardmzip refuses what it would misread as newer. Version 11 (``compress(...,
adapt=N)``, ``--adapt``) is version 10 with one more stream first: the changes to the model's
biases that adapt it to the picture (``adapt.py``); version 9 is the same on version 8's
planes (what ardmzip wrote before version 10), 7 on version 6's (before version 8, and
still where the planes are version 6 or below)::

    header
      magic          4 bytes   b"ARDM"
      version        1 byte    2 to 6, 8, FORMAT_VERSION (10), ADAPTED_VERSION (11), 9 or 7; 1 for older files
      mode           1 byte    index into MODES ("L"=0, "LA", "RGB", "RGBA", "P", "PA", "1"=6,
                               "L16"=7, "LA16", "RGB16", "RGBA16"=10: version 5 on)
      width          varint    1 <= width  < 2**31
      height         varint    1 <= height < 2**31
      steps          varint    step budget K, 1 <= steps < 2**32
      seed           varint    order seed, 0 <= seed < 2**64
      name length    varint    <= 255
      model name     bytes     utf-8
      model hash     8 bytes   prefix of the weights' sha256
      pixel CRC      4 bytes   CRC32 of the decoded pixel array bytes (16-bit: little-endian)
      metadata count varint    <= MAX_METADATA
        per entry:   varint key length (1..255), key utf-8,
                     varint value length, value bytes
      header CRC     4 bytes   CRC32 of every header byte above (magic included)
    streams
      stream count   varint    <= MAX_STREAMS
        per stream:  varint length, stream bytes
      streams CRC    4 bytes   CRC32 of the streams section above (count,
                               lengths and bytes)

Nothing may follow the streams CRC.

The compact layout (written wherever the model is one of ``MODEL_IDS``, the shipped models)
carries the same fields in 21 bytes where the layout above takes 46 for a 32x32 picture
(0.07 bpsp of its ~4.1: 1.6% of a thumbnail's file was header)::

    compact
      magic          4 bytes   b"ARDM"
      version        1 byte    COMPACT + the version above (older ardmzip: "newer")
      mode           1 byte
      width, height, steps, seed   varints, as above
      model id       varint    index into MODEL_IDS: a registered model's name and hash
      pixel CRC      4 bytes
      metadata       varint count, entries as above
      streams        varint count; a varint length per stream but the first; the streams'
                     bytes in order (the first, usually the colour plane, is what the others leave)
      file CRC       4 bytes   CRC32 of every byte above (magic included)

A compact file is checked whole (its CRC) before any field is read, so ``peek_header``
needs the whole file there; the layout above can be peeked from its header alone.  Every
byte of a file is covered either by a fixed check (magic, version) or by a CRC, so a
single flipped bit is always reported.  ``unpack`` and ``peek_header`` raise only
``FormatError`` for malformed data, whatever the bytes are, and allocate nothing
beyond the bytes given: every length is checked against the bytes left first.

A few bytes can describe a huge picture (a constant plane costs its colour), so the
decoder's time and memory follow the width and height, not the file size: callers pass
``max_pixels`` (default ``MAX_PIXELS``, Pillow's decompression-bomb limit; 0 = none) and
a larger picture is refused with ``LimitError`` before anything is decoded.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

from .errors import FormatError, LimitError

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "ADAPTED_VERSION",
    "ADAPTED_VERSIONS",
    "COARSE_STEPS_VERSION",
    "THREE_LEVEL_VERSION",
    "NEWEST_VERSION",
    "SIXTEEN_BIT_VERSION",
    "SIXTEEN_BIT_MODES",
    "COMMON_VERSION",
    "MODES",
    "COMPACT",
    "MODEL_IDS",
    "MAX_STREAMS",
    "MAX_METADATA",
    "MAX_PIXELS",
    "Header",
    "check_pixels",
    "pack",
    "unpack",
    "peek_header",
    "is_compact",
    "split_adaptation",
]

MAGIC = b"ARDM"
COARSE_STEPS_VERSION = 8      # a pyramid's coarse level gets more of the steps (codec.pyramid_split)
THREE_LEVEL_VERSION = 10      # ... and the coarse picture is a pyramid of its own (codec.pyramid_split)
FORMAT_VERSION = THREE_LEVEL_VERSION    # the newest version of the plane streams (what archives and plain files use)
ADAPTED_V6_VERSION = 7        # a version 6 file whose first stream adapts the model to the picture (adapt.py)
ADAPTED_V8_VERSION = 9        # the same for version 8's plane streams
ADAPTED_VERSION = 11          # the same for version 10's plane streams: what --adapt writes
ADAPTED_VERSIONS = {ADAPTED_V6_VERSION: 6, ADAPTED_V8_VERSION: COARSE_STEPS_VERSION,
                    ADAPTED_VERSION: THREE_LEVEL_VERSION}   # -> the version of their planes
NEWEST_VERSION = ADAPTED_VERSION   # the newest version this ardmzip reads and writes
SIXTEEN_BIT_VERSION = 5       # 16-bit modes: older ardmzip refuses these files as newer
COMMON_VERSION = 2            # what pictures without chroma blocks or colour copies are written as
OLDEST_VERSION = 1
COMPACT = 0x80                # version byte of the compact layout: COMPACT + the version of its planes
# The models a compact header names by one varint: (name, first 8 bytes of the weights'
# sha256, hex). Append only: an id is part of the format and never reused (a model shipped
# again with other weights gets a new id). A model not here is written with the full layout.
MODEL_IDS: tuple[tuple[str, str], ...] = (
    ("oa-s48", "26dd96a7a5e5ea0d"),
    ("xa-s48", "e77ee6b2310c4090"),
    ("xa2-s48", "ee2fcd04c357da95"),
    ("xa3-s48", "15514cd71b1f0216"),
    ("xa4-s48", "1b5913bb63951f0e"),
    ("xi-s48", "c28893b5d1ca3892"),
    ("xic-s48", "fa17e80ca2be2fd2"),
    ("cifar10-s48", "e562fe1d027c7250"),
    ("photo-s48", "474f5d1de6f4d60e"),
    ("photog-s48", "3abc39aec0b51db8"),
)
_MODEL_ID = {(name, bytes.fromhex(hash8)): i for i, (name, hash8) in enumerate(MODEL_IDS)}
MODES: tuple[str, ...] = ("L", "LA", "RGB", "RGBA", "P", "PA", "1", "L16", "LA16", "RGB16", "RGBA16")  # append only
SIXTEEN_BIT_MODES = ("L16", "LA16", "RGB16", "RGBA16")
MAX_STREAMS = 64
MAX_METADATA = 256
MAX_NAME_BYTES = 255
MAX_KEY_BYTES = 255
HASH_BYTES = 8
# Pillow's limit (2 x Image.MAX_IMAGE_PIXELS, where it raises DecompressionBombError): the
# largest picture coded or decoded unless the caller raises it (0 = no limit).
MAX_PIXELS = 178_956_970
_MAX_VARINT_BYTES = 10  # enough for any value < 2**64


@dataclass(frozen=True)
class Header:
    """Everything about an image except its entropy-coded streams.

    Construction validates the fields and raises ``ValueError`` on bad ones,
    so a ``Header`` that exists can always be packed.
    """

    model_name: str
    model_hash: bytes
    mode: str
    width: int
    height: int
    steps: int
    seed: int
    pixel_crc: int
    metadata: tuple[tuple[str, bytes], ...] = ()
    version: int = COMMON_VERSION           # what the file says (codec.format_version picks it)

    def __post_init__(self) -> None:
        # Normalise metadata to an immutable tuple of (str, bytes) pairs so
        # that headers compare and hash by value whatever sequence was given.
        try:
            metadata = tuple((key, bytes(value)) for key, value in self.metadata)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata must be (key, bytes) pairs: {exc}") from None
        object.__setattr__(self, "metadata", metadata)
        object.__setattr__(self, "model_hash", bytes(self.model_hash))
        _validate(self)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    # bool is an int subclass; a True width is surely a bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value < high:
        raise ValueError(f"{name} {value} is outside [{low}, {high})")


def split_adaptation(h: Header, streams: Sequence[bytes]) -> tuple[bytes | None, tuple[bytes, ...]]:
    """A file's adaptation stream (versions 7 and 9: its first; else None) and its other streams."""
    if h.version in ADAPTED_VERSIONS and streams:
        return streams[0], tuple(streams[1:])
    return None, tuple(streams)


def _validate(h: Header) -> None:
    if not isinstance(h.model_name, str):
        raise ValueError("model_name must be a str")
    if len(_utf8(h.model_name, "model_name")) > MAX_NAME_BYTES:
        raise ValueError(f"model_name is longer than {MAX_NAME_BYTES} bytes")
    if len(h.model_hash) != HASH_BYTES:
        raise ValueError(f"model_hash must be {HASH_BYTES} bytes, not {len(h.model_hash)}")
    if h.mode not in MODES:
        raise ValueError(f"mode {h.mode!r} is not one of {MODES}")
    _check_int("width", h.width, 1, 2**31)
    _check_int("height", h.height, 1, 2**31)
    _check_int("steps", h.steps, 1, 2**32)
    _check_int("seed", h.seed, 0, 2**64)
    _check_int("pixel_crc", h.pixel_crc, 0, 2**32)
    _check_int("version", h.version, OLDEST_VERSION, NEWEST_VERSION + 1)
    if len(h.metadata) > MAX_METADATA:
        raise ValueError(f"more than {MAX_METADATA} metadata entries")
    seen: set[str] = set()
    for key, _ in h.metadata:
        if not isinstance(key, str):
            raise ValueError("metadata keys must be str")
        if not 1 <= len(_utf8(key, "metadata key")) <= MAX_KEY_BYTES:
            raise ValueError(f"metadata key {key!r} must be 1..{MAX_KEY_BYTES} utf-8 bytes")
        if key in seen:
            raise ValueError(f"duplicate metadata key {key!r}")
        seen.add(key)


def check_pixels(width: int, height: int, max_pixels: int, what: str = "the picture") -> None:
    """Raise ``LimitError`` if a ``width`` x ``height`` picture is over ``max_pixels`` (0: no limit)."""
    if max_pixels and width * height > max_pixels:
        raise LimitError(f"{what} is {width}x{height} = {width * height:,} pixels, over the limit of "
                         f"{max_pixels:,} (--max-pixels N raises it, 0 = no limit)")


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        raise ValueError(f"{what} {text!r} is not valid unicode") from None


# ---------------------------------------------------------------- writing


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _blob(data: bytes) -> bytes:
    return _varint(len(data)) + data


def _crc(data: bytes | bytearray | memoryview) -> bytes:
    return zlib.crc32(data).to_bytes(4, "little")


def _pack_header(h: Header) -> bytes:
    out = bytearray(MAGIC)
    out += bytes((h.version, MODES.index(h.mode)))
    for value in (h.width, h.height, h.steps, h.seed):
        out += _varint(value)
    out += _blob(h.model_name.encode("utf-8"))
    out += h.model_hash
    out += h.pixel_crc.to_bytes(4, "little") + _metadata(h)
    out += _crc(out)
    return bytes(out)


def _metadata(h: Header) -> bytes:
    out = bytearray(_varint(len(h.metadata)))
    for key, value in h.metadata:
        out += _blob(key.encode("utf-8")) + _blob(value)
    return bytes(out)


def _pack_compact(h: Header, model_id: int, streams: list[bytes]) -> bytes:
    out = bytearray(MAGIC)
    out += bytes((COMPACT + h.version, MODES.index(h.mode)))
    for value in (h.width, h.height, h.steps, h.seed, model_id):
        out += _varint(value)
    out += h.pixel_crc.to_bytes(4, "little") + _metadata(h)
    out += _varint(len(streams))
    for stream in streams[1:]:      # the first (usually the colour plane, the largest) takes what is left
        out += _varint(len(stream))
    for stream in streams:
        out += stream
    out += _crc(out)
    return bytes(out)


def pack(header: Header, streams: Sequence[bytes], *, compact: bool = True) -> bytes:
    """Serialise ``header`` and the entropy-coded ``streams`` into an .ardm file: the compact
    layout where the model has an id in ``MODEL_IDS`` (unless ``compact=False``), else the
    full one. ``unpack`` gives back the same header and streams from either."""
    if not isinstance(header, Header):
        raise TypeError("header must be a Header")
    if len(streams) > MAX_STREAMS:
        raise ValueError(f"more than {MAX_STREAMS} streams")
    if not all(isinstance(stream, (bytes, bytearray, memoryview)) for stream in streams):
        raise TypeError("streams must be bytes")
    streams = [bytes(stream) for stream in streams]
    model_id = _MODEL_ID.get((header.model_name, header.model_hash))
    if compact and model_id is not None:
        return _pack_compact(header, model_id, streams)
    section = bytearray(_varint(len(streams)))
    for stream in streams:
        section += _blob(stream)
    return _pack_header(header) + bytes(section) + _crc(section)


# ---------------------------------------------------------------- reading

_TRUNCATED = "truncated .ardm file"


class _Reader:
    """Bounds-checked cursor over the input; every failure is a FormatError.

    ``corrupt`` prefixes the messages (the archive reuses this class for its index and
    records, with its own wording); ``truncated`` is the whole message for running out."""

    def __init__(self, data: memoryview, corrupt: str = "corrupt .ardm file", truncated: str = _TRUNCATED) -> None:
        self.data = data
        self.pos = 0
        self.corrupt, self.truncated = corrupt, truncated

    def fail(self, detail: str) -> FormatError:
        return FormatError(f"{self.corrupt}: {detail}")

    def take(self, n: int) -> memoryview:
        # Lengths come from the file, so compare before slicing: a huge
        # length must not allocate anything, only report truncation.
        if n > len(self.data) - self.pos:
            raise FormatError(self.truncated)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        value = 0
        for i in range(_MAX_VARINT_BYTES):
            byte = self.byte()
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                # Shortest form only, so each value has exactly one encoding.
                if byte == 0 and i > 0:
                    raise self.fail("overlong varint")
                if value >= 2**64:
                    raise self.fail("varint out of range")
                return value
        raise self.fail("varint longer than 10 bytes")

    def blob(self, limit: int | None = None) -> bytes:
        n = self.varint()
        if limit is not None and n > limit:
            raise self.fail("field length out of range")
        return bytes(self.take(n))

    def count(self, limit: int, what: str) -> int:
        n = self.varint()
        if n > limit:
            raise self.fail(f"too many {what} ({n})")
        return n

    def crc_at_end(self, what: str) -> None:
        """Check the CRC32 in the last 4 bytes against everything before it, then read on
        as if the data ended before it."""
        if len(self.data) - self.pos < 4:
            raise FormatError(self.truncated)
        body = self.data[:-4]
        if zlib.crc32(body) != int.from_bytes(self.data[-4:], "little"):
            raise self.fail(f"{what} checksum mismatch")
        self.data = body

    def crc(self, start: int, what: str) -> None:
        expected = zlib.crc32(self.data[start : self.pos])
        if int.from_bytes(self.take(4), "little") != expected:
            raise self.fail(f"{what} checksum mismatch")


def is_compact(data: bytes) -> bool:
    """Whether an .ardm file (one ``unpack`` accepts) has the compact layout."""
    return len(data) > len(MAGIC) and data[len(MAGIC)] >= COMPACT


def _as_view(data: bytes) -> memoryview:
    try:
        return memoryview(data).cast("B")
    except TypeError:
        raise TypeError("data must be bytes-like") from None


def _read_header(reader: _Reader) -> tuple[Header, bool]:
    """The header, and whether the file has the compact layout (its streams are laid out so)."""
    data = reader.data
    if not len(data):
        raise FormatError("not an .ardm file (empty input)")
    head = bytes(data[: len(MAGIC)])
    if head != MAGIC[: len(head)]:
        raise FormatError("not an .ardm file")
    reader.take(len(MAGIC))
    byte = reader.byte()
    compact = byte >= COMPACT
    version = byte - COMPACT if compact else byte
    if version > NEWEST_VERSION:
        raise FormatError(f"made by a newer ardmzip (format version {version})")
    if version < OLDEST_VERSION:
        raise FormatError(f"corrupt .ardm file: unknown format version {byte}")
    if compact:             # one CRC at the end covers the whole file: check it first
        reader.crc_at_end("file")
    # Parse the structure first and check the CRC before judging values, so a
    # flipped bit is reported as corruption rather than as a strange value.
    mode_index = reader.byte()
    width, height, steps, seed = (reader.varint() for _ in range(4))
    if compact:
        model_id = reader.varint()
        if model_id >= len(MODEL_IDS):
            raise FormatError(f"made by a newer ardmzip (model id {model_id})")
        name, model_hash = MODEL_IDS[model_id][0].encode("utf-8"), bytes.fromhex(MODEL_IDS[model_id][1])
    else:
        name = reader.blob(MAX_NAME_BYTES)
        model_hash = bytes(reader.take(HASH_BYTES))
    pixel_crc = int.from_bytes(reader.take(4), "little")
    raw_metadata = [
        (reader.blob(MAX_KEY_BYTES), reader.blob())
        for _ in range(reader.count(MAX_METADATA, "metadata entries"))
    ]
    if not compact:
        reader.crc(0, "header")
    if mode_index >= len(MODES):
        raise FormatError(f"corrupt .ardm file: unknown image mode {mode_index}")
    try:
        return Header(
            model_name=name.decode("utf-8"),
            model_hash=model_hash,
            mode=MODES[mode_index],
            width=width,
            height=height,
            steps=steps,
            seed=seed,
            pixel_crc=pixel_crc,
            metadata=tuple((key.decode("utf-8"), value) for key, value in raw_metadata),
            version=version,
        ), compact
    except UnicodeDecodeError:
        raise FormatError("corrupt .ardm file: invalid utf-8 in header") from None
    except ValueError as exc:
        raise FormatError(f"corrupt .ardm file: {exc}") from None


def peek_header(data: bytes, *, max_pixels: int = 0) -> Header:
    """Parse and validate only the header (header CRC included; a compact file's whole CRC);
    the streams are not read.
    ``LimitError`` if the picture is over ``max_pixels`` (0, the default here: no limit)."""
    header, _ = _read_header(_Reader(_as_view(data)))
    check_pixels(header.width, header.height, max_pixels)
    return header


def unpack(data: bytes, *, max_pixels: int = 0) -> tuple[Header, tuple[bytes, ...]]:
    """Parse a whole .ardm file; any malformed input raises ``FormatError``, a picture over
    ``max_pixels`` (0, the default here: no limit) ``LimitError``, before any stream is read."""
    reader = _Reader(_as_view(data))
    header, compact = _read_header(reader)
    check_pixels(header.width, header.height, max_pixels)
    start = reader.pos
    count = reader.count(MAX_STREAMS, "streams")
    if compact:         # the first stream is what the others leave before the file CRC (cut off)
        lengths = [reader.varint() for _ in range(count - 1)]
        first = len(reader.data) - reader.pos - sum(lengths)
        if count and first < 0:
            raise FormatError(_TRUNCATED)
        streams = tuple(bytes(reader.take(n)) for n in [first] * bool(count) + lengths)
    else:
        streams = tuple(reader.blob() for _ in range(count))
        reader.crc(start, "streams")
    if reader.pos != len(reader.data):
        raise FormatError(
            f"corrupt .ardm file: {len(reader.data) - reader.pos} unexpected trailing bytes"
        )
    return header, streams

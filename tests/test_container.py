"""Tests for the .ardm container (ardmzip.container): round trips and robustness."""

from __future__ import annotations

import random
import zlib
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ardmzip.container import (
    COMMON_VERSION,
    COMPACT,
    MODEL_IDS,
    FORMAT_VERSION,
    NEWEST_VERSION,
    MAGIC,
    MAX_METADATA,
    MAX_STREAMS,
    MODES,
    Header,
    _varint,
    pack,
    peek_header,
    unpack,
)
from ardmzip.errors import FormatError


def make_header(**changes: object) -> Header:
    fields: dict[str, object] = dict(
        model_name="oa-s48",
        model_hash=bytes(range(8)),
        mode="RGB",
        width=32,
        height=32,
        steps=3072,
        seed=12345,
        pixel_crc=0xDEADBEEF,
        metadata=(("icc", b"\x00profile"), ("text:Title", "Tümbleweed ☃".encode())),
    )
    fields.update(changes)
    return Header(**fields)  # type: ignore[arg-type]


SAMPLE = pack(make_header(), [b"first stream", bytes(range(256)), b""])
# A registered model: the compact layout (the model by its id, one CRC for the whole file).
REGISTERED = dict(model_name=MODEL_IDS[6][0], model_hash=bytes.fromhex(MODEL_IDS[6][1]))
COMPACT_SAMPLE = pack(make_header(**REGISTERED), [b"first stream", bytes(range(256)), b"last"])

HEADERS = {
    "default": make_header(),
    "empty metadata": make_header(metadata=()),
    "unicode": make_header(model_name="模型-ü", metadata=(("text:Ключ", "значение".encode()),)),
    "extremes": make_header(
        mode="1", width=2**31 - 1, height=1, steps=2**32 - 1, seed=2**64 - 1, pixel_crc=2**32 - 1
    ),
    "smallest": make_header(model_name="", width=1, height=1, steps=1, seed=0, pixel_crc=0),
    "many metadata": make_header(metadata=tuple((f"k{i}", b"v") for i in range(MAX_METADATA))),
    **{f"mode {m}": make_header(mode=m) for m in MODES},
}
STREAMS = {
    "none": [],
    "one empty": [b""],
    "several": [b"a", b"\x00" * 300, bytes(range(256))],
    "large": [random.Random(1).randbytes(1 << 20), b"tail"],
    "max count": [bytes([i]) for i in range(MAX_STREAMS)],
}


class TestRoundTrip:
    @pytest.mark.parametrize("header", HEADERS.values(), ids=HEADERS.keys())
    @pytest.mark.parametrize("streams", STREAMS.values(), ids=STREAMS.keys())
    def test_pack_unpack(self, header: Header, streams: list[bytes]) -> None:
        data = pack(header, streams)
        assert unpack(data) == (header, tuple(streams))
        assert peek_header(data) == header

    def test_layout_starts_with_magic_and_version(self) -> None:
        assert SAMPLE[:4] == MAGIC
        assert SAMPLE[4] == COMMON_VERSION

    def test_small_header_is_compact(self) -> None:
        # Per-image overhead matters on ~1.3 kB files.
        header = make_header(metadata=())
        assert len(pack(header, [b""])) <= 48

    @pytest.mark.parametrize("header", HEADERS.values(), ids=HEADERS.keys())
    @pytest.mark.parametrize("streams", STREAMS.values(), ids=STREAMS.keys())
    def test_compact_pack_unpack(self, header: Header, streams: list[bytes]) -> None:
        header = replace(header, **REGISTERED)
        data = pack(header, streams)
        assert data[4] == COMPACT + header.version
        assert unpack(data) == (header, tuple(streams))
        assert peek_header(data) == header
        full = pack(header, streams, compact=False)
        assert full[4] == header.version and unpack(full) == unpack(data)
        # the model's name and hash become one byte, two CRCs one, the first stream's length none
        name = len(header.model_name.encode()) + 1 + 8 - 1
        assert len(full) - len(data) == name + 4 + (len(_varint(len(streams[0]))) if streams else 0)

    def test_every_registered_model_is_compact(self) -> None:
        assert len({name for name, _ in MODEL_IDS}) <= len(MODEL_IDS) == len(set(MODEL_IDS))
        for i, (name, hash8) in enumerate(MODEL_IDS):
            data = pack(make_header(model_name=name, model_hash=bytes.fromhex(hash8)), [b"x"])
            assert data[4] >= COMPACT and data[12] == i       # after 32x32, steps 3072 and seed 12345 (2 bytes each)
            assert unpack(data)[0].model_name == name
        # the same name with other weights is not the registered model: the full layout names it
        other = make_header(model_name=MODEL_IDS[0][0], model_hash=bytes(8))
        assert pack(other, [b"x"])[4] == other.version

    def test_thumbnail_header_is_small(self) -> None:
        assert len(pack(make_header(**REGISTERED, metadata=(), steps=16, seed=0), [b"stream"])) == 21 + 6

    def test_peek_header_ignores_streams(self) -> None:
        header_len = len(pack(make_header(), [])) - 5  # minus count varint and CRC
        assert peek_header(SAMPLE[:header_len]) == make_header()

    def test_accepts_bytearray_and_memoryview(self) -> None:
        assert unpack(bytearray(SAMPLE)) == unpack(SAMPLE)
        assert unpack(memoryview(SAMPLE)) == unpack(SAMPLE)

    def test_metadata_is_normalised_to_tuples(self) -> None:
        header = make_header(metadata=[["a", bytearray(b"x")]])
        assert header.metadata == (("a", b"x"),)
        assert hash(header) == hash(make_header(metadata=(("a", b"x"),)))


class TestPackValidation:
    @pytest.mark.parametrize(
        "changes",
        [
            {"model_name": "x" * 256},
            {"model_name": "\ud800"},
            {"model_hash": b"short"},
            {"mode": "CMYK"},
            {"width": 0},
            {"height": 2**31},
            {"width": True},
            {"steps": 0},
            {"seed": -1},
            {"seed": 2**64},
            {"pixel_crc": 2**32},
            {"metadata": (("", b"x"),)},
            {"metadata": (("k" * 256, b"x"),)},
            {"metadata": (("a", b"1"), ("a", b"2"))},
            {"metadata": tuple((f"k{i}", b"") for i in range(MAX_METADATA + 1))},
            {"metadata": (("a", "not bytes"),)},
        ],
        ids=repr,
    )
    def test_bad_header_fields(self, changes: dict[str, object]) -> None:
        with pytest.raises(ValueError):
            make_header(**changes)

    def test_too_many_streams(self) -> None:
        with pytest.raises(ValueError):
            pack(make_header(), [b""] * (MAX_STREAMS + 1))

    def test_stream_must_be_bytes(self) -> None:
        with pytest.raises(TypeError):
            pack(make_header(), ["text"])  # type: ignore[list-item]


def _with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


class TestMalformed:
    @pytest.mark.parametrize("cut", range(len(SAMPLE)))
    def test_every_truncation(self, cut: int) -> None:
        with pytest.raises(FormatError):
            unpack(SAMPLE[:cut])

    @pytest.mark.parametrize("sample", [SAMPLE, COMPACT_SAMPLE], ids=["full", "compact"])
    def test_every_bit_flip(self, sample: bytes) -> None:
        # CRC32 catches every single-bit error, so no flip may go unnoticed.
        for i in range(len(sample) * 8):
            data = bytearray(sample)
            data[i // 8] ^= 1 << (i % 8)
            with pytest.raises(FormatError):
                unpack(bytes(data))

    @pytest.mark.parametrize(
        "data, message",
        [
            (b"", "not an .ardm file"),
            (b"\x89PNG\r\n\x1a\n" + bytes(40), "not an .ardm file"),
            (b"ARD", "truncated .ardm file"),
            (MAGIC + bytes([NEWEST_VERSION + 1]) + SAMPLE[5:],
             rf"made by a newer ardmzip \(format version {NEWEST_VERSION + 1}\)"),
            (MAGIC + b"\x00" + SAMPLE[5:], "unknown format version 0"),
            (SAMPLE + b"\x00", "trailing"),
            (SAMPLE[:-1] + bytes([SAMPLE[-1] ^ 1]), "streams checksum mismatch"),
        ],
        ids=["empty", "png", "short magic", "newer", "version 0", "trailing", "stream crc"],
    )
    def test_messages(self, data: bytes, message: str) -> None:
        with pytest.raises(FormatError, match=message):
            unpack(data)
        assert "\n" not in message

    def test_header_crc_message(self) -> None:
        data = bytearray(SAMPLE)
        data[6] ^= 1  # width
        with pytest.raises(FormatError, match="header checksum mismatch"):
            unpack(bytes(data))
        with pytest.raises(FormatError, match="header checksum mismatch"):
            peek_header(bytes(data))

    @pytest.mark.parametrize(
        "body, message",
        [
            # A valid CRC does not make bad values acceptable.
            (MAGIC + bytes([1, len(MODES)]) + b"\x01\x01\x01\x00\x00" + bytes(12) + b"\x00", "mode"),
            (MAGIC + b"\x01\x02" + b"\x00\x01\x01\x00\x00" + bytes(12) + b"\x00", "width"),
            (MAGIC + b"\x01\x02" + b"\x01\x01\x00\x00\x00" + bytes(12) + b"\x00", "steps"),
            (MAGIC + b"\x01\x02" + b"\x01\x01\x01\x00\x01\xff" + bytes(12) + b"\x00", "utf-8"),
            (MAGIC + b"\x01\x02" + b"\x01\x01\x01\x00\x00" + bytes(12) + b"\x81\x02", "too many"),
            (MAGIC + b"\x01\x02" + b"\x80\x00", "overlong varint"),
            (MAGIC + b"\x01\x02" + b"\xff" * 11, "longer than 10 bytes"),
            (MAGIC + b"\x01\x02" + b"\xff" * 9 + b"\x02", "out of range"),
            (MAGIC + b"\x01\x02" + b"\x01\x01\x01\x00\xff\x7f", "length out of range"),
        ],
        ids=["mode", "zero width", "zero steps", "bad utf-8", "metadata count",
             "overlong", "long varint", "varint range", "name length"],
    )
    def test_bad_header_values(self, body: bytes, message: str) -> None:
        with pytest.raises(FormatError, match=message):
            peek_header(_with_crc(body))

    @pytest.mark.parametrize("cut", range(len(COMPACT_SAMPLE)))
    def test_every_compact_truncation(self, cut: int) -> None:
        with pytest.raises(FormatError):
            unpack(COMPACT_SAMPLE[:cut])
        with pytest.raises(FormatError):
            peek_header(COMPACT_SAMPLE[:cut])

    @pytest.mark.parametrize(
        "body, message",
        [
            # with a valid CRC: the values are still judged
            (MAGIC + bytes([COMPACT + 2, 2]) + b"\x01\x01\x01\x00" + bytes([len(MODEL_IDS)]) + bytes(6),
             rf"newer ardmzip \(model id {len(MODEL_IDS)}\)"),
            (MAGIC + bytes([COMPACT + NEWEST_VERSION + 1]) + bytes(20), rf"newer ardmzip \(format version {NEWEST_VERSION + 1}\)"),
            (MAGIC + bytes([COMPACT, 2]) + bytes(20), "unknown format version 128"),
            (MAGIC + bytes([COMPACT + 2, len(MODES)]) + b"\x01\x01\x01\x00\x00" + bytes(6), "mode"),
            (MAGIC + bytes([COMPACT + 2, 2]) + b"\x01\x01\x01\x00\x00" + bytes(5) + b"\x00\x00", "trailing"),
            (MAGIC + bytes([COMPACT + 2, 2]) + b"\x01\x01\x01\x00\x00" + bytes(5) + b"\x02\x05", "truncated"),
            (MAGIC + bytes([COMPACT + 2, 2]) + b"\x01\x01\x01\x00\x00" + bytes(5) + bytes([MAX_STREAMS + 1]),
             "too many streams"),
            (MAGIC + bytes([COMPACT + 2, 2]) + b"\x01\x01\x01\x00", "truncated"),
        ],
        ids=["model id", "newer", "version 0", "mode", "trailing", "stream length", "stream count", "short"],
    )
    def test_bad_compact_values(self, body: bytes, message: str) -> None:
        with pytest.raises(FormatError, match=message):
            unpack(_with_crc(body))

    def test_compact_messages(self) -> None:
        with pytest.raises(FormatError, match="corrupt .ardm file: file checksum mismatch"):
            unpack(COMPACT_SAMPLE[:-1] + bytes([COMPACT_SAMPLE[-1] ^ 1]))
        with pytest.raises(FormatError, match="file checksum mismatch"):
            peek_header(COMPACT_SAMPLE + b"\x00")         # a byte after the CRC moves the CRC
        with pytest.raises(FormatError, match="truncated"):
            unpack(COMPACT_SAMPLE[:8])

    def test_huge_stream_length_is_truncation(self) -> None:
        header = pack(make_header(), [])[:-5]
        streams = b"\x01" + b"\xff" * 9 + b"\x01"  # one stream of 2**64 - 1 bytes
        with pytest.raises(FormatError, match="truncated"):
            unpack(header + streams)

    def test_too_many_streams(self) -> None:
        header = pack(make_header(), [])[:-5]
        section = bytes([MAX_STREAMS + 1]) + b"\x00" * (MAX_STREAMS + 1)
        with pytest.raises(FormatError, match="too many streams"):
            unpack(header + _with_crc(section))

    @pytest.mark.parametrize("seed", range(50))
    def test_random_bytes(self, seed: int) -> None:
        rng = random.Random(seed)
        data = rng.randbytes(rng.randrange(200))
        if seed % 2:  # also get past the magic and version checks
            data = MAGIC + b"\x01" + data
        with pytest.raises(FormatError):
            unpack(data)


# ------------------------------------------------------------- properties

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
headers = st.builds(
    Header,
    model_name=texts.filter(lambda s: len(s.encode()) <= 255),
    model_hash=st.binary(min_size=8, max_size=8),
    mode=st.sampled_from(MODES),
    width=st.integers(1, 2**31 - 1),
    height=st.integers(1, 2**31 - 1),
    steps=st.integers(1, 2**32 - 1),
    seed=st.integers(0, 2**64 - 1),
    pixel_crc=st.integers(0, 2**32 - 1),
    metadata=st.dictionaries(texts.filter(lambda s: 1 <= len(s.encode()) <= 255),
                             st.binary(max_size=64), max_size=8).map(lambda d: tuple(d.items())),
)
# headers of the registered models: the compact layout
compact_headers = st.builds(lambda h, i: replace(h, model_name=MODEL_IDS[i][0], model_hash=bytes.fromhex(MODEL_IDS[i][1])),
                            headers, st.integers(0, len(MODEL_IDS) - 1))
stream_lists = st.lists(st.binary(max_size=300), max_size=8)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    data = bytearray(pack(draw(st.one_of(headers, compact_headers)), draw(stream_lists)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 4))]
        else:
            del data[pos:]
    return bytes(data)


class TestProperties:
    @FAST
    @given(headers, stream_lists)
    def test_round_trip(self, header: Header, streams: list[bytes]) -> None:
        data = pack(header, streams)
        assert unpack(data) == (header, tuple(streams))
        assert peek_header(data) == header

    @FAST
    @given(compact_headers, stream_lists)
    def test_compact_round_trip(self, header: Header, streams: list[bytes]) -> None:
        data = pack(header, streams)
        assert data[4] == COMPACT + header.version
        assert unpack(data) == (header, tuple(streams)) == unpack(pack(header, streams, compact=False))
        assert peek_header(data) == header

    @FAST
    @given(st.binary(max_size=300))
    def test_arbitrary_bytes_only_raise_format_error(self, data: bytes) -> None:
        for candidate in (data, MAGIC + bytes([FORMAT_VERSION]) + data, MAGIC + bytes([COMPACT + FORMAT_VERSION]) + data,
                          _with_crc(MAGIC + bytes([COMPACT + FORMAT_VERSION]) + data)):
            try:
                unpack(candidate)
            except FormatError:
                pass
            try:
                peek_header(candidate)
            except FormatError:
                pass

    @FAST
    @given(mutated_files())
    def test_mutated_files_only_raise_format_error(self, data: bytes) -> None:
        # A mutation may be a no-op (same byte written back); then it parses.
        try:
            header, streams = unpack(data)
        except FormatError:
            return
        assert pack(header, streams) == data

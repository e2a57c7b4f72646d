"""16-bit pictures: the low-byte coder, 16-bit PNG/TIFF in and out, the codec and the CLI."""
from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ardmzip
from ardmzip import codec, constraint, container, imageio, lowbyte, sixteen
from ardmzip.errors import ChecksumError, FormatError, InputError
from helpers import full_layout

pytestmark = pytest.mark.usefixtures("one_thread")


def smooth16(h: int, w: int, c: int, seed: int = 0, bits: int = 16, noise: float = 40) -> np.ndarray:
    """A smooth 16-bit picture with a little noise, ``bits`` significant bits stored
    left-shifted (as 10/12/14-bit cameras and scanners write them)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    chans = [32768 + 20000 * np.sin(x / 9.0 + k) + 9000 * np.cos(y / 7.0) + rng.normal(0, noise, (h, w))
             for k in range(c)]
    a = np.clip(np.stack(chans, -1), 0, 65535).astype(np.uint16)
    return (a >> (16 - bits) << (16 - bits)).astype(np.uint16)


def low_roundtrip(a: np.ndarray) -> tuple[bytes, np.ndarray]:
    high, low = lowbyte.split(a)
    data, _ = lowbyte.encode(high, low)
    return data, lowbyte.join(high, lowbyte.decode(high, data))


class TestLowByte:
    @pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 3), (7, 1, 2), (9, 12, 4), (16, 20, 1)])
    def test_exact_on_every_shape(self, shape):
        a = smooth16(shape[0], shape[1], shape[2], seed=sum(shape))
        _, back = low_roundtrip(a)
        assert np.array_equal(back, a)

    def test_same_bytes_every_time(self):
        a = smooth16(20, 24, 3)
        assert low_roundtrip(a)[0] == low_roundtrip(a.copy())[0]

    def test_noise_is_stored_not_grown(self):
        a = np.random.default_rng(0).integers(0, 65536, (30, 40, 3), dtype=np.uint16)
        data, back = low_roundtrip(a)
        assert np.array_equal(back, a) and len(data) == 1 + a.size and data[0] == lowbyte.STORED

    def test_left_shifted_12_bit_codes_only_its_4_low_bits(self):
        a = smooth16(48, 64, 3, bits=12)
        data, back = low_roundtrip(a)
        assert np.array_equal(back, a)
        assert 8 * len(data) / a.size < 4.2          # 4 significant low bits: the other 4 are implied

    def test_8_bit_times_257_costs_almost_nothing(self):
        a = (smooth16(64, 64, 1) >> 8) * np.uint16(257)
        data, back = low_roundtrip(a)
        assert np.array_equal(back, a) and 8 * len(data) / a.size < 0.2

    def test_smooth_16_bit_is_predicted(self):
        y, x = np.mgrid[0:64, 0:64]                   # a gentle ramp, noise of about 4.6 bits a sample
        noise = np.random.default_rng(0).normal(0, 4, (64, 64))
        a = np.clip(1000 + 300 * x + 200 * y + 2 * x * y + noise, 0, 65535).astype(np.uint16)[..., None]
        data, back = low_roundtrip(a)
        assert np.array_equal(back, a) and 8 * len(data) / a.size < 6.5     # measured 6.15

    def test_damaged_stream_never_raises_anything_but_format_error(self):
        a = smooth16(12, 16, 2)
        high, low = lowbyte.split(a)
        data, _ = lowbyte.encode(high, low)
        for i in (0, 1, 3, len(data) // 2, len(data) - 1):
            bad = bytearray(data)
            bad[i] ^= 0x10
            try:
                out = lowbyte.decode(high, bytes(bad))
            except FormatError:
                continue
            assert out.shape == low.shape and out.dtype == np.uint8     # wrong values: the pixel CRC's job
        with pytest.raises(FormatError):
            lowbyte.decode(high, data[:len(data) // 2])


def png16(a: np.ndarray, **meta) -> bytes:
    return imageio.picture_to_png(imageio.Picture(a, sixteen.MODES[a.shape[2]], tuple(meta.items())))


class TestFiles:
    @pytest.mark.parametrize("channels", [1, 2, 3, 4])
    def test_png_round_trip_with_metadata(self, channels):
        a = np.random.default_rng(channels).integers(0, 65536, (5, 7, channels), dtype=np.uint16)
        meta = {"dpi": (2835).to_bytes(4, "big") * 2, "gAMA": (45455).to_bytes(4, "big")}
        if channels in (1, 3):
            meta["transparency"] = bytes(range(2 * channels))
        meta["text:Comment"] = "16-bit \u20ac".encode()
        picture = imageio.read_picture(png16(a, **meta))
        assert picture.mode == sixteen.MODES[channels] and picture.pixels.dtype == np.uint16
        assert np.array_equal(picture.pixels, a) and dict(picture.metadata) == meta

    def test_written_png_reads_the_same_in_pillow_and_libpng(self):
        a = (np.arange(40 * 30, dtype=np.uint16) * 53).reshape(30, 40, 1)
        data = png16(a)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), a[..., 0])     # Pillow: "I;16"
        imagecodecs = pytest.importorskip("imagecodecs")
        rgb = np.random.default_rng(0).integers(0, 65536, (6, 9, 3), dtype=np.uint16)
        assert np.array_equal(imagecodecs.png_decode(png16(rgb)), rgb)

    @pytest.mark.parametrize("planar", ["contig", "separate"])
    @pytest.mark.parametrize("channels", [1, 2, 3, 4])
    def test_tiff(self, channels, planar):
        tifffile = pytest.importorskip("tifffile")
        a = np.random.default_rng(channels).integers(0, 65536, (6, 5, channels), dtype=np.uint16)
        buffer = io.BytesIO()
        kw = {"extrasamples": ["unassalpha"]} if channels in (2, 4) else {}
        data = a[..., 0] if channels == 1 else np.moveaxis(a, -1, 0) if planar == "separate" else a
        tifffile.imwrite(buffer, data, photometric="rgb" if channels > 2 else "minisblack",
                         planarconfig=planar if channels > 1 else None, compression="zlib", **kw)
        picture = imageio.read_picture(buffer.getvalue())
        assert picture.mode == sixteen.MODES[channels] and np.array_equal(picture.pixels, a)

    def test_refused_with_a_reason(self):
        tifffile = pytest.importorskip("tifffile")
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.zeros((4, 4), np.int16))
        with pytest.raises(InputError, match="unsigned"):
            imageio.read_picture(buffer.getvalue())
        pgm = b"P5 4 4 65535\n" + bytes(32)
        with pytest.raises(InputError, match="16-bit PNG or TIFF"):
            imageio.read_picture(pgm)

    def test_damaged_png_is_one_input_error(self):
        data = bytearray(png16(np.zeros((8, 8, 3), np.uint16)))
        idat = data.index(b"IDAT")
        data[idat + 6] ^= 0xFF
        with pytest.raises(InputError):
            imageio.read_picture(bytes(data))


class TestCodec:
    @pytest.mark.parametrize("shape", [(9, 11, 1), (8, 6, 2), (10, 12, 3), (7, 9, 4)])
    def test_api_round_trip(self, shape):
        a = smooth16(*shape, seed=shape[0])
        data = ardmzip.compress(a, steps=2)
        assert container.unpack(data)[0].version == container.SIXTEEN_BIT_VERSION
        out = ardmzip.decompress(data)
        assert out.dtype == np.uint16 and np.array_equal(out.reshape(a.shape), a)

    def test_older_versions_refused(self):
        with pytest.raises(InputError, match="format version 5"):
            ardmzip.compress(smooth16(4, 4, 1), steps=1, version=4)

    def test_damage_is_reported(self):
        a = smooth16(8, 8, 3)
        data = bytearray(ardmzip.compress(a, steps=1))
        header, streams = container.unpack(bytes(data))
        low = bytearray(streams[-1])
        low[-1] ^= 1
        damaged = container.pack(header, [*streams[:-1], bytes(low)])
        with pytest.raises((FormatError, ChecksumError)):
            ardmzip.decompress(damaged)
        as_v4 = container.pack(container.Header(**{**header.__dict__, "version": 4}), streams)
        with pytest.raises(FormatError, match="16-bit mode in a format version 4 file"):
            ardmzip.decompress(as_v4)

    def test_pixel_crc_is_little_endian(self):
        a = np.array([[[0x0102]]], np.uint16)
        assert codec.pixel_crc(a) == codec.pixel_crc(a.astype(">u2")) == zlib.crc32(b"\x02\x01")


def test_cli_png_round_trip(tmp_path, invoke):
    a = smooth16(10, 12, 3, bits=12)
    src = tmp_path / "deep.png"
    src.write_bytes(png16(a, **{"text:Title": b"deep"}))
    assert invoke("compress", "-1", src).exit_code == 0
    result = invoke("decompress", tmp_path / "deep.ardm", "-o", tmp_path / "back.png")
    assert result.exit_code == 0, result.stderr
    back = imageio.read_picture(tmp_path / "back.png")
    assert back.mode == "RGB16" and np.array_equal(back.pixels, a) and dict(back.metadata) == {"text:Title": b"deep"}


def test_info_and_progress_know_the_low_byte_stream():
    from ardmzip import files, progress
    data = ardmzip.compress(smooth16(6, 8, 4, bits=12), steps=1)
    described = files.info(data)
    assert described["mode"] == "RGBA16" and described["planes"][-1].startswith("low bytes")
    *planes, low = container.unpack(data)[1]
    assert low[0] == lowbyte.CODED                                 # would look like a plain plane
    needs_network = sum(p[0] not in (constraint.CONSTANT, constraint.STORED) for p in planes)
    assert progress.decoded_planes(data) == (needs_network, 1)


def test_truncated_low_stream_stops_early():
    """A low stream cut short is refused once it has yielded more information than its bytes
    hold, long before the end of a large picture."""
    a = np.random.default_rng(3).integers(0, 65536, (64, 64, 1), dtype=np.uint16)
    a = (a >> 4 << 4) | (a >> 12)                      # 12-bit data rescaled: coded, not stored
    high, low = lowbyte.split(a)
    data, _ = lowbyte.encode(high, low)
    assert data[0] == lowbyte.CODED
    _, start = lowbyte._parse_head(data, 1)                # the value map, then the ANS words
    cut = data[:start + (len(data) - start) // 8 // 4 * 4]
    with pytest.raises(FormatError, match="truncated or damaged"):
        lowbyte.decode(high, cut)


# Format version 5 pinned: tests/data/v5/xic-s48-rgba16.ardm holds v5_image() at steps=3 (a
# 16-bit RGBA picture with a full 16-bit, a left-shifted 12-bit, an 8-bit x 257 and a
# constant channel). It must keep decoding to it, and the encoder must keep writing it.
V5_FILE = Path(__file__).parent / "data" / "v5" / "xic-s48-rgba16.ardm"


def v5_image() -> np.ndarray:
    y, x = np.mgrid[0:20, 0:24]
    r = (x * 2000 + y * 1500 + (x * y) % 7 * 37) % 65536
    g = r >> 4 << 4
    b = (x * 11 + y * 5) % 256 * 257
    return np.stack([r, g, b, np.full_like(r, 65535)], -1).astype(np.uint16)


def test_version_5_file_decodes_and_is_rewritten_byte_for_byte():
    data = V5_FILE.read_bytes()
    assert data[4] == 5 and np.array_equal(ardmzip.decompress(data), v5_image())
    assert full_layout(ardmzip.compress(v5_image(), steps=3, model="xic-s48")) == data


def test_folder_archive_keeps_16_bit_pictures(tmp_path, invoke):
    folder = tmp_path / "in"
    folder.mkdir()
    deep = smooth16(8, 10, 4, bits=12)
    (folder / "deep.png").write_bytes(png16(deep))
    Image.fromarray((deep[..., :3] >> 8).astype(np.uint8)).save(folder / "plain.png")
    assert invoke("compress", "-1", folder, "-o", tmp_path / "a.ardm").exit_code == 0
    result = invoke("decompress", tmp_path / "a.ardm", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    back = imageio.read_picture(tmp_path / "out" / "deep.png")
    assert back.mode == "RGBA16" and np.array_equal(back.pixels, deep)
    assert imageio.read_picture(tmp_path / "out" / "plain.png").mode == "RGB"

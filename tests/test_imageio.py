"""Tests for ardmzip.imageio: lossless reading, PNG round trips, refusals, atomic writes.

Every test image is made here with numpy and Pillow; no files outside tmp_path are read.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from ardmzip.errors import InputError, OutputError
from ardmzip.imageio import (
    MODE_CHANNELS,
    PNG_LEVEL,
    Picture,
    picture_from_array,
    picture_to_png,
    read_picture,
    write_file_atomic,
)

RNG = np.random.default_rng(20240601)
H, W = 7, 9


def random_image(mode: str) -> Image.Image:
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    return Image.frombytes(mode, (W, H), RNG.integers(0, 256, (H, W, channels), np.uint8).tobytes())


def palette_image(indices: np.ndarray, palette: bytes) -> Image.Image:
    height, width = indices.shape
    im = Image.frombytes("P", (width, height), indices.astype(np.uint8).tobytes())
    im.putpalette(palette, "RGB")
    return im


def encode(im: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def expected_pixels(im: Image.Image) -> np.ndarray:
    """What read_picture should give: (H, W, C), palette expanded, '1' as 0/255."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "1":
        im = im.convert("L")
    array = np.asarray(im)
    return array.reshape(array.shape[0], array.shape[1], -1)


def assert_round_trip(picture: Picture) -> Picture:
    again = read_picture(picture_to_png(picture))
    assert again.mode == picture.mode
    assert again.pixels.dtype == np.uint8 and again.pixels.flags.c_contiguous
    np.testing.assert_array_equal(again.pixels, picture.pixels)
    assert again.metadata == picture.metadata
    return again


def png_bytes(width: int, height: int, depth: int, colour_type: int, channels: int) -> bytes:
    """A minimal PNG written by hand, for bit depths Pillow will not write."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    row = b"\x00" + bytes(width * channels * depth // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


class TestReadModes:
    @pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
    @pytest.mark.parametrize(
        "fmt, params",
        [("PNG", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}),
         ("TIFF", {"compression": "tiff_adobe_deflate"}), ("TGA", {})],
        ids=["png", "tiff", "tiff-lzw", "tiff-deflate", "tga"],
    )
    def test_plain_modes(self, mode: str, fmt: str, params: dict, tmp_path: Path) -> None:
        im = random_image(mode)
        path = tmp_path / f"image.{fmt.lower()}"
        im.save(path, fmt, **params)
        picture = read_picture(path)
        assert picture.mode == mode
        assert picture.pixels.shape == (H, W, MODE_CHANNELS[mode])
        np.testing.assert_array_equal(picture.pixels, expected_pixels(im))
        assert_round_trip(picture)

    @pytest.mark.parametrize(
        "mode, fmt", [("RGB", "BMP"), ("L", "PPM"), ("RGB", "PPM"), ("RGB", "QOI"), ("RGBA", "QOI")]
    )
    def test_other_formats(self, mode: str, fmt: str) -> None:
        im = random_image(mode)
        picture = read_picture(encode(im, fmt))
        assert picture.mode == mode
        np.testing.assert_array_equal(picture.pixels, expected_pixels(im))
        assert_round_trip(picture)

    @pytest.mark.parametrize("mode", ["RGB", "RGBA"])
    def test_lossless_webp(self, mode: str) -> None:
        im = random_image(mode)
        # exact=True: by default libwebp drops the colour of fully transparent pixels.
        picture = read_picture(encode(im, "WEBP", lossless=True, exact=True))
        assert picture.mode == mode
        np.testing.assert_array_equal(picture.pixels, expected_pixels(im))
        assert_round_trip(picture)

    @pytest.mark.parametrize("fmt", ["PNG", "PPM", "BMP", "TIFF"])
    def test_bilevel(self, fmt: str) -> None:
        im = random_image("L").point(lambda v: 255 if v > 127 else 0).convert("1")
        picture = read_picture(encode(im, fmt))
        assert picture.mode == "1"
        assert set(np.unique(picture.pixels)) <= {0, 255}
        np.testing.assert_array_equal(picture.pixels, expected_pixels(im))
        again = assert_round_trip(picture)
        assert Image.open(io.BytesIO(picture_to_png(again))).mode == "1"

    def test_low_bit_depth_grey_png(self) -> None:
        data = png_bytes(4, 2, 4, 0, 1)  # 4-bit greyscale reads as 8-bit L
        assert read_picture(data).mode == "L"

    def test_rgbx_tiff_reads_as_rgb(self) -> None:
        im = random_image("RGBA")
        picture = read_picture(encode(im.convert("RGBX"), "TIFF"))
        assert picture.mode == "RGB"
        np.testing.assert_array_equal(picture.pixels, expected_pixels(im)[:, :, :3])

    def test_path_str_and_bytes_agree(self, tmp_path: Path) -> None:
        path = tmp_path / "x.png"
        data = encode(random_image("RGB"))
        path.write_bytes(data)
        for source in (path, str(path), data, bytearray(data)):
            np.testing.assert_array_equal(read_picture(source).pixels, read_picture(data).pixels)


class TestPalette:
    PALETTE = bytes([10, 20, 30, 200, 100, 0, 0, 0, 0, 255, 255, 255, 1, 2, 3])

    def indices(self, colours: int = 5) -> np.ndarray:
        return RNG.integers(0, colours, (H, W), np.uint8)

    def png_indices(self, png: bytes) -> np.ndarray:
        im = Image.open(io.BytesIO(png))
        assert im.mode == "P"
        return np.asarray(im)

    @pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF"])
    def test_exact_indices(self, fmt: str) -> None:
        idx = self.indices()
        im = palette_image(idx, self.PALETTE)
        picture = read_picture(encode(im, fmt))
        assert picture.mode == "P"
        np.testing.assert_array_equal(picture.pixels, expected_pixels(im))
        assert dict(picture.metadata)["palette"][: len(self.PALETTE)] == self.PALETTE
        np.testing.assert_array_equal(self.png_indices(picture_to_png(picture)), idx)
        assert_round_trip(picture)

    @pytest.mark.parametrize("transparency", [2, bytes([255, 128, 0, 255, 7])],
                             ids=["index", "alpha"])
    def test_transparency(self, transparency: int | bytes) -> None:
        idx = self.indices()
        data = encode(palette_image(idx, self.PALETTE), transparency=transparency)
        picture = read_picture(data)
        assert picture.mode == "PA"
        assert picture.pixels.shape == (H, W, 4)
        np.testing.assert_array_equal(picture.pixels, expected_pixels(Image.open(io.BytesIO(data))))
        np.testing.assert_array_equal(self.png_indices(picture_to_png(picture)), idx)
        assert_round_trip(picture)

    def test_gif_transparency(self) -> None:
        idx = self.indices(4)
        picture = read_picture(encode(palette_image(idx, self.PALETTE[:12]), "GIF", transparency=1))
        assert picture.mode == "PA"
        assert (picture.pixels[:, :, 3][idx == 1] == 0).all()
        assert (picture.pixels[:, :, 3][idx != 1] == 255).all()
        np.testing.assert_array_equal(self.png_indices(picture_to_png(picture)), idx)

    def test_unused_duplicate_colours_keep_palette(self) -> None:
        palette = bytes([5, 5, 5, 5, 5, 5, 9, 9, 9]) + bytes(3 * 253)  # padded to 256
        idx = self.indices(3)
        idx[idx == 1] = 2  # entry 1 repeats entry 0's colour but is never used
        picture = read_picture(encode(palette_image(idx, palette)))
        assert picture.mode == "P"
        np.testing.assert_array_equal(self.png_indices(picture_to_png(picture)), idx)

    def test_ambiguous_palette_falls_back_to_rgb(self) -> None:
        palette = bytes([5, 5, 5, 5, 5, 5, 9, 9, 9])  # entries 0 and 1 share a colour
        idx = np.arange(H * W, dtype=np.uint8).reshape(H, W) % 3
        im = palette_image(idx, palette)
        picture = read_picture(encode(im))
        assert picture.mode == "RGB"
        assert "palette" not in dict(picture.metadata)
        np.testing.assert_array_equal(picture.pixels, expected_pixels(im))
        assert_round_trip(picture)

    def test_colours_missing_from_palette_write_rgb(self) -> None:
        picture = read_picture(encode(palette_image(self.indices(), self.PALETTE)))
        changed = picture.pixels.copy()
        changed[0, 0] = (123, 45, 67)
        other = Picture(changed, "P", picture.metadata)
        back = Image.open(io.BytesIO(picture_to_png(other)))
        assert back.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(back), changed)


class TestMetadata:
    def test_png_metadata_round_trip(self) -> None:
        icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        exif = Image.Exif()
        exif[0x010E] = "a description"
        info = PngImagePlugin.PngInfo()
        info.add_text("Title", "plain latin-1 é")
        info.add_itxt("Comment", "snowman ☃")
        info.add_text("Compressed", "z" * 100, zip=True)
        info.add(b"gAMA", (45455).to_bytes(4, "big"))
        data = encode(random_image("RGB"), icc_profile=icc, exif=exif.tobytes(), pnginfo=info,
                      dpi=(300, 300), transparency=(1, 2, 3))
        picture = read_picture(data)
        meta = dict(picture.metadata)
        assert meta["icc"] == icc
        assert meta["exif"].startswith((b"II*\x00", b"MM\x00*"))
        assert meta["text:Title"] == "plain latin-1 é".encode()
        assert meta["text:Comment"] == "snowman ☃".encode()
        assert meta["text:Compressed"] == b"z" * 100
        assert meta["transparency"] == bytes([0, 1, 0, 2, 0, 3])
        assert meta["gAMA"] == (45455).to_bytes(4, "big")
        assert "dpi" in meta
        back = Image.open(io.BytesIO(picture_to_png(picture)))
        assert back.info["icc_profile"] == icc
        assert back.getexif()[0x010E] == "a description"
        assert back.text["Comment"] == "snowman ☃"
        assert back.info["transparency"] == (1, 2, 3)
        assert back.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert_round_trip(picture)

    def test_grey_transparency_and_srgb(self) -> None:
        info = PngImagePlugin.PngInfo()
        info.add(b"sRGB", b"\x01")
        picture = read_picture(encode(random_image("L"), transparency=7, pnginfo=info))
        assert dict(picture.metadata) == {"sRGB": b"\x01", "transparency": b"\x00\x07"}
        assert_round_trip(picture)

    def test_webp_and_tiff_metadata(self) -> None:
        icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        for data in (encode(random_image("RGB"), "WEBP", lossless=True, icc_profile=icc),
                     encode(random_image("RGB"), "TIFF", icc_profile=icc)):
            picture = read_picture(data)
            assert dict(picture.metadata)["icc"] == icc
            assert_round_trip(picture)

    def test_no_metadata(self) -> None:
        assert read_picture(encode(random_image("RGB"))).metadata == ()

    def test_unknown_keys_are_ignored(self) -> None:
        picture = picture_from_array(RNG.integers(0, 256, (3, 4, 3), np.uint8))
        odd = Picture(picture.pixels, "RGB", (("future-key", b"x"), ("text:\u2603", b"y")))
        np.testing.assert_array_equal(read_picture(picture_to_png(odd)).pixels, picture.pixels)


def tiff_16bit_rgb() -> bytes:
    """A 1x1 uncompressed 16-bit RGB TIFF, which Pillow opens as 8-bit RGB."""
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 3, 8 + 2 + 12 * 9 + 4),
               (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 8 + 2 + 12 * 9 + 4 + 6),
               (277, 3, 1, 3), (278, 3, 1, 1), (279, 4, 1, 6)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16) + bytes(6)


def refusals() -> dict[str, bytes]:
    rgb = random_image("RGB")
    frame2 = rgb.transpose(Image.Transpose.ROTATE_180)
    return {
        "jpeg": encode(rgb, "JPEG"),
        "lossy webp": encode(rgb, "WEBP", quality=80),
        "lossy webp alpha": encode(random_image("RGBA"), "WEBP", quality=80),
        "tiff float": encode(Image.new("F", (3, 3)), "TIFF"),
        "tiff jpeg": encode(rgb, "TIFF", compression="jpeg"),
        "ppm 16-bit": b"P6 2 2 65535\n" + bytes(24),
        "pgm 16-bit": b"P5 2 2 65535\n" + bytes(8),
        "animated gif": encode(rgb, "GIF", save_all=True, append_images=[frame2]),
        "apng": encode(rgb, "PNG", save_all=True, append_images=[frame2]),
        "multipage tiff": encode(rgb, "TIFF", save_all=True, append_images=[frame2]),
        "cmyk": encode(rgb.convert("CMYK"), "TIFF"),
        "ycbcr": encode(rgb.convert("YCbCr"), "TIFF"),
        "lab": encode(rgb.convert("LAB"), "TIFF"),
        "random bytes": RNG.integers(0, 256, 500, np.uint8).tobytes(),
        "truncated png": encode(rgb)[:60],
        "text": b"hello, world\n",
    }


REFUSALS = refusals()
SIXTEEN_BIT = {   # read exactly as 16-bit pictures (sixteen.py), not refused any more
    "png 16-bit grey": (png_bytes(2, 2, 16, 0, 1), "L16", (2, 2, 1)),
    "png 16-bit rgb": (png_bytes(2, 2, 16, 2, 3), "RGB16", (2, 2, 3)),
    "png 16-bit grey alpha": (png_bytes(2, 2, 16, 4, 2), "LA16", (2, 2, 2)),
    "png 16-bit rgba": (png_bytes(2, 2, 16, 6, 4), "RGBA16", (2, 2, 4)),
    "tiff 16-bit grey": (encode(Image.new("I;16", (3, 3)), "TIFF"), "L16", (3, 3, 1)),
    "tiff 16-bit rgb": (tiff_16bit_rgb(), "RGB16", (1, 1, 3)),
}


@pytest.mark.parametrize("name", SIXTEEN_BIT)
def test_16_bit_files_are_read_as_16_bit(name: str) -> None:
    data, mode, shape = SIXTEEN_BIT[name]
    picture = read_picture(data)
    assert picture.mode == mode and picture.pixels.dtype == np.uint16 and picture.pixels.shape == shape
    assert not picture.pixels.any()
EXPECTED_MESSAGE = {
    "jpeg": "lossy JPEG", "lossy webp": "lossy WebP", "lossy webp alpha": "lossy WebP",
    "tiff jpeg": "lossy JPEG", "animated gif": "has 2 frames", "apng": "has 2 frames",
    "multipage tiff": "has 2 frames", "cmyk": "unsupported image mode CMYK",
    "ycbcr": "unsupported image mode YCbCr", "lab": "unsupported image mode LAB",
    "random bytes": "cannot read", "truncated png": "cannot read", "text": "cannot read",
}


def zlib_level_class(png: bytes) -> int:
    """FLEVEL of a PNG's zlib stream (RFC 1950): 0 for zlib levels 0-1, 1 for 2-5, 2 for 6, 3 for 7-9."""
    at = png.index(b"IDAT") + 4
    return png[at + 1] >> 6


class TestPngLevel:
    @pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1"])
    def test_default_is_9_and_any_level_keeps_the_picture(self, mode: str) -> None:
        picture = read_picture(encode(random_image("RGB").convert(mode) if mode in "P1" else random_image(mode)))
        assert PNG_LEVEL == 9 and zlib_level_class(picture_to_png(picture)) == 3
        for level, flevel in [(0, 0), (1, 0), (5, 1), (6, 2), (9, 3)]:
            png = picture_to_png(picture, level)
            assert zlib_level_class(png) == flevel
            back = read_picture(png)
            assert back.mode == picture.mode and np.array_equal(back.pixels, picture.pixels)

    def test_level_9_is_smaller_than_pillows_default_on_a_photo_like_picture(self) -> None:
        y, x = np.mgrid[0:96, 0:128]
        px = (128 + 60 * np.sin(x / 9) * np.cos(y / 13) + RNG.normal(0, 2, x.shape)).clip(0, 255).astype(np.uint8)
        picture = picture_from_array(np.dstack([px, px // 2, 255 - px]))
        assert len(picture_to_png(picture)) < len(picture_to_png(picture, 6)) < len(picture_to_png(picture, 0))

    @pytest.mark.parametrize("level", [-1, 10, 6.0, True])
    def test_bad_levels_are_refused(self, level: object) -> None:
        with pytest.raises(InputError, match="0 .. 9"):
            picture_to_png(picture_from_array(np.zeros((2, 2, 3), np.uint8)), level)  # type: ignore[arg-type]


class TestRefusals:
    @pytest.mark.parametrize("name", REFUSALS)
    def test_refused(self, name: str, tmp_path: Path) -> None:
        path = tmp_path / "input"
        path.write_bytes(REFUSALS[name])
        for source, shown in ((path, str(path)), (REFUSALS[name], "image data")):
            with pytest.raises(InputError) as info:
                read_picture(source)
            message = str(info.value)
            assert "\n" not in message
            assert EXPECTED_MESSAGE.get(name, "more than 8 bits per sample") in message
            assert shown in message

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="no such file"):
            read_picture(tmp_path / "absent.png")

    def test_empty_file(self, tmp_path: Path) -> None:
        (tmp_path / "empty.png").write_bytes(b"")
        with pytest.raises(InputError, match="empty"):
            read_picture(tmp_path / "empty.png")

    def test_directory(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="directory"):
            read_picture(tmp_path)


class TestFuzz:
    def test_mutated_images_round_trip_or_raise_input_error(self) -> None:
        rgb = random_image("RGB")
        seeds = [encode(rgb), encode(rgb.quantize(6), transparency=2), encode(rgb, "GIF"),
                 encode(rgb, "BMP"), encode(rgb, "TIFF"), encode(rgb, "WEBP", lossless=True)]
        rng = np.random.default_rng(7)
        for _ in range(400):
            data = bytearray(seeds[rng.integers(len(seeds))])
            for _ in range(rng.integers(1, 4)):
                data[rng.integers(len(data))] = rng.integers(256)
            try:
                picture = read_picture(bytes(data))
            except InputError:
                continue
            assert_round_trip(picture)


class TestPictureFromArray:
    @pytest.mark.parametrize(
        "shape, mode", [((4, 5), "L"), ((4, 5, 1), "L"), ((4, 5, 2), "LA"), ((4, 5, 3), "RGB"),
                        ((4, 5, 4), "RGBA")]
    )
    def test_modes(self, shape: tuple[int, ...], mode: str) -> None:
        array = RNG.integers(0, 256, shape, np.uint8)
        picture = picture_from_array(array)
        assert picture.mode == mode
        assert picture.pixels.shape == (4, 5, MODE_CHANNELS[mode])
        np.testing.assert_array_equal(picture.pixels.reshape(shape), array)
        assert_round_trip(picture)

    def test_non_contiguous_input_is_copied(self) -> None:
        array = RNG.integers(0, 256, (6, 8, 3), np.uint8)[::2, ::-1]
        picture = picture_from_array(array)
        assert picture.pixels.flags.c_contiguous
        np.testing.assert_array_equal(picture.pixels, array)

    @pytest.mark.parametrize(
        "array",
        [np.zeros((4, 4), np.int16), np.zeros((4, 4), np.float32), np.zeros(4, np.uint8),
         np.zeros((2, 2, 2, 2), np.uint8), np.zeros((4, 4, 5), np.uint8),
         np.zeros((0, 4), np.uint8), np.zeros((4, 0, 3), np.uint8), [[1, 2]]],
        ids=["int16", "float", "1d", "4d", "5 channels", "no rows", "no columns", "list"],
    )
    def test_refused(self, array: object) -> None:
        with pytest.raises(InputError):
            picture_from_array(array)  # type: ignore[arg-type]

    def test_picture_validates_channels(self) -> None:
        with pytest.raises(ValueError):
            Picture(np.zeros((2, 2, 3), np.uint8), "RGBA")


class TestWriteFileAtomic:
    def test_writes_new_file(self, tmp_path: Path) -> None:
        target = tmp_path / "out.ardm"
        write_file_atomic(target, b"payload")
        assert target.read_bytes() == b"payload"
        assert os.listdir(tmp_path) == ["out.ardm"]

    def test_refuses_existing_without_force(self, tmp_path: Path) -> None:
        target = tmp_path / "out.ardm"
        target.write_bytes(b"old")
        with pytest.raises(OutputError, match="exists; use -f to overwrite"):
            write_file_atomic(target, b"new")
        assert target.read_bytes() == b"old"

    def test_force_overwrites(self, tmp_path: Path) -> None:
        target = tmp_path / "out.ardm"
        target.write_bytes(b"old")
        write_file_atomic(str(target), b"new", force=True)
        assert target.read_bytes() == b"new"
        assert os.listdir(tmp_path) == ["out.ardm"]

    def test_missing_directory(self, tmp_path: Path) -> None:
        with pytest.raises(OutputError, match="cannot write"):
            write_file_atomic(tmp_path / "nowhere" / "out.ardm", b"x")
        assert os.listdir(tmp_path) == []

    def test_failed_replace_leaves_old_file_and_no_temp(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        target = tmp_path / "out.ardm"
        target.write_bytes(b"old")

        def broken_replace(src: object, dst: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(OutputError, match="No space left on device"):
            write_file_atomic(target, b"new", force=True)
        assert target.read_bytes() == b"old"
        assert os.listdir(tmp_path) == ["out.ardm"]

    def test_target_is_directory(self, tmp_path: Path) -> None:
        (tmp_path / "sub").mkdir()
        with pytest.raises(OutputError):
            write_file_atomic(tmp_path / "sub", b"x", force=True)
        assert os.listdir(tmp_path) == ["sub"]

    def test_file_mode_follows_umask(self, tmp_path: Path) -> None:
        old = os.umask(0o022)
        try:
            write_file_atomic(tmp_path / "out", b"x")
        finally:
            os.umask(old)
        assert (tmp_path / "out").stat().st_mode & 0o777 == 0o644

"""Reading and writing pictures losslessly with Pillow.

``read_picture`` turns an 8-bit image file (PNG, BMP, PPM/PGM/PBM, TIFF,
lossless WebP, single-frame GIF, TGA, QOI, PCX) into a ``Picture``: an
(H, W, C) uint8 array, the mode to give back and the metadata to keep; a
16-bit PNG or TIFF becomes an (H, W, C) uint16 Picture (modes "L16" ..
"RGBA16", read by ``sixteen.py``: Pillow would drop their low bytes).
Anything that would not survive exactly (JPEG, lossy WebP, other bit depths
above 8, several frames, CMYK and other colour spaces) is refused with an
``InputError``.  ``picture_to_png`` writes a Picture back as PNG bytes that
read back to the same mode, pixels and metadata.

Modes and channels: "L" and "1" have one channel ("1" holds 0/255), "LA"
two, "RGB" three, "RGBA" four.  Palette images store their *expanded*
colours: "P" as RGB and "PA" (a palette with transparency) as RGBA, with the
palette in metadata so the PNG gets identical indices back.  That needs every
used index to be the first palette entry of its colour; when it is not (two
used entries share a colour, or an index lies past the palette) the image is
read as plain "RGB"/"RGBA" instead: same colours, no palette.

Metadata keys (values are bytes, in this order): "icc" (ICC profile), "exif"
(raw TIFF-structured EXIF, without the "Exif\\0\\0" prefix), "dpi" (pixels
per metre, x then y, two big-endian uint32 as in PNG pHYs), "gAMA", "cHRM",
"sRGB" (PNG chunk payloads), "transparency" (PNG tRNS payload: 2 bytes for
L/1, 6 for RGB, per-index alpha for PA), "palette" (RGB triples) and
"text:KEY" (PNG text chunks, utf-8).  Unknown keys are ignored on writing.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import stat
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from . import sixteen
from .container import MAX_PIXELS, check_pixels
from .errors import InputError, LimitError, OutputError

__all__ = ["MODE_CHANNELS", "PNG_LEVEL", "Picture", "read_picture", "picture_to_png",
           "picture_from_array", "write_file_atomic", "write_file_under", "commit_file"]

MODE_CHANNELS: dict[str, int] = {"L": 1, "1": 1, "LA": 2, "RGB": 3, "P": 3, "RGBA": 4, "PA": 4,
                                 "L16": 1, "LA16": 2, "RGB16": 3, "RGBA16": 4}

# Formats whose decoders give exactly the stored 8-bit samples once the checks
# below pass.  Others (JPEG 2000, SGI, ICO...) may quietly drop bits or be
# lossy, so they are refused rather than trusted.
_FORMATS = {"PNG", "BMP", "DIB", "PPM", "TIFF", "WEBP", "GIF", "TGA", "QOI", "PCX"}
_LOSSY_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "JPEG2000": "JPEG 2000 (possibly lossy)"}
_DEEP_MODES = ("I", "F")  # also every "I;16..." mode
_PLAIN_MODES = {"1", "L", "LA", "RGB", "RGBA", "P", "RGBX"}
# TIFF compressions that are lossless: none, CCITT RLE/fax, LZW, deflate
# (two codes), PackBits, LZMA, zstd.  JPEG (6, 7) and the rest are refused.
_TIFF_LOSSLESS = {1, 2, 3, 4, 5, 8, 32946, 32773, 34925, 50000}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT_KEY = re.compile("[\x01-\xff]{1,79}")  # latin-1, no NUL, 1-79 bytes


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare to one bool
class Picture:
    """An image: (H, W, C) pixels (uint16 for the 16-bit modes, else uint8), its mode and metadata."""

    pixels: np.ndarray
    mode: str
    metadata: tuple[tuple[str, bytes], ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODE_CHANNELS:
            raise ValueError(f"unknown picture mode {self.mode!r}")
        pixels = self.pixels
        dtype = np.uint16 if self.mode in sixteen.MODES.values() else np.uint8
        if not isinstance(pixels, np.ndarray) or pixels.dtype != dtype or pixels.ndim != 3:
            raise ValueError(f"pixels of a mode {self.mode} picture must be an (H, W, C) {dtype.__name__} array")
        if pixels.shape[2] != MODE_CHANNELS[self.mode]:
            raise ValueError(f"mode {self.mode} needs {MODE_CHANNELS[self.mode]} channels")
        object.__setattr__(self, "pixels", np.ascontiguousarray(pixels))
        object.__setattr__(self, "metadata", tuple((k, bytes(v)) for k, v in self.metadata))


# ---------------------------------------------------------------- reading


def read_picture(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS) -> Picture:
    """Read an image file (path) or its bytes; raise ``InputError`` if unsupported, and
    ``LimitError`` for a picture over ``max_pixels`` pixels (0: no limit) before decoding it."""
    data, name = _load_bytes(source)
    if sixteen.is_tiff(data) and sixteen.tiff_is_16bit(data):
        return Picture(*sixteen.read_tiff16(data, name, max_pixels))
    im = _open_checked(data, name, max_pixels)
    try:
        return _png16_picture(im, data, name) if sixteen.is_png16(data) else _to_picture(im)
    finally:
        im.close()


def _load_bytes(source: str | os.PathLike | bytes) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "image data"
    else:
        name = os.fsdecode(source)
        try:
            with open(source, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise InputError(f"no such file: {name}") from None
        except IsADirectoryError:
            raise InputError(f"{name} is a directory, not an image") from None
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    if not data:
        raise InputError(f"cannot read {name} as an image (empty file)")
    return data, name


# Pillow's own decompression-bomb limit is a module global. It is lifted only while reading
# with a limit above it (or none), under this lock, so that two such reads cannot interleave
# their saving and restoring of it.
_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_limit(max_pixels: int):
    """Pillow's limit as it is when ``max_pixels`` is within it (then one of the two refuses a
    bomb before its pixels are decoded); none while reading with a larger limit or none."""
    pillow = Image.MAX_IMAGE_PIXELS
    if max_pixels and (pillow is None or max_pixels <= 2 * pillow):
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        pillow = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = pillow


def _open_checked(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode the image, refusing anything not losslessly 8-bit, and a picture
    over ``max_pixels`` as soon as its header is read.

    Pillow raises many exception types on bad input (OSError, SyntaxError,
    ValueError, struct.error, EOFError...), so everything Pillow does here
    sits under one broad handler that turns it into a one-line InputError.
    """
    im: Image.Image | None = None
    try:
        # Pillow warns about damaged tags and chunks it skips, and about pictures between half
        # its limit and its limit; the image is either read or refused here (by max_pixels,
        # not by a warning nobody sees), so those warnings would only be noise.
        with warnings.catch_warnings(), _pillow_limit(max_pixels):
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            check_pixels(im.width, im.height, max_pixels, name)
            _check_lossless(im, data, name)
            im.load()
            if im.format == "PNG":
                im.text  # noqa: B018 - reads text chunks that follow the image data
        return im
    except Exception as exc:  # noqa: BLE001 - see docstring
        if im is not None:
            im.close()
        if isinstance(exc, InputError):
            raise
        if isinstance(exc, UnidentifiedImageError):
            raise InputError(f"cannot read {name} as an image") from None
        if isinstance(exc, Image.DecompressionBombError):
            # Only reached with max_pixels within Pillow's limit, so it is over ours too.
            raise LimitError(f"{name} is over the limit of {max_pixels:,} pixels "
                             f"(--max-pixels N raises it, 0 = no limit)") from None
        detail = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {name} as an image ({detail})") from None


def _check_lossless(im: Image.Image, data: bytes, name: str) -> None:
    fmt = im.format or "unknown"
    lossy = _LOSSY_FORMATS.get(fmt)
    if fmt == "WEBP" and _webp_is_lossy(data) is not False:
        lossy = "WebP"
    if fmt == "TIFF" and im.tag_v2.get(259, 1) in (6, 7):
        lossy = "JPEG-compressed TIFF"
    if lossy:
        raise InputError(f"lossy {lossy} input is not accepted ({name}); "
                         "ardmzip needs a lossless image")
    if fmt not in _FORMATS:
        raise InputError(f"unsupported image format {fmt} ({name})")
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        raise InputError(f"{name} has {frames} frames; ardmzip stores single images")
    mode = im.mode
    if sixteen.is_png16(data):             # its pixels come from pypng (_png16_picture)
        return
    if mode.startswith(_DEEP_MODES) or _deeper_than_8_bits(im, data):
        raise InputError(f"{name} has more than 8 bits per sample; ardmzip reads deeper images "
                         "only as 16-bit PNG or TIFF")
    if mode not in _PLAIN_MODES:
        raise InputError(f"unsupported image mode {mode} ({name})")
    if fmt == "TIFF" and (compression := im.tag_v2.get(259, 1)) not in _TIFF_LOSSLESS:
        raise InputError(f"unsupported TIFF compression {compression} ({name})")


def _deeper_than_8_bits(im: Image.Image, data: bytes) -> bool:
    # Pillow opens 16-bit RGB/RGBA/LA PNGs and TIFFs and deep PPMs as 8-bit
    # modes, dropping the low bits, so the mode alone does not tell.
    if im.format == "PNG":
        return data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and data[24] > 8
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, 1)
        return any(b > 8 for b in (bits if isinstance(bits, tuple) else (bits,)))
    if im.format == "PPM" and im.tile:
        args = im.tile[0].args  # (rawmode, maxval) when maxval is not 255
        return isinstance(args, tuple) and len(args) == 2 and args[1] > 255
    return False


def _webp_is_lossy(data: bytes) -> bool | None:
    """True if any image chunk is VP8 (lossy), False if VP8L only, None if unsure."""
    found: set[bytes] = set()

    def walk(start: int, end: int) -> None:
        pos = start
        while pos + 8 <= end:
            fourcc = data[pos : pos + 4]
            size = int.from_bytes(data[pos + 4 : pos + 8], "little")
            found.add(fourcc)
            if fourcc == b"ANMF":  # animation frame: 16 header bytes, then sub-chunks
                walk(pos + 8 + 16, min(end, pos + 8 + size))
            pos += 8 + size + (size & 1)  # chunks are padded to even length

    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    walk(12, len(data))
    if b"VP8 " in found:
        return True
    return False if b"VP8L" in found else None


def _to_picture(im: Image.Image) -> Picture:
    metadata = _read_metadata(im)
    if im.mode == "P":
        return _palette_picture(im, metadata)
    if im.mode == "1":
        pixels = np.asarray(im.convert("L"))  # 0/255
    elif im.mode == "RGBX":
        pixels = np.asarray(im.convert("RGB"))  # X is padding, not alpha
    else:
        pixels = np.asarray(im)
    mode = "RGB" if im.mode == "RGBX" else im.mode
    transparency = _plain_transparency(mode, im.info.get("transparency"))
    if transparency is not None:
        metadata.append(("transparency", transparency))
    pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], MODE_CHANNELS[mode])
    return Picture(pixels.astype(np.uint8, copy=True), mode, tuple(metadata + _text(im)))


def _png16_picture(im: Image.Image, data: bytes, name: str) -> Picture:
    """A 16-bit PNG: pixels from pypng, metadata from Pillow (which reads the chunks well)."""
    pixels = sixteen.png16_pixels(data, name)
    mode = sixteen.MODES[pixels.shape[2]]
    metadata = _read_metadata(im)
    transparency = _plain_transparency(mode[:-2], im.info.get("transparency"))
    if transparency is not None:
        metadata.append(("transparency", transparency))
    return Picture(pixels, mode, tuple(metadata + _text(im)))


def _read_metadata(im: Image.Image) -> list[tuple[str, bytes]]:
    info = im.info
    out: list[tuple[str, bytes]] = []
    if isinstance(icc := info.get("icc_profile"), bytes) and icc:
        out.append(("icc", icc))
    if isinstance(exif := info.get("exif"), bytes) and exif:
        exif = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        if exif:
            out.append(("exif", exif))
    dpi = info.get("dpi")
    if isinstance(dpi, tuple) and len(dpi) == 2:
        # Pillow's own dpi -> pixels-per-metre rounding, so PNG pHYs round-trips.
        if ppm := _uint32s(dpi, lambda d: int(float(d) / 0.0254 + 0.5)):
            out.append(("dpi", ppm))
    # PNG stores gamma and chromaticities as integers scaled by 100000.
    if gamma := _uint32s((info.get("gamma"),), lambda v: round(v * 100000)):
        out.append(("gAMA", gamma))
    chrm = info.get("chromaticity")
    if isinstance(chrm, tuple) and len(chrm) == 8:
        if chrm := _uint32s(chrm, lambda v: round(v * 100000)):
            out.append(("cHRM", chrm))
    # PNG forbids sRGB beside iCCP and Pillow will not write both, so keep the ICC.
    if isinstance(srgb := info.get("srgb"), int) and 0 <= srgb < 256 and "icc" not in dict(out):
        out.append(("sRGB", bytes([srgb])))
    return out


def _uint32s(values: tuple, convert: Callable[[Any], int]) -> bytes:
    """Big-endian uint32 of each converted value; b"" if any is missing or out of range."""
    try:
        ints = [convert(v) for v in values]
    except (TypeError, ValueError, OverflowError):  # None, NaN, inf, odd types
        return b""
    if not all(0 <= v < 2**32 for v in ints):
        return b""
    return b"".join(v.to_bytes(4, "big") for v in ints)


def _text(im: Image.Image) -> list[tuple[str, bytes]]:
    if im.format != "PNG":
        return []
    return [(f"text:{key}", str(value).encode("utf-8")) for key, value in im.text.items()]


def _plain_transparency(mode: str, value: object) -> bytes | None:
    """The tRNS payload for an L/1/RGB image, None when absent or unusable."""
    if mode in ("L", "1") and isinstance(value, int) and 0 <= value < 2**16:
        return value.to_bytes(2, "big")
    if mode == "RGB" and isinstance(value, tuple) and len(value) == 3:
        if all(isinstance(v, int) and 0 <= v < 2**16 for v in value):
            return b"".join(v.to_bytes(2, "big") for v in value)
    return None


def _palette_picture(im: Image.Image, metadata: list[tuple[str, bytes]]) -> Picture:
    indices = np.asarray(im)
    palette = bytes(im.getpalette("RGB") or b"")
    alpha = _palette_alpha(im, len(palette) // 3)
    pixels = _palette_table(palette, alpha)[indices][:, :, : 4 if alpha else 3]
    # Keep the palette only if picture_to_png will find these very indices again.
    back = _palette_indices(pixels, palette, alpha)
    if back is not None and np.array_equal(back, indices):
        metadata += [("transparency", alpha)] if alpha else []
        metadata.append(("palette", palette))
        return Picture(pixels, "PA" if alpha else "P", tuple(metadata + _text(im)))
    # Same colours, but a palette could not give the indices back: plain image.
    return Picture(pixels, "RGBA" if alpha else "RGB", tuple(metadata + _text(im)))


def _palette_alpha(im: Image.Image, entries: int) -> bytes:
    """Per-entry alpha as in a PNG tRNS chunk, trailing opaque entries dropped."""
    value = im.info.get("transparency")
    if isinstance(value, int) and 0 <= value < 256:
        alpha = b"\xff" * value + b"\x00"
    elif isinstance(value, bytes):
        alpha = value
    elif im.palette is not None and im.palette.mode == "RGBA":
        alpha = bytes(im.getpalette("RGBA") or b"")[3::4]
    else:
        alpha = b""
    # Trimming makes the int, bytes and RGBA-palette spellings of the same
    # transparency identical, so re-reading our own PNG gives the same bytes.
    return alpha[:entries].rstrip(b"\xff")


def _palette_table(palette: bytes, alpha: bytes) -> np.ndarray:
    """(256, 4) RGBA colour of every index; missing entries are opaque black."""
    table = np.zeros((256, 4), np.uint8)
    table[:, 3] = 255
    rgb = np.frombuffer(palette[: len(palette) // 3 * 3][: 256 * 3], np.uint8)
    table[: len(rgb) // 3, :3] = rgb.reshape(-1, 3)
    table[: min(len(alpha), 256), 3] = np.frombuffer(alpha[:256], np.uint8)
    return table


def _palette_indices(pixels: np.ndarray, palette: bytes, alpha: bytes) -> np.ndarray | None:
    """Index of the first palette entry of each pixel's colour; None if one is missing."""
    entries = min(len(palette) // 3, 256)
    if entries == 0:
        return None
    colours = _palette_table(palette, alpha)[:entries, : pixels.shape[2]]
    unique, first = np.unique(_colour_keys(colours), return_index=True)
    keys = _colour_keys(pixels).reshape(pixels.shape[:2])
    pos = np.minimum(np.searchsorted(unique, keys), len(unique) - 1)
    return first[pos].astype(np.uint8) if np.array_equal(unique[pos], keys) else None


def _colour_keys(colours: np.ndarray) -> np.ndarray:
    """One uint32 per colour, packing its 1..4 uint8 channels."""
    flat = colours.reshape(-1, colours.shape[-1]).astype(np.uint32)
    keys = np.zeros(len(flat), np.uint32)
    for c in range(flat.shape[1]):
        keys = (keys << 8) | flat[:, c]
    return keys


# ---------------------------------------------------------------- writing


# zlib level of written PNGs. Against Pillow's default 6, measured on 41 McMaster, Set14 and
# imagecompression.info pictures: 0.5% smaller (1.2% below the original files; 6: 0.7%),
# 1.8x the time, 0.1-0.7 s more a megapixel where decoding the .ardm takes ~70 s.
PNG_LEVEL = 9


def picture_to_png(picture: Picture, level: int = PNG_LEVEL) -> bytes:
    """PNG bytes that ``read_picture`` reads back to the same mode, pixels and metadata;
    ``level``: zlib's 0 (stored, fastest) .. 9 (smallest)."""
    check_png_level(level)
    meta = dict(picture.metadata)
    if picture.mode in sixteen.MODES.values():
        text = [(key[5:], value.decode("utf-8", errors="replace")) for key, value in picture.metadata
                if key.startswith("text:") and _PNG_TEXT_KEY.fullmatch(key[5:])]
        return sixteen.png16_bytes(picture.pixels, meta, level, text)
    h, w, _ = picture.pixels.shape
    im = _palette_image(picture, meta) if picture.mode in ("P", "PA") else None
    if im is None and picture.mode == "1":
        bits = np.packbits(picture.pixels[:, :, 0] >= 128, axis=1)
        im = Image.frombytes("1", (w, h), bits.tobytes())
    elif im is None:
        # A P/PA picture whose colours are not all in its palette lands here too.
        mode = {"P": "RGB", "PA": "RGBA"}.get(picture.mode, picture.mode)
        im = Image.frombytes(mode, (w, h), picture.pixels.tobytes())
    params: dict[str, object] = {"pnginfo": _png_info(picture.metadata), "compress_level": level}
    trns = meta.get("transparency", b"")
    if im.mode == "P" and picture.mode == "PA" and trns:
        params["transparency"] = trns
    elif im.mode in ("1", "L") and len(trns) == 2:
        params["transparency"] = int.from_bytes(trns, "big")
    elif im.mode == "RGB" and len(trns) == 6:
        params["transparency"] = tuple(int.from_bytes(trns[i : i + 2], "big") for i in (0, 2, 4))
    if "icc" in meta:
        params["icc_profile"] = meta["icc"]
    if "exif" in meta:
        params["exif"] = meta["exif"]
    if len(dpi := meta.get("dpi", b"")) == 8:
        params["dpi"] = tuple(int.from_bytes(dpi[i : i + 4], "big") * 0.0254 for i in (0, 4))
    buffer = io.BytesIO()
    im.save(buffer, "PNG", **params)
    return buffer.getvalue()


def check_png_level(level: int) -> None:
    """InputError unless ``level`` is a zlib level, 0 .. 9 (callers check before decoding)."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise InputError(f"PNG compression level must be 0 .. 9, not {level!r}")


def _palette_image(picture: Picture, meta: dict[str, bytes]) -> Image.Image | None:
    """Rebuild the indexed image, or None when the colours do not map back."""
    palette = meta.get("palette", b"")[: 256 * 3]
    alpha = meta.get("transparency", b"") if picture.mode == "PA" else b""
    indices = _palette_indices(picture.pixels, palette, alpha)
    if indices is None:
        return None
    im = Image.frombytes("P", (picture.pixels.shape[1], picture.pixels.shape[0]), indices.tobytes())
    im.putpalette(palette[: len(palette) // 3 * 3], "RGB")
    return im


def _png_info(metadata: tuple[tuple[str, bytes], ...]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in metadata:
        if key in ("gAMA", "cHRM", "sRGB"):
            info.add(key.encode("ascii"), value)
        elif key.startswith("text:") and _PNG_TEXT_KEY.fullmatch(key[5:]):
            # add_text writes tEXt when latin-1 suffices, iTXt (utf-8) otherwise.
            info.add_text(key[5:], value.decode("utf-8", errors="replace"))
    return info


# ---------------------------------------------------------------- helpers


def picture_from_array(array: np.ndarray) -> Picture:
    """Wrap an (H, W) or (H, W, C) array, C in 1..4, as an L/LA/RGB/RGBA picture (uint8) or an
    L16/LA16/RGB16/RGBA16 one (uint16)."""
    if not isinstance(array, np.ndarray):
        raise InputError("image array must be a numpy array")
    if array.dtype not in (np.uint8, np.uint16):
        raise InputError(f"image array must be uint8 or uint16, not {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or not 1 <= array.shape[2] <= 4:
        raise InputError(f"image array must be (H, W) or (H, W, 1..4), not {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"image array is empty ({array.shape})")
    mode = ("L", "LA", "RGB", "RGBA")[array.shape[2] - 1] + ("16" if array.dtype == np.uint16 else "")
    return Picture(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("=")).copy(), mode)


def write_file_atomic(path: str | os.PathLike, data: bytes, force: bool = False, *,
                      dir_fd: int | None = None, shown: str | None = None) -> None:
    """Write ``data`` to ``path`` via a temp file beside it, so no half file is left.

    Refuses to replace an existing file unless ``force``, also when another writer creates it
    meanwhile (``commit_file``); any failure removes the temp file, leaves an existing ``path``
    untouched and raises ``OutputError``. With ``dir_fd`` (an open folder), ``path`` is a name
    in that folder and ``shown`` the name messages use.
    """
    name = os.fsdecode(path)
    shown = shown or name
    if not force and _lexists(name, dir_fd):
        raise OutputError(f"{shown} exists; use -f to overwrite")
    # O_EXCL on a random name: never an existing file, nor a symlink planted in its place.
    tmp = os.path.join(os.path.dirname(name), f".ardmzip-{secrets.token_hex(8)}.tmp")
    created = False
    try:
        # 0o666 less the umask: the mode open() would give the file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666,
                     **_at(dir_fd))
        created = True
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        commit_file(tmp, name, force, dir_fd=dir_fd, shown=shown)
        created = False
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {exc.strerror or exc}") from None
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.unlink(tmp, **_at(dir_fd))


def commit_file(tmp: str, path: str, force: bool, *, dir_fd: int | None = None, shown: str | None = None) -> None:
    """Rename ``tmp`` to ``path`` (same folder). Without ``force`` an existing ``path`` is never
    replaced, even one another writer made a moment ago: a hard link fails where the name is
    taken (where hard links do not exist, the name is first claimed with O_EXCL). The folder is
    fsynced so that the rename itself survives a crash. OSError on failure, ``tmp`` left."""
    shown = shown or path
    pair = {} if dir_fd is None else {"src_dir_fd": dir_fd, "dst_dir_fd": dir_fd}
    if force:
        os.replace(tmp, path, **pair)
    else:
        try:
            os.link(tmp, path, **pair)
        except FileExistsError:
            raise OutputError(f"{shown} exists; use -f to overwrite") from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV):
                raise
            _claim_and_replace(tmp, path, dir_fd, shown)      # a file system without hard links
        else:
            os.unlink(tmp, **_at(dir_fd))
    with contextlib.suppress(OSError):
        folder = dir_fd if dir_fd is not None else os.open(os.path.dirname(path) or os.curdir, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            if folder != dir_fd:
                os.close(folder)


def _claim_and_replace(tmp: str, path: str, dir_fd: int | None, shown: str) -> None:
    """Take the name ``path`` with O_EXCL (so that of two writers one fails), then rename
    ``tmp`` over that empty placeholder; the placeholder goes again if the rename fails."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, **_at(dir_fd)))
    except FileExistsError:
        raise OutputError(f"{shown} exists; use -f to overwrite") from None
    pair = {} if dir_fd is None else {"src_dir_fd": dir_fd, "dst_dir_fd": dir_fd}
    try:
        os.replace(tmp, path, **pair)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path, **_at(dir_fd))
        raise


# Folders opened relative to their parent (POSIX); elsewhere extraction checks paths instead.
_OPENAT = {os.open, os.mkdir, os.link, os.rename, os.unlink, os.stat} <= os.supports_dir_fd and \
    hasattr(os, "O_DIRECTORY") and hasattr(os, "O_NOFOLLOW")


def write_file_under(root: str | os.PathLike, relative: str, data: bytes, force: bool = False,
                     follow_symlinks: bool = False) -> str:
    """Write ``data`` atomically to ``root``/``relative`` (a checked archive member name, "/"
    between folders), making the folders on the way; returns the path written.

    The file cannot land outside ``root``: each folder below it is opened relative to the one
    before (openat), and one that is a symbolic link is refused (``OutputError``) unless
    ``follow_symlinks``, so swapping a folder for a link meanwhile does not help either.
    ``root`` itself is the caller's choice and may be a link."""
    root = os.fsdecode(root)
    *parts, base = relative.split("/")
    shown = os.path.join(root, *parts, base)
    if any(p in ("", os.curdir, os.pardir) or os.sep in p or (os.altsep and os.altsep in p)
           for p in (*parts, base)):
        raise OutputError(f"{shown}: not a plain relative path")       # names are checked before
    if not _OPENAT:                                    # no dir_fd here: check the path instead
        _check_folders(root, parts, follow_symlinks, shown)
        write_file_atomic(shown, data, force)
        return shown
    fd = _open_folder(root, parts, follow_symlinks, shown)
    try:
        write_file_atomic(base, data, force, dir_fd=fd, shown=shown)
    finally:
        os.close(fd)
    return shown


def _open_folder(root: str, parts: Sequence[str], follow_symlinks: bool, shown: str) -> int:
    """An open fd of root/parts..., each folder made where missing and opened relative to its parent."""
    try:
        os.makedirs(root, exist_ok=True)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise OutputError(f"cannot create folder {root}: {e.strerror or e}") from None
    flags = os.O_RDONLY | os.O_DIRECTORY | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        for i, part in enumerate(parts):
            where = os.path.join(root, *parts[:i + 1])
            try:
                os.mkdir(part, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK) and _is_link(part, fd):
                    raise _through_link(where, shown) from None
                raise OutputError(f"cannot create folder for {shown}: {where}: {e.strerror or e}") from None
            os.close(fd)
            fd = child
    except OSError as e:
        os.close(fd)
        raise OutputError(f"cannot create folder for {shown}: {e.strerror or e}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_folders(root: str, parts: Sequence[str], follow_symlinks: bool, shown: str) -> None:
    """Where there is no openat: make the folders, refusing a link on the way (checked by path)."""
    path = root
    try:
        os.makedirs(root, exist_ok=True)
        for part in parts:
            path = os.path.join(path, part)
            with contextlib.suppress(FileExistsError):
                os.mkdir(path)
            if os.path.islink(path) and not follow_symlinks:
                raise _through_link(path, shown)
            if not os.path.isdir(path):
                raise OutputError(f"cannot create folder for {shown}: {path} is not a folder")
    except OSError as e:
        raise OutputError(f"cannot create folder for {shown}: {e.strerror or e}") from None


def _through_link(folder: str, shown: str) -> OutputError:
    return OutputError(f"{shown}: {folder} is a symbolic link; refusing to extract through it "
                       "(--follow-symlinks allows it)")


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _lexists(name: str, dir_fd: int | None) -> bool:
    """Like os.path.lexists (a dangling link exists), optionally relative to ``dir_fd``."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (OSError, ValueError):
        return False
    return True


def _at(dir_fd: int | None) -> dict[str, int]:
    """``dir_fd=`` for the os functions, or nothing (so that platforms without it work by path)."""
    return {} if dir_fd is None else {"dir_fd": dir_fd}

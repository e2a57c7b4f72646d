"""16-bit pictures in files: reading 16-bit PNG and TIFF, writing 16-bit PNG.

Pillow cannot be trusted with them: it reads 16-bit RGB(A) and gray+alpha PNGs and TIFFs as
8-bit modes, silently dropping the low bytes. So the pixels come from pypng (PNG: small, pure
Python, reads every 16-bit colour type exactly) and tifffile (TIFF: pure Python, numpy only;
the usual lossless compressions, LZW and others through imagecodecs when installed). The
PNG's metadata still comes from Pillow (``imageio``), which reads the chunks correctly.

Writing is done here with numpy and zlib: PNG's five row filters computed for the whole
picture at once (filtering only reads raw bytes, so it vectorises), the one with the least
sum of absolute values chosen per row (libpng's heuristic), then deflate. pypng would write
every row unfiltered, which costs 16-bit photos a fifth of their size.

Modes: "L16", "LA16", "RGB16", "RGBA16" hold (H, W, C) uint16 pixels, C = 1..4.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np

from .container import check_pixels
from .errors import InputError

__all__ = ["MODES", "is_png16", "is_tiff", "tiff_is_16bit", "png16_pixels", "read_tiff16", "png16_bytes"]

MODES = {1: "L16", 2: "LA16", 3: "RGB16", 4: "RGBA16"}                 # by channels
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# TIFF compressions that are lossless (as in imageio): none, LZW, deflate (two codes),
# PackBits, LZMA, zstd.
_TIFF_LOSSLESS = {1, 5, 8, 32946, 32773, 34925, 50000}


def is_png16(data: bytes) -> bool:
    """A PNG whose IHDR says 16 bits per sample."""
    return data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) > 25 and data[24] == 16


def is_tiff(data: bytes) -> bool:
    return data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def tiff_is_16bit(data: bytes) -> bool:
    """A TIFF whose first page has 16 bits per sample (False where tifffile cannot tell or is
    missing: then Pillow reads or refuses it, as any TIFF)."""
    try:
        import tifffile
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            return tif.pages[0].bitspersample == 16
    except Exception:  # noqa: BLE001 - not ours to judge: Pillow's path reports the problem
        return False


def png16_pixels(data: bytes, name: str) -> np.ndarray:
    """The (H, W, C) uint16 samples of a 16-bit PNG, exactly as stored (no tRNS or sBIT applied)."""
    import png                                  # pypng; imported here: only 16-bit files need it
    try:
        width, height, rows, info = png.Reader(bytes=data).read()
        channels = info["planes"]
        pixels = np.array([np.asarray(row, np.uint16) for row in rows], np.uint16)
    except Exception as exc:  # noqa: BLE001 - pypng raises several types on damaged files
        detail = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {name} as a 16-bit PNG ({detail})") from None
    if pixels.shape != (height, width * channels):
        raise InputError(f"cannot read {name} as a 16-bit PNG (wrong number of rows)")
    return pixels.reshape(height, width, channels)


def read_tiff16(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, str, tuple[tuple[str, bytes], ...]]:
    """(pixels (H, W, C) uint16, mode, metadata) of a one-page 16-bit gray, gray+alpha, RGB or
    RGBA TIFF; InputError for anything else (with a reason), LimitError over ``max_pixels``."""
    try:
        import tifffile
    except ImportError:
        raise InputError(f"{name}: reading 16-bit TIFF needs tifffile (pip install tifffile)") from None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if len(tif.pages) != 1:
                raise InputError(f"{name} has {len(tif.pages)} pages; ardmzip stores single images")
            page = tif.pages[0]
            _check_tiff(page, name)
            check_pixels(page.imagewidth, page.imagelength, max_pixels, name)
            pixels = page.asarray()
            metadata = _tiff_metadata(page)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises several types on damaged files
        detail = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {name} as a 16-bit TIFF ({detail})") from None
    if page.planarconfig == 2 and pixels.ndim == 3:             # separate planes: (C, H, W)
        pixels = np.moveaxis(pixels, 0, -1)
    pixels = pixels.reshape(page.imagelength, page.imagewidth, -1).astype(np.uint16)
    return np.ascontiguousarray(pixels), MODES[pixels.shape[2]], metadata


def _check_tiff(page, name: str) -> None:
    if page.compression not in _TIFF_LOSSLESS:
        raise InputError(f"unsupported TIFF compression {int(page.compression)} ({name}); "
                         "ardmzip needs a lossless image")
    if page.dtype != np.uint16 or page.bitspersample != 16:
        raise InputError(f"{name}: {page.bitspersample}-bit {page.dtype} samples; ardmzip reads 16-bit "
                         "TIFFs of unsigned integers only")
    photometric, samples = int(page.photometric), page.samplesperpixel
    ok = (photometric == 1 and samples in (1, 2)) or (photometric == 2 and samples in (3, 4))
    if not ok or page.imagedepth != 1:
        raise InputError(f"unsupported TIFF colour layout (photometric {photometric}, {samples} samples) "
                         f"({name}); ardmzip reads gray, gray+alpha, RGB and RGBA")


def _tiff_metadata(page) -> tuple[tuple[str, bytes], ...]:
    """The ICC profile and the resolution (as PNG pHYs pixels per metre) of a TIFF page."""
    out: list[tuple[str, bytes]] = []
    tags = page.tags
    if 34675 in tags and isinstance(icc := tags[34675].value, bytes) and icc:
        out.append(("icc", icc))
    unit = tags[296].value if 296 in tags else 2
    if 282 in tags and 283 in tags and int(unit) in (2, 3):
        per_metre = 100 / (0.0254 * 100 if int(unit) == 2 else 1)      # per inch or per cm -> per metre
        try:
            ppm = [int(float(n) / float(d) * per_metre + 0.5) for n, d in (tags[282].value, tags[283].value)]
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            ppm = []
        if len(ppm) == 2 and all(0 <= v < 2**32 for v in ppm):
            out.append(("dpi", b"".join(v.to_bytes(4, "big") for v in ppm)))
    return tuple(out)


# ---------------------------------------------------------------- writing

_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}                                   # channels -> PNG colour type


def png16_bytes(pixels: np.ndarray, metadata: dict[str, bytes], level: int, text: list[tuple[str, str]]) -> bytes:
    """A 16-bit PNG of (H, W, C) uint16 ``pixels``: ``metadata`` as PNG chunk payloads (keys as
    in imageio: icc, exif, dpi, gAMA, cHRM, sRGB, transparency) and ``text`` (key, value) pairs;
    ``level``: zlib's 0..9."""
    h, w, c = pixels.shape
    out = [_PNG_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, _COLOUR_TYPE[c], 0, 0, 0))]
    if "icc" in metadata:
        out.append(_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(metadata["icc"], 9)))
    elif len(metadata.get("sRGB", b"")) == 1:
        out.append(_chunk(b"sRGB", metadata["sRGB"]))
    for key, size in (("gAMA", 4), ("cHRM", 32)):
        if len(metadata.get(key, b"")) == size:
            out.append(_chunk(key.encode(), metadata[key]))
    if len(metadata.get("dpi", b"")) == 8:
        out.append(_chunk(b"pHYs", metadata["dpi"] + b"\x01"))             # unit: metre
    if len(trns := metadata.get("transparency", b"")) == {1: 2, 3: 6}.get(c):
        out.append(_chunk(b"tRNS", trns))
    if metadata.get("exif"):
        out.append(_chunk(b"eXIf", metadata["exif"]))
    for key, value in text:
        try:
            out.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1")))
        except UnicodeEncodeError:
            out.append(_chunk(b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")))
    raw = pixels.astype(">u2").view(np.uint8).reshape(h, w * c * 2)
    out.append(_chunk(b"IDAT", zlib.compress(_filtered(raw, 2 * c).tobytes(), level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _filtered(raw: np.ndarray, bpp: int) -> np.ndarray:
    """(H, 1 + row bytes) uint8: each row's filter byte, then the row under that filter (the
    one of PNG's five with the least sum of absolute values, as signed bytes)."""
    x = raw.astype(np.int16)
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]                                   # left
    b = np.zeros_like(x)
    b[1:] = x[:-1]                                             # up
    c = np.zeros_like(x)
    c[1:, bpp:] = x[:-1, :-bpp]                                # up-left
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    options = np.stack([x, x - a, x - b, x - ((a + b) >> 1), x - paeth]).astype(np.uint8)   # (5, H, row)
    cost = np.abs(options.view(np.int8).astype(np.int32)).sum(axis=2)                       # (5, H)
    best = cost.argmin(axis=0)
    rows = options[best, np.arange(len(raw))]
    return np.concatenate([best.astype(np.uint8)[:, None], rows], axis=1)

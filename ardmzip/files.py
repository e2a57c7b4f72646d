"""File helpers under the CLI: image file <-> .ardm file, atomic writes, header info.

    ardmzip.compress_file("photo.png", "photo.ardm")
    ardmzip.decompress_file("photo.ardm", "photo.png")

Every writer goes through ``write_file_atomic`` (temp file + rename): a failure leaves
no output and an existing output untouched; nothing is replaced without ``force``.
``progress=True`` shows one bar per picture on stderr (progress.PictureBar: every plane's
steps, with an ETA); PNGs are written at zlib level ``png_level`` (imageio.PNG_LEVEL).
Pictures over ``max_pixels`` (default ``container.MAX_PIXELS``, 0 = no limit) are refused
with ``LimitError`` before they are decoded, whichever way they go.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from . import constraint, container, lowbyte
from .container import MAX_PIXELS
from .codec import Stats, check_steps, compress_picture, decompress_picture
from .errors import InputError
from .imageio import (MODE_CHANNELS, PNG_LEVEL, Picture, check_png_level, picture_to_png, read_picture,
                      write_file_atomic)
from .progress import PictureBar, coded_planes, decoded_planes, for_picture

SUFFIX = ".ardm"


@dataclass
class Result:
    """What one file operation did (for the CLI's summary line)."""
    source: str
    output: str | None
    raw_bytes: int           # uncompressed pixel bytes
    ardm_bytes: int
    subpixels: int
    header_bytes: int = 0    # of ardm_bytes: the container's header and framing (``header_bytes``)

    @property
    def bpsp(self) -> float:
        return 8 * self.ardm_bytes / max(1, self.subpixels)


def header_bytes(ardm: bytes) -> int:
    """The bytes of an .ardm file that are not plane streams: header (with its metadata),
    stream lengths and CRCs: 21 or so without metadata in the compact layout (a shipped model),
    46 or so in the full one, which matters on a tiny picture."""
    _, streams = container.unpack(ardm)
    return len(ardm) - sum(len(s) for s in streams)


def read_input(source: str | os.PathLike | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    name = os.fsdecode(source)
    try:
        with open(name, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name} is a directory (use -r)") from None
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or e}") from None


def compress_bytes(image_file: bytes, steps: int | None = None, *, model: str | None = None, seed: int = 0,
                   device: str = "cpu", progress: bool | PictureBar = False, stats: Stats | None = None,
                   max_pixels: int = MAX_PIXELS, adapt: int = 0) -> tuple[bytes, Picture]:
    """Image file bytes (PNG, BMP, ...) -> .ardm bytes and the picture they hold (``adapt``:
    as for ``codec.compress``)."""
    picture = read_picture(image_file, max_pixels)
    def passes() -> tuple[int, int]:            # --adapt: tunes (one pass), then codes twice
        return coded_planes(picture.pixels) * (2 if adapt else 1) + bool(adapt), check_steps(steps)
    with for_picture(progress, "compress", passes) as bar:
        return compress_picture(picture, steps, model, seed, device, bar, stats, max_pixels=max_pixels,
                                adapt=adapt), picture


def decode_bytes(ardm: bytes, *, device: str = "cpu", progress: bool | PictureBar = False,
                 max_pixels: int = MAX_PIXELS) -> Picture:
    """.ardm bytes -> the Picture, its pixels checked against the stored CRC."""
    with for_picture(progress, "decompress", lambda: decoded_planes(ardm)) as bar:
        return decompress_picture(ardm, device, bar, max_pixels=max_pixels)


def decompress_bytes(ardm: bytes, *, device: str = "cpu", progress: bool | PictureBar = False,
                     max_pixels: int = MAX_PIXELS, png_level: int = PNG_LEVEL) -> bytes:
    """.ardm bytes -> PNG bytes (zlib level ``png_level``) with the original mode, pixels and
    metadata."""
    check_png_level(png_level)
    return picture_to_png(decode_bytes(ardm, device=device, progress=progress, max_pixels=max_pixels), png_level)


def compress_file(source: str | os.PathLike, output: str | os.PathLike, steps: int | None = None, *,
                  force: bool = False, model: str | None = None, seed: int = 0, device: str = "cpu",
                  progress: bool = False, max_pixels: int = MAX_PIXELS) -> Result:
    """Compress an image file to an .ardm file (arguments: see codec.compress)."""
    data, picture = compress_bytes(read_input(source), steps, model=model, seed=seed, device=device,
                                   progress=progress, max_pixels=max_pixels)
    write_file_atomic(output, data, force)
    px = picture.pixels
    return Result(os.fsdecode(source), os.fsdecode(output), px.nbytes, len(data), px.size, header_bytes(data))


def decompress_file(source: str | os.PathLike, output: str | os.PathLike, *, force: bool = False,
                    device: str = "cpu", progress: bool = False, max_pixels: int = MAX_PIXELS,
                    png_level: int = PNG_LEVEL) -> Result:
    """Decompress an .ardm file to a PNG file (zlib level ``png_level``, 0 .. 9); nothing is
    written unless the pixels check out."""
    data = read_input(source)
    png = decompress_bytes(data, device=device, progress=progress, max_pixels=max_pixels, png_level=png_level)
    write_file_atomic(output, png, force)
    h = container.peek_header(data)
    n = h.width * h.height * MODE_CHANNELS[h.mode]
    return Result(os.fsdecode(source), os.fsdecode(output), n, len(data), n, header_bytes(data))


def info(data: bytes) -> dict:
    """Header fields of an .ardm file and its size in bits per subpixel (no decoding)."""
    h, streams = container.unpack(data)
    subpixels = h.width * h.height * MODE_CHANNELS[h.mode]
    channels = [1 if MODE_CHANNELS[h.mode] <= 2 else 3, 1]          # colour plane, alpha plane
    deep = h.mode in container.SIXTEEN_BIT_MODES                     # its last stream: the low bytes
    header_bytes = len(data) - sum(len(s) for s in streams)
    adaptation, streams = container.split_adaptation(h, streams)
    planes = [] if adaptation is None else [f"model adapted to the picture ({len(adaptation)} bytes)"]
    planes += [constraint.describe(s, c) if h.version >= 2 else "plain"
              for s, c in zip(streams[:len(streams) - deep], channels)]
    if deep and streams:
        planes.append(lowbyte.describe(streams[-1], MODE_CHANNELS[h.mode]))
    return {
        "mode": h.mode, "width": h.width, "height": h.height, "model": h.model_name,
        "model_hash": h.model_hash.hex(), "steps": h.steps, "seed": h.seed,
        "pixel_crc32": f"{h.pixel_crc:08x}", "metadata": [k for k, _ in h.metadata],
        "bytes": len(data), "header_bytes": header_bytes,
        "subpixels": subpixels, "bpsp": 8 * len(data) / subpixels,
        "format_version": h.version, "planes": planes,
        "container": "compact" if container.is_compact(data) else "full",
    }

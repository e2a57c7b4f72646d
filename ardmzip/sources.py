"""Image sources for a dataset archive: what ``archive.write_archive`` reads from, as named pictures.

    src = _open_source("photos/")              # a folder of images, or a .npz/.npy of uint8 arrays
    src.kind, src.arrays, src.names            # known before any picture is read
    for name, picture in src.pictures(): ...   # read lazily, one image at a time

A folder is walked recursively, its member names the relative POSIX paths, sorted by code
point; a .npy or .npz holds uint8 arrays (N, H, W) or (N, H, W, C), C in 1..4, read from the
file one image at a time (an ``ArraySpec`` each: key and shape; members "KEY/000123", or
"000123" for a .npy). A source is checked before anything is coded: every member name and
.npz key passes ``name_problem`` (the one name check, which the archive's reader applies
again), array shapes against the bytes the file holds and against the pixel limit.

Separate from archive.py because it knows nothing of the archive's bytes: it turns files on
disk into pictures, the archive codes and lays them out.
"""
from __future__ import annotations

import math
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO, Iterator

import numpy as np

from . import container
from .errors import ArdmzipError, InputError
from .imageio import Picture, picture_from_array, read_picture

# Limits on a source, which archive.py's reader applies to an archive's index too.
MAX_NAME_BYTES = 4096
MAX_ARRAYS = 1 << 16
MAX_SIDE = 2**31 - 1                # the largest width or height a single .ardm can hold
IMAGE_SUFFIXES = {".png", ".bmp", ".dib", ".ppm", ".pgm", ".pbm", ".pnm", ".tif", ".tiff", ".webp", ".gif",
                  ".tga", ".qoi", ".pcx"}
ARRAY_SUFFIXES = (".npz", ".npy")
ARRAY_MODES = ("L", "LA", "RGB", "RGBA")           # channels 1..4 of an array image
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"
_U1 = np.dtype(np.uint8)
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")    # C0 and C1: NUL, ESC (terminal codes), ...


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


class _Source:
    """What to archive: the kind, array specs, member names, and the pictures lazily."""
    kind: str = "images"
    deflated: bool = False
    arrays: tuple[ArraySpec, ...] = ()
    names: list[str]

    def pictures(self) -> Iterator[tuple[str, Picture]]:
        raise NotImplementedError

    def sample(self, count: int) -> list[Picture]:
        """Up to ``count`` of the pictures, spread evenly over the members (all of them when
        there are no more)."""
        chosen = set(spread(len(self.names), count))
        return [p for i, (_, p) in enumerate(self.pictures()) if i in chosen]


def spread(n: int, count: int) -> list[int]:
    """``min(n, count)`` indices spread evenly over range(n), first and last included."""
    if n <= count:
        return list(range(n))
    return sorted({round(i * (n - 1) / max(1, count - 1)) for i in range(count)})


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

    def sample(self, count: int) -> list[Picture]:
        """Only the sampled files are read; one that cannot be is left out (writing the archive
        reports it, in its turn)."""
        out = []
        for i in spread(len(self.files), count):
            try:
                out.append(read_picture(self.files[i][1], self.max_pixels))
            except ArdmzipError:
                continue
        return out


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

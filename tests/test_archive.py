"""Tests for dataset archives (ardmzip/archive.py) and their CLI commands.

Images are tiny (at most 8x8) and compression uses 2 steps, so the file stays fast on
a small, busy CPU.  The kill -9 test runs a real ``python -m ardmzip`` subprocess.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from ardmzip import archive, container
from ardmzip.archive import (FOOTER_SIZE, PARTIAL_SUFFIX, extract_all, extract_member, list_archive, read_index,
                             test_archive, write_archive)
from ardmzip.codec import compress_picture
from ardmzip.errors import FormatError, InputError, OutputError
from ardmzip.imageio import Picture, read_picture

STEPS = 2
RNG = np.random.default_rng(11)


# ---------------------------------------------------------------- helpers


def save(path: Path, mode: str, size: tuple[int, int] = (6, 5), **params) -> Path:
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        im = Image.frombytes("P", (w, h), RNG.integers(0, 8, (h, w), np.uint8).tobytes())
        im.putpalette(bytes(range(0, 24 * 8, 8)), "RGB")                 # 8 distinct colours
    elif mode == "1":
        im = Image.fromarray(RNG.integers(0, 2, (h, w), np.uint8) * 255).convert("1")
    else:
        c = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
        im = Image.frombytes(mode, (w, h), RNG.integers(0, 256, (h, w, c), np.uint8).tobytes())
    im.save(path, **params)
    return path


def make_tree(root: Path) -> Path:
    """Mixed modes, nested folders, a BMP, PNG text metadata and a file that is not an image."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "tiny")
    save(root / "a.png", "RGB")
    save(root / "b.png", "L", (4, 4), pnginfo=info)
    save(root / "sub" / "c.png", "RGBA", (5, 4))
    save(root / "sub" / "d.png", "P", (6, 6))
    save(root / "sub" / "deeper" / "e.bmp", "RGB", (3, 4))
    save(root / "sub" / "deeper" / "f.png", "LA", (4, 3))
    save(root / "z" / "g.png", "1", (8, 8))
    (root / "sub" / "notes.txt").write_text("not an image")
    return root


TREE_NAMES = ["a.png", "b.png", "sub/c.png", "sub/d.png", "sub/deeper/e.bmp", "sub/deeper/f.png", "z/g.png"]
TREE_PNGS = {"a.png", "b.png", "sub/c.png", "sub/d.png", "sub/deeper/e.png", "sub/deeper/f.png", "z/g.png"}


def same_picture(a: Picture, b: Picture) -> bool:
    return a.mode == b.mode and np.array_equal(a.pixels, b.pixels) and a.metadata == b.metadata


def files_under(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def varint_len(value: int) -> int:
    n = 1
    while value >= 128:
        value >>= 7
        n += 1
    return n


def xz(data: bytes) -> bytes:
    """A model file as format 4 stores it (the documented xz stream, made here with lzma)."""
    return lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)


def blob_bytes(values: list[bytes]) -> int:
    return sum(varint_len(len(v)) + len(v) for v in values)


def expected_archive_size(names: list[str], blobs: list[bytes], kind: str = "images",
                          arrays: list[tuple[str, tuple[int, ...]]] = (), carried: int = 0) -> tuple[int, int]:
    """(archive size, overhead: everything but the coded streams) from the documented layout of
    format 4, independently of archive.py; ``blobs`` are the members' single .ardm files; ``carried``:
    the bytes of the carried model as stored."""
    headers = [container.unpack(b) for b in blobs]
    h0 = headers[0][0]
    shapes = sum(varint_len(d) for _, shape in arrays for d in (*shape[:3], shape[3] if len(shape) == 4 else 0))
    keys = varint_len(len(arrays)) + blob_bytes([k.encode() for k, _ in arrays]) if kind == "npz" else 0
    header = 5 + 1 + shapes + keys + blob_bytes([h0.model_name.encode()]) + 8 + varint_len(h0.steps) \
        + varint_len(h0.seed) + (varint_len(carried) if carried else 0)
    members = index = streams_total = 0
    for name, (h, streams) in zip(names, headers):
        lengths = sum(varint_len(len(x)) for x in streams)
        streams_total += sum(map(len, streams))
        meta = 0
        if kind == "images":
            if h.metadata:
                meta = varint_len(len(h.metadata)) + sum(blob_bytes([k.encode(), v]) for k, v in h.metadata)
            index += blob_bytes([name.encode()]) + 1 + varint_len(h.width) + varint_len(h.height) \
                + (varint_len(meta) if meta else 0) + lengths
        else:
            index += lengths
        members += meta + sum(map(len, streams)) + 4
    size = header + carried + members + index + varint_len(index) + 4
    return size, size - streams_total


def flip(path: Path, pos: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x40
    path.write_bytes(bytes(data))


class Stop(Exception):
    pass


def stop_after(n: int, seen: list):
    """An on_member callback that records (name, resumed) and raises after n new members."""
    def callback(member, resumed):
        seen.append((member.name, resumed))
        if sum(not r for _, r in seen) >= n:
            raise Stop()
    return callback


# ---------------------------------------------------------------- fixtures


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("src") / "photos")


@pytest.fixture(scope="module")
def packed(tree, tmp_path_factory) -> Path:
    """The tree's archive, written once (tests copy it before damaging it)."""
    out = tmp_path_factory.mktemp("packed") / "photos.ardm"
    write_archive(tree, out, STEPS)
    return out


@pytest.fixture
def copy(packed, tmp_path) -> Path:
    path = tmp_path / "copy.ardm"
    path.write_bytes(packed.read_bytes())
    return path


@pytest.fixture(scope="module")
def npz_arrays() -> dict[str, np.ndarray]:
    return {"arr_0": RNG.integers(0, 256, (12, 8, 8, 3), np.uint8),
            "gray": RNG.integers(0, 256, (3, 5, 4), np.uint8),
            "empty": np.zeros((0, 4, 4, 2), np.uint8)}


def assert_failed(result, code: int, *mentions: str) -> list[str]:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("ardmzip:") for line in lines), lines
    for text in mentions:
        assert any(text in line for line in lines), (text, lines)
    return lines


# ---------------------------------------------------------------- round trips


def test_folder_round_trip(tree, packed, tmp_path):
    index = read_index(packed)
    assert index.kind == "images" and [m.name for m in index.members] == TREE_NAMES
    assert not Path(str(packed) + PARTIAL_SUFFIX).exists()
    results = extract_all(packed, tmp_path / "out")
    assert [(n, e) for n, e in results] == [(n, None) for n in TREE_NAMES]
    assert files_under(tmp_path / "out") == TREE_PNGS
    for name in TREE_NAMES:
        back = tmp_path / "out" / archive.png_names([name])[name]
        assert same_picture(read_picture(tree / name), read_picture(back)), name
    modes = {m.mode for m in index.members}
    assert modes == {"RGB", "L", "RGBA", "P", "LA", "1"}
    assert list(tmp_path.rglob(".ardmzip-*")) == []


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_round_trip_is_bit_exact(npz_arrays, tmp_path, compressed):
    src = tmp_path / "data.npz"
    (np.savez_compressed if compressed else np.savez)(src, **npz_arrays)
    result = write_archive(src, tmp_path / "data.ardm", STEPS)
    index = result.index
    assert index.kind == "npz" and index.deflated == compressed
    assert [(a.key, a.shape) for a in index.arrays] == [(k, v.shape) for k, v in npz_arrays.items()]
    assert len(index.members) == 15 and index.members[0].name == "arr_0/000000"
    assert index.members[12].name == "gray/000000" and index.members[12].mode == "L"
    assert extract_all(tmp_path / "data.ardm", tmp_path / "back.npz") == [(m.name, None) for m in index.members]
    with np.load(tmp_path / "back.npz") as back:
        assert back.files == list(npz_arrays)
        for key, array in npz_arrays.items():
            assert back[key].dtype == np.uint8 and back[key].shape == array.shape
            assert np.array_equal(back[key], array)
    with zipfile.ZipFile(tmp_path / "back.npz") as zf:
        want = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
        assert {i.compress_type for i in zf.infolist()} == {want}
    # one member, as a picture
    picture = extract_member(tmp_path / "data.ardm", "arr_0/000007")
    assert picture.mode == "RGB" and np.array_equal(picture.pixels, npz_arrays["arr_0"][7])


def test_npy_round_trip_and_to_pngs(tmp_path):
    images = RNG.integers(0, 256, (4, 6, 5), np.uint8)
    np.save(tmp_path / "x.npy", images)
    index = write_archive(tmp_path / "x.npy", tmp_path / "x.ardm", STEPS).index
    assert index.kind == "npy" and [m.name for m in index.members] == [f"{i:06d}" for i in range(4)]
    extract_all(tmp_path / "x.ardm", tmp_path / "back.npy")
    back = np.load(tmp_path / "back.npy")
    assert back.shape == images.shape and np.array_equal(back, images)
    assert (tmp_path / "back.npy").read_bytes() == (tmp_path / "x.npy").read_bytes()
    extract_all(tmp_path / "x.ardm", tmp_path / "pngs")
    assert files_under(tmp_path / "pngs") == {f"{i:06d}.png" for i in range(4)}
    assert np.array_equal(read_picture(tmp_path / "pngs" / "000002.png").pixels[..., 0], images[2])


def test_array_sources_are_checked(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((2, 4, 4), np.float32))
    with pytest.raises(InputError, match="uint8"):
        write_archive(tmp_path / "f.npy", tmp_path / "f.ardm", STEPS)
    np.save(tmp_path / "s.npy", np.zeros((2, 4, 4, 5), np.uint8))
    with pytest.raises(InputError, match="shape"):
        write_archive(tmp_path / "s.npy", tmp_path / "s.ardm", STEPS)
    (tmp_path / "t.npz").write_bytes(b"not a zip at all")
    with pytest.raises(InputError):
        write_archive(tmp_path / "t.npz", tmp_path / "t.ardm", STEPS)
    assert not list(tmp_path.glob("*.ardm*"))


# ---------------------------------------------------------------- size and layout


def test_size_is_streams_plus_exact_overhead(tree, packed):
    pictures = [read_picture(tree / n) for n in TREE_NAMES]
    blobs = [compress_picture(p, STEPS) for p in pictures]
    size, overhead = expected_archive_size(TREE_NAMES, blobs)
    data = packed.read_bytes()
    assert len(data) == size
    index = read_index(packed)
    assert index.version == 4 and index.overhead_bytes == overhead
    assert index.overhead_per_image == pytest.approx(overhead / len(blobs))
    with open(packed, "rb") as f:                     # each member rebuilds its single .ardm, byte for byte
        assert [archive._read_blob(f, index, m) for m in index.members] == blobs
    assert data[:5] == b"ARDS\x04"


def test_npz_size_is_streams_plus_exact_overhead(npz_arrays, tmp_path):
    np.savez(tmp_path / "d.npz", **npz_arrays)
    index = write_archive(tmp_path / "d.npz", tmp_path / "d.ardm", STEPS).index
    pictures = [extract_member(tmp_path / "d.ardm", m.name) for m in index.members]
    blobs = [compress_picture(p, STEPS) for p in pictures]
    size, overhead = expected_archive_size([m.name for m in index.members], blobs, "npz",
                                           [(k, v.shape) for k, v in npz_arrays.items()])
    assert (tmp_path / "d.ardm").stat().st_size == size and index.overhead_bytes == overhead
    assert read_index(tmp_path / "d.ardm") == index
    with open(tmp_path / "d.ardm", "rb") as f:
        assert [archive._read_blob(f, index, m) for m in index.members] == blobs


def test_npz_member_overhead_is_at_most_8_bytes_and_beats_single_files(tmp_path):
    """The issue's goal: members of an array archive cost their streams plus at most 8 bytes
    (read from the index), and the archive is smaller than the same images as .ardm files."""
    images = RNG.integers(0, 256, (40, 4, 4, 3), np.uint8)
    images[:, :, :2] = images[:, :, 2:]                           # some structure, as photos have
    np.save(tmp_path / "x.npy", images)
    index = write_archive(tmp_path / "x.npy", tmp_path / "x.ardm", STEPS).index
    assert read_index(tmp_path / "x.ardm").overhead_per_image == index.overhead_per_image <= 8
    assert all(m.size - sum(m.streams) == 4 for m in index.members)
    singles = sum(len(compress_picture(Picture(image, "RGB"), STEPS)) for image in images)
    assert index.size < singles


def crops(n: int, shape: tuple[int, int, int]) -> np.ndarray:
    """n small pictures with some structure (a ramp, noise): crops of one synthetic photo."""
    h, w, c = shape
    ramp = np.add.outer(np.arange(h + n), np.arange(w))[..., None] * (160 // (h + w + n)) + np.arange(c) * 30
    picture = (ramp + np.random.default_rng(7).integers(0, 12, ramp.shape)).astype(np.uint8)
    return np.stack([picture[i:i + h] for i in range(n)])


@pytest.mark.parametrize("shape", [(6, 5, 3), (32, 32, 3)])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_an_archive_is_smaller_than_its_single_files_from_three_on(tmp_path, n, shape):
    """Issue 18: what members share is written once and a member costs its streams plus a few
    bytes (~15 fewer than a compact single file's header), so an archive of 5 images is smaller
    than the same images' single .ardm files, for every kind of source, but for the names that
    only an archive holds (a folder member's name, an .npz key other than the usual "images";
    a single file leaves its name to the file system). Its fixed cost is ~20 bytes more than a
    compact file's header (the archive names its model in full, a compact file by a one-byte
    id): so one or two images cost at most 24 bytes more than their single files."""
    images = crops(n, shape)
    singles = sum(len(compress_picture(Picture(image, "RGB"), STEPS)) for image in images)
    np.save(tmp_path / "set.npy", images)
    np.savez(tmp_path / "set.npz", images=images)
    for i, image in enumerate(images):
        save_array = tmp_path / "photos" / f"{i:06d}.png"
        save_array.parent.mkdir(exist_ok=True)
        Image.fromarray(image).save(save_array)
    np.savez(tmp_path / "keyed.npz", thumbs=images)
    names = {"set.npy": 0, "set.npz": 0, "keyed.npz": len("thumbs"), "photos": n * len("000000.png")}
    for source, named in names.items():
        index = write_archive(tmp_path / source, tmp_path / f"{source}.ardm", STEPS).index
        assert (tmp_path / f"{source}.ardm").stat().st_size == index.size
        assert index.size - named < singles + (24 if n < 3 else 0), (source, index.size, singles)


def test_list_reads_only_the_index(packed, copy, monkeypatch):
    expected = list_archive(packed)
    index = read_index(packed)
    data = bytearray(copy.read_bytes())
    data[index.model_offset:index.index_offset] = bytes(index.index_offset - index.model_offset)  # every member
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(archive, "_read_blob", lambda *a: pytest.fail("list read a member"))
    assert list_archive(copy) == expected
    m = expected[3]
    assert (m.name, m.shape, m.size) == ("sub/d.png", (6, 6, 3), m.size)
    assert m.bpsp == pytest.approx(8 * m.size / 108)


def test_extract_one_member(tree, packed):
    picture = extract_member(packed, "sub/deeper/f.png")
    assert same_picture(picture, read_picture(tree / "sub" / "deeper" / "f.png"))
    with pytest.raises(InputError, match="no member"):
        extract_member(packed, "nope.png")


# ---------------------------------------------------------------- damage


def member_named(path: Path, name: str):
    return next(m for m in read_index(path).members if m.name == name)


@pytest.mark.parametrize("where", ["blob-start", "blob-middle", "blob-end", "metadata"])
def test_damaged_member_is_named_and_the_others_extract(copy, tree, tmp_path, where):
    m = member_named(copy, "sub/c.png")
    pos = {"blob-start": m.offset + 2, "blob-middle": m.offset + m.size // 2, "blob-end": m.offset + m.size - 1,
           "metadata": m.offset}[where]
    flip(copy, pos)
    results = dict(test_archive(copy))
    assert [n for n, e in results.items() if e is not None] == ["sub/c.png"]
    assert isinstance(results["sub/c.png"], FormatError)          # ChecksumError is a FormatError
    out = tmp_path / "out"
    results = dict(extract_all(copy, out))
    assert isinstance(results["sub/c.png"], FormatError)
    assert files_under(out) == TREE_PNGS - {"sub/c.png"}
    assert same_picture(read_picture(out / "a.png"), read_picture(tree / "a.png"))


def test_damaged_member_cli(invoke, copy, tmp_path):
    m = member_named(copy, "b.png")
    flip(copy, m.offset + m.size // 2)
    lines = assert_failed(invoke("test", copy), 3, "b.png")
    assert len(lines) == 1
    r = invoke("decompress", copy, "-o", tmp_path / "out")
    lines = assert_failed(r, 3, "b.png")
    assert len(lines) == 1 and "copy.ardm" in lines[0]
    assert files_under(tmp_path / "out") == TREE_PNGS - {"b.png"}
    r = invoke("decompress", copy, "--member", "a.png", "-o", tmp_path / "a.png")     # others still fine
    assert r.exit_code == 0, r.stderr


def test_damaged_npz_member_is_zero_filled_and_reported(invoke, npz_arrays, tmp_path):
    np.savez(tmp_path / "d.npz", **npz_arrays)
    write_archive(tmp_path / "d.npz", tmp_path / "d.ardm", STEPS)
    m = member_named(tmp_path / "d.ardm", "arr_0/000004")
    flip(tmp_path / "d.ardm", m.offset + m.size // 2)
    r = invoke("decompress", tmp_path / "d.ardm", "-o", tmp_path / "back.npz")
    lines = assert_failed(r, 3, "arr_0/000004", "zero-filled")
    assert len(lines) == 1
    with np.load(tmp_path / "back.npz") as back:
        want = npz_arrays["arr_0"].copy()
        want[4] = 0
        assert np.array_equal(back["arr_0"], want) and np.array_equal(back["gray"], npz_arrays["gray"])


@pytest.mark.parametrize("kind", ["images", "npy"])
def test_every_byte_flip_is_detected(tmp_path, kind):
    src = tmp_path / "two"
    if kind == "images":
        save(src / "a.png", "L", (2, 2))
        save(src / "b.png", "L", (3, 2))
    else:                                         # 2x2 stored planes and a coded plane, with alpha
        src = tmp_path / "two.npy"
        images = RNG.integers(0, 256, (2, 2, 2, 2), np.uint8)
        images[1] = np.arange(16, dtype=np.uint8).reshape(2, 2, 4)[..., :2]
        np.save(src, images)
    write_archive(src, tmp_path / "t.ardm", STEPS)
    good = (tmp_path / "t.ardm").read_bytes()
    bad = tmp_path / "bad.ardm"
    for pos in range(len(good)):
        data = bytearray(good)
        data[pos] ^= 0x01
        bad.write_bytes(bytes(data))
        try:
            results = test_archive(bad)
        except FormatError:
            continue
        assert any(e is not None for _, e in results), pos


@pytest.mark.parametrize("cut", ["empty", "3", "header", "half", "no-footer", "minus-1", "minus-footer"])
def test_truncated_archives_are_format_errors(copy, cut):
    data = copy.read_bytes()
    index = read_index(copy)
    keep = {"empty": 0, "3": 3, "header": 5, "half": len(data) // 2, "no-footer": index.index_offset,
            "minus-1": len(data) - 1, "minus-footer": len(data) - FOOTER_SIZE}[cut]
    copy.write_bytes(data[:keep])
    for call in (read_index, list_archive, test_archive, lambda p: extract_member(p, "a.png")):
        with pytest.raises(FormatError):
            call(copy)


def test_random_and_foreign_files_are_format_errors(tmp_path, packed):
    rng = np.random.default_rng(5)
    cases = {
        "random": rng.integers(0, 256, 3000, np.uint8).tobytes(),
        "random-with-magic": b"ARDS\x01" + rng.integers(0, 256, 3000, np.uint8).tobytes(),
        "newer": b"ARDS\x09" + packed.read_bytes()[5:],
        "single-ardm": compress_picture(Picture(np.zeros((2, 2, 1), np.uint8), "L"), STEPS),
        "png": (tmp_path / "x.png").read_bytes() if save(tmp_path / "x.png", "RGB") else b"",
    }
    for label, data in cases.items():
        path = tmp_path / f"{label}.ardm"
        path.write_bytes(data)
        with pytest.raises(FormatError) as info:
            read_index(path)
        assert "\n" not in str(info.value), label
    with pytest.raises(FormatError, match="newer"):
        read_index(tmp_path / "newer.ardm")
    with pytest.raises(FormatError, match="single-image"):
        read_index(tmp_path / "single-ardm.ardm")


def test_damaged_index_or_footer(copy, packed):
    index = read_index(packed)
    size = len(packed.read_bytes())
    for pos in (index.index_offset + 3, size - 5, size - FOOTER_SIZE + 1, size - 1, 5, 7, index.model_offset - 1):
        copy.write_bytes(packed.read_bytes())
        flip(copy, pos)
        with pytest.raises(FormatError):          # the header and the index share the footer's CRC
            read_index(copy)


# ---------------------------------------------------------------- writing: safety and resume


def test_refuses_to_overwrite_and_leaves_nothing_on_input_errors(tree, packed, tmp_path):
    out = tmp_path / "x.ardm"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists"):
        write_archive(tree, out, STEPS)
    assert out.read_bytes() == b"precious" and not Path(str(out) + PARTIAL_SUFFIX).exists()
    write_archive(tree, out, STEPS, force=True)
    assert out.read_bytes() == packed.read_bytes()
    bad = tmp_path / "bad"
    (bad / "a.png").parent.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="a.png"):
        write_archive(bad, tmp_path / "bad.ardm", STEPS)
    assert not list(tmp_path.glob("bad.ardm*"))                    # no archive, no empty .partial
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        write_archive(tmp_path / "empty", tmp_path / "e.ardm", STEPS)


def test_resume_after_interruption_is_byte_identical(tree, packed, tmp_path):
    out = tmp_path / "r.ardm"
    partial = Path(str(out) + PARTIAL_SUFFIX)
    seen: list = []
    with pytest.raises(Stop) as info:
        write_archive(tree, out, STEPS, on_member=stop_after(3, seen))
    assert info.value.archive_partial == str(partial)
    assert not out.exists() and partial.exists()
    with pytest.raises(FormatError, match="unfinished .partial"):   # a .partial never passes for an archive
        read_index(partial)
    with open(partial, "ab") as f:                                 # a member torn in flight
        f.write(b"\x09sub/c.png\x80")
    with pytest.raises(OutputError, match="--resume"):            # not silently restarted or reused
        write_archive(tree, out, STEPS)
    seen = []
    result = write_archive(tree, out, STEPS, resume=True, on_member=lambda m, r: seen.append((m.name, r)))
    assert seen == [(n, i < 3) for i, n in enumerate(TREE_NAMES)]
    assert (result.resumed, result.compressed) == (3, 4)
    assert out.read_bytes() == packed.read_bytes() and not partial.exists()


def test_resume_recompresses_members_whose_source_changed(tmp_path):
    src = make_tree(tmp_path / "photos")
    out = tmp_path / "r.ardm"
    with pytest.raises(Stop):
        write_archive(src, out, STEPS, on_member=stop_after(4, []))
    save(src / "b.png", "L", (4, 4))                                # second member changes
    seen: list = []
    result = write_archive(src, out, STEPS, resume=True, on_member=lambda m, r: seen.append(r))
    assert result.resumed == 1 and seen == [True] + [False] * 6
    write_archive(src, tmp_path / "ref.ardm", STEPS)
    assert out.read_bytes() == (tmp_path / "ref.ardm").read_bytes()


def test_resume_with_other_steps_starts_over(tree, tmp_path):
    out = tmp_path / "r.ardm"
    with pytest.raises(Stop):
        write_archive(tree, out, STEPS, on_member=stop_after(2, []))
    result = write_archive(tree, out, 3, resume=True)
    assert result.resumed == 0 and read_index(out).shared.steps == 3
    assert all(e is None for _, e in test_archive(out))


def test_force_starts_over_and_resume_without_partial_starts_fresh(tree, packed, tmp_path):
    out = tmp_path / "r.ardm"
    with pytest.raises(Stop):
        write_archive(tree, out, STEPS, on_member=stop_after(2, []))
    assert write_archive(tree, out, STEPS, force=True).resumed == 0
    assert out.read_bytes() == packed.read_bytes()
    other = tmp_path / "o.ardm"
    assert write_archive(tree, other, STEPS, resume=True).resumed == 0
    assert other.read_bytes() == packed.read_bytes()


def test_parallel_jobs_give_the_same_bytes(tree, packed, tmp_path):
    write_archive(tree, tmp_path / "j.ardm", STEPS, jobs=2)
    assert (tmp_path / "j.ardm").read_bytes() == packed.read_bytes()


def test_kill_9_then_resume(tmp_path):
    src = tmp_path / "many"
    n = 150
    for i in range(n):
        save(src / f"{i // 50:02d}" / f"{i:04d}.png", "L", (4, 4))
    out = tmp_path / "out.ardm"
    partial = Path(str(out) + PARTIAL_SUFFIX)
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ardmzip", "compress", str(src), "-o", str(out), "-s", str(STEPS),
                             "-q"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (partial.exists() and partial.stat().st_size > 400):   # a few members are down
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the compressor made no progress"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and partial.exists()
    resumed: list = []
    result = write_archive(src, out, STEPS, resume=True, on_member=lambda m, r: resumed.append(r))
    assert 0 < result.resumed < n and result.resumed + result.compressed == n
    assert resumed == [True] * result.resumed + [False] * result.compressed
    assert not partial.exists()
    write_archive(src, tmp_path / "ref.ardm", STEPS)
    assert out.read_bytes() == (tmp_path / "ref.ardm").read_bytes()
    assert all(e is None for _, e in test_archive(out))


# ---------------------------------------------------------------- CLI


def test_cli_archive_round_trip(invoke, tree, packed, tmp_path):
    out = tmp_path / "photos.ardm"
    r = invoke("compress", "-s", STEPS, tree, "-o", out)
    assert r.exit_code == 0, r.stderr
    assert out.read_bytes() == packed.read_bytes()
    assert "7 images" in r.stderr and "overhead" in r.stderr and "per image" in r.stderr
    r = invoke("decompress", out, "-o", tmp_path / "back")
    assert r.exit_code == 0, r.stderr
    assert files_under(tmp_path / "back") == TREE_PNGS
    r = invoke("decompress", out)                                   # default: the name without .ardm
    assert r.exit_code == 0, r.stderr
    assert files_under(tmp_path / "photos") == TREE_PNGS
    assert list(tmp_path.rglob(".ardmzip-*")) == []


def test_cli_list(invoke, packed):
    r = invoke("list", packed)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[-1] for line in lines[1:-1]] == TREE_NAMES
    assert "6x6 P" in r.stdout and "7 images" in lines[-1]
    r = invoke("list", "--json", packed)
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["name"] for row in rows] == TREE_NAMES
    assert rows[0]["bytes"] == read_index(packed).members[0].size


def test_cli_list_errors(invoke, tmp_path):
    (tmp_path / "r.ardm").write_bytes(b"ARDS\x01" + bytes(40))
    assert_failed(invoke("list", tmp_path / "r.ardm"), 3, "r.ardm")
    assert_failed(invoke("list", tmp_path / "missing.ardm"), 2, "missing.ardm")


def test_cli_test_and_info(invoke, packed):
    r = invoke("test", packed)
    assert r.exit_code == 0 and "OK (7 images)" in r.stderr
    r = invoke("info", packed)
    assert r.exit_code == 0 and "archive of 7 images" in r.stdout and "bpsp" in r.stdout
    d = json.loads(invoke("info", "--json", packed).stdout)
    index = read_index(packed)
    assert d["images"] == 7 and d["bytes"] == index.size and d["overhead_bytes"] == index.overhead_bytes
    assert d["bpsp"] == pytest.approx(index.bpsp) and d["steps"] == STEPS


def test_cli_member(invoke, tree, packed, tmp_path):
    r = invoke("decompress", packed, "--member", "sub/d.png", "-o", tmp_path / "x.png")
    assert r.exit_code == 0, r.stderr
    assert same_picture(read_picture(tmp_path / "x.png"), read_picture(tree / "sub" / "d.png"))
    r = invoke("decompress", packed, "--member", "sub/deeper/e.bmp", "-c")
    assert r.exit_code == 0, r.stderr
    assert same_picture(read_picture(r.stdout_bytes), read_picture(tree / "sub" / "deeper" / "e.bmp"))
    r = invoke("decompress", packed, "-m", "a.png", "-m", "sub/c.png", "-o", tmp_path / "two")
    assert r.exit_code == 0, r.stderr
    assert files_under(tmp_path / "two") == {"a.png", "sub/c.png"}
    assert_failed(invoke("decompress", packed, "--member", "zz.png", "-o", tmp_path / "z.png"), 2, "zz.png")
    assert not (tmp_path / "z.png").exists()
    assert_failed(invoke("decompress", packed, "--member", "a.png", "-o", tmp_path / "x.png"), 5, "exists")


def test_cli_npz(invoke, npz_arrays, tmp_path):
    np.savez(tmp_path / "d.npz", **npz_arrays)
    r = invoke("compress", "-s", STEPS, tmp_path / "d.npz")                # default output d.ardm
    assert r.exit_code == 0, r.stderr
    assert read_index(tmp_path / "d.ardm").kind == "npz"
    r = invoke("decompress", tmp_path / "d.ardm", "-o", tmp_path / "back.npz")
    assert r.exit_code == 0, r.stderr
    with np.load(tmp_path / "back.npz") as back:
        assert all(np.array_equal(back[k], v) and back[k].shape == v.shape for k, v in npz_arrays.items())
    assert_failed(invoke("decompress", tmp_path / "d.ardm", "-o", tmp_path / "back.npy"), 2, "npz")


def test_cli_refusals(invoke, tree, packed, tmp_path):
    out = tmp_path / "x.ardm"
    out.write_bytes(b"old")
    assert_failed(invoke("compress", "-s", STEPS, tree, "-o", out), 5, "exists")
    assert out.read_bytes() == b"old"
    assert_failed(invoke("compress", "-s", STEPS, tree, "-o", tmp_path / "y.ardm", "--rm"), 2, "--rm")
    assert_failed(invoke("compress", "-s", STEPS, tree, "-o", tmp_path / "y.ardm", "-c"), 2, "-o")
    assert_failed(invoke("compress", "-s", STEPS, tree / "a.png", "--resume"), 2, "--resume")
    assert_failed(invoke("compress", "-s", STEPS, tree), 2, "directory", "-r")          # unchanged
    assert_failed(invoke("decompress", packed, "-c"), 2, "--member")
    (tmp_path / "back").mkdir()
    (tmp_path / "back" / "a.png").write_bytes(b"mine")
    assert_failed(invoke("decompress", packed, "-o", tmp_path / "back"), 5, "exists")
    assert files_under(tmp_path / "back") == {"a.png"}                  # checked before writing anything
    assert not list(tmp_path.glob("y.ardm*"))


def test_cli_recursive_still_makes_one_file_per_image(invoke, tree, tmp_path):
    r = invoke("compress", "-s", STEPS, "-r", tree, "-o", tmp_path / "packed")
    assert r.exit_code == 0, r.stderr
    assert files_under(tmp_path / "packed") == {n.rsplit(".", 1)[0] + ".ardm" for n in TREE_NAMES}


def test_cli_resume(invoke, tree, packed, tmp_path):
    out = tmp_path / "r.ardm"
    with pytest.raises(Stop):
        write_archive(tree, out, STEPS, on_member=stop_after(3, []))
    assert_failed(invoke("compress", "-s", STEPS, tree, "-o", out), 5, "--resume")
    r = invoke("compress", "-s", STEPS, tree, "-o", out, "--resume")
    assert r.exit_code == 0, r.stderr
    assert "3 resumed" in r.stderr
    assert out.read_bytes() == packed.read_bytes()


def test_cli_bad_member_source_keeps_partial(invoke, tmp_path):
    src = tmp_path / "s"
    save(src / "a.png", "L", (3, 3))
    (src / "b.png").write_bytes(b"garbage")
    out = tmp_path / "s.ardm"
    lines = assert_failed(invoke("compress", "-s", STEPS, src, "-o", out), 2, "b.png", "--resume")
    assert len(lines) == 1 and not out.exists()
    (src / "b.png").unlink()
    save(src / "b.png", "L", (3, 3))
    r = invoke("compress", "-s", STEPS, src, "-o", out, "--resume")
    assert r.exit_code == 0 and "1 resumed" in r.stderr, r.stderr


def test_single_file_commands_name_archives(invoke, packed, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "p.ardm").write_bytes(packed.read_bytes())
    r = invoke("decompress", "-r", tmp_path / "d", "-o", tmp_path / "o")
    assert_failed(r, 2, "archive")
    r = invoke("test", "-r", tmp_path / "d")                       # archives found by -r are tested whole
    assert r.exit_code == 0 and "OK (7 images)" in r.stderr


def test_a_partial_being_written_is_not_touched(tree, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "l.ardm"
    partial = Path(str(out) + PARTIAL_SUFFIX)
    with pytest.raises(Stop):
        write_archive(tree, out, STEPS, on_member=stop_after(2, []))
    before = partial.read_bytes()
    with open(partial, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)              # as a running writer holds it
        for kwargs in ({"resume": True}, {"force": True}):
            with pytest.raises(OutputError, match="another ardmzip"):
                write_archive(tree, out, STEPS, **kwargs)
    assert partial.read_bytes() == before and not out.exists()


def test_foreign_partial_is_not_overwritten_by_resume(tree, tmp_path):
    out = tmp_path / "f.ardm"
    partial = Path(str(out) + PARTIAL_SUFFIX)
    partial.write_bytes(b"somebody else's data")
    with pytest.raises(OutputError, match="not an unfinished"):
        write_archive(tree, out, STEPS, resume=True)
    assert partial.read_bytes() == b"somebody else's data"


def test_read_ahead_keeps_order_and_delivers_a_read_error_after_the_items_before_it():
    def source():
        yield from range(5)
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for x in archive._read_ahead(source(), depth=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]
    assert list(archive._read_ahead(iter(range(100)), depth=3)) == list(range(100))
    early = archive._read_ahead(iter(range(1000)), depth=2)
    assert next(early) == 0
    early.close()                                   # the reader thread stops instead of reading on


def test_parallel_extraction_and_test_give_the_same_results(invoke, copy, tree, tmp_path):
    """-j 2 decodes batches in worker processes: same pixels, a damaged member still fails alone."""
    m = member_named(copy, "sub/c.png")
    flip(copy, m.offset + m.size // 2)
    results = dict(test_archive(copy, jobs=2))
    assert [n for n, e in results.items() if e is not None] == ["sub/c.png"]
    results = dict(extract_all(copy, tmp_path / "out", jobs=2))
    assert isinstance(results["sub/c.png"], FormatError)
    assert files_under(tmp_path / "out") == TREE_PNGS - {"sub/c.png"}
    assert same_picture(read_picture(tmp_path / "out" / "a.png"), read_picture(tree / "a.png"))
    r = invoke("decompress", copy, "-j", "2", "-o", tmp_path / "cli")
    assert_failed(r, 3, "sub/c.png")
    assert files_under(tmp_path / "cli") == TREE_PNGS - {"sub/c.png"}
    assert_failed(invoke("test", "-j", "2", copy), 3, "sub/c.png")


def test_jobs_for_a_single_file_is_refused(invoke, tmp_path):
    save(tmp_path / "a.png", "L", (3, 3))
    assert invoke("compress", "-s", STEPS, tmp_path / "a.png").exit_code == 0
    assert_failed(invoke("decompress", "-j", "2", tmp_path / "a.ardm", "-o", tmp_path / "b.png"), 2, "-j")


def test_ordered_map_keeps_order_and_finishes_earlier_work_before_an_input_error():
    def tasks():
        for i in range(5):
            yield i, (i, 10)
        raise OSError("bad input")

    for jobs in (1, 2):
        got = []
        with pytest.raises(OSError, match="bad input"):
            for tag, value in archive._ordered_map(pow, tasks(), jobs):
                got.append((tag, value))
        assert got == [(i, i ** 10) for i in range(5)]


# ---------------------------------------------------------------- format 1


V1 = Path(__file__).parent / "data" / "archive-v1"


def test_format_1_archives_still_read_bit_exact(tmp_path):
    """Archives written before format 2 (tests/data/archive-v1, by 75cee44) list, test and
    extract to the very pixels of their sources."""
    index = read_index(V1 / "arrays.ardm")
    assert index.version == 1 and index.kind == "npz" and len(index.members) == 5
    assert all(e is None for _, e in test_archive(V1 / "arrays.ardm"))
    assert extract_all(V1 / "arrays.ardm", tmp_path / "back.npz") == [(m.name, None) for m in index.members]
    with np.load(V1 / "arrays.npz") as want, np.load(tmp_path / "back.npz") as back:
        assert back.files == want.files and all(np.array_equal(back[k], want[k]) for k in want.files)
    photos = ["a.png", "b.png", "sub/c.png"]
    assert [m.name for m in list_archive(V1 / "photos.ardm")] == photos
    extract_all(V1 / "photos.ardm", tmp_path / "photos")
    for name in photos:
        assert same_picture(read_picture(tmp_path / "photos" / name), read_picture(V1 / "photos" / name)), name
    assert same_picture(extract_member(V1 / "photos.ardm", "sub/c.png"), read_picture(V1 / "photos" / "sub/c.png"))
    info = archive.archive_info(V1 / "photos.ardm")
    assert (info["version"], info["model"], info["steps"], info["model_source"]) == (1, "xic-s48", 2, "registered")


V2 = Path(__file__).parent / "data" / "archive-v2"


def test_format_2_archives_still_read_bit_exact(tmp_path):
    """Archives written in format 2 (tests/data/archive-v2, by f535393, from the format 1
    fixtures' sources: metadata, alpha, gray and two arrays) list, test and extract exactly."""
    index = read_index(V2 / "arrays.ardm")
    assert index.version == 2 and index.kind == "npz" and len(index.members) == 5
    assert all(e is None for _, e in test_archive(V2 / "arrays.ardm"))
    assert extract_all(V2 / "arrays.ardm", tmp_path / "back.npz") == [(m.name, None) for m in index.members]
    with np.load(V1 / "arrays.npz") as want, np.load(tmp_path / "back.npz") as back:
        assert back.files == want.files and all(np.array_equal(back[k], want[k]) for k in want.files)
    photos = ["a.png", "b.png", "sub/c.png"]
    assert [m.name for m in list_archive(V2 / "photos.ardm")] == photos
    assert all(e is None for _, e in test_archive(V2 / "photos.ardm"))
    extract_all(V2 / "photos.ardm", tmp_path / "photos")
    for name in photos:
        assert same_picture(read_picture(tmp_path / "photos" / name), read_picture(V1 / "photos" / name)), name
    assert same_picture(extract_member(V2 / "photos.ardm", "a.png"), read_picture(V1 / "photos" / "a.png"))
    info = archive.archive_info(V2 / "photos.ardm")
    assert (info["version"], info["model"], info["steps"], info["model_source"]) == (2, "xic-s48", 2, "registered")
    with open(V2 / "photos.ardm", "rb") as f:      # members rebuild the single files they were cut from
        v2 = read_index(V2 / "photos.ardm")
        assert [archive._read_blob(f, v2, m) for m in v2.members] == \
            [compress_picture(read_picture(V1 / "photos" / n), 2) for n in photos]


V3 = Path(__file__).parent / "data" / "archive-v3"


def test_format_3_archives_still_read_bit_exact(tmp_path, elsewhere):
    """Archives written in format 3 (tests/data/archive-v3, by 90092ae): one naming the shipped
    model, one carrying a tiny unregistered model as the file itself (format 4 compresses it)."""
    with np.load(V3 / "arrays.npz") as z:
        want = z["images"]
    for name, source in (("arrays.ardm", "registered"), ("carried.ardm", "carried (5620 bytes)")):
        index = read_index(V3 / name)
        assert index.version == 3 and len(index.members) == 3
        assert archive.archive_info(V3 / name)["model_source"] == source
        assert all(e is None for _, e in test_archive(V3 / name))
        extract_all(V3 / name, tmp_path / f"{name}.npz")
        with np.load(tmp_path / f"{name}.npz") as back:
            assert np.array_equal(back["images"], want)
    assert read_index(V3 / "carried.ardm").model_bytes == (V3 / "tiny.npz").stat().st_size


# ---------------------------------------------------------------- archives that carry their model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A model file this ardmzip does not have: the shipped model with another meta field,
    so another sha256 (made in a moment, no training)."""
    from ardmzip import weights
    m = weights.load()
    path = tmp_path_factory.mktemp("models") / "thumbs.npz"
    path.write_bytes(weights.to_bytes(m.net, m.curve, dict(m.meta, note="a test copy")))
    assert weights.registered_name(hashlib.sha256(path.read_bytes()).hexdigest()) is None
    return path


@pytest.fixture
def elsewhere(monkeypatch):
    """A process that has never seen an unregistered model (another machine)."""
    from ardmzip import weights
    monkeypatch.setattr(weights, "_KNOWN", {})


def test_an_archive_carries_an_unregistered_model_and_decodes_without_it(npz_arrays, model_file, tmp_path,
                                                                         monkeypatch):
    from ardmzip import weights
    np.savez(tmp_path / "d.npz", **npz_arrays)
    index = write_archive(tmp_path / "d.npz", tmp_path / "d.ardm", STEPS, model=str(model_file)).index
    data = model_file.read_bytes()
    stored = len(xz(data))                                                    # format 4 carries it xz-compressed
    assert index.model_bytes == stored < 0.75 * len(data) and index.shared.model_name == "thumbs"
    assert index.shared.model_hash == hashlib.sha256(data).digest()[:8]
    assert index.overhead_bytes - stored < 8 * len(index.members) + 100      # carried once, not per member
    info = archive.archive_info(tmp_path / "d.ardm")
    assert info["model_source"] == f"carried ({stored} bytes, xz)" and info["model"] == "thumbs"
    monkeypatch.setattr(weights, "_KNOWN", {})                                # another machine
    for jobs in (1, 2):                                                       # workers get the carried bytes
        out = tmp_path / f"back{jobs}.npz"
        assert all(e is None for _, e in extract_all(tmp_path / "d.ardm", out, jobs=jobs))
        with np.load(out) as back:
            assert all(np.array_equal(back[k], v) for k, v in npz_arrays.items())
    monkeypatch.setattr(weights, "_KNOWN", {})
    assert np.array_equal(extract_member(tmp_path / "d.ardm", "arr_0/000003").pixels, npz_arrays["arr_0"][3])
    monkeypatch.setattr(weights, "_KNOWN", {})
    assert all(e is None for _, e in test_archive(tmp_path / "d.ardm"))


def test_a_carried_model_resumes_and_codes_in_workers_byte_identical(npz_arrays, model_file, tmp_path):
    np.savez(tmp_path / "d.npz", **npz_arrays)
    with pytest.raises(Stop):
        write_archive(tmp_path / "d.npz", tmp_path / "r.ardm", STEPS, model=str(model_file),
                      on_member=stop_after(5, []))
    result = write_archive(tmp_path / "d.npz", tmp_path / "r.ardm", STEPS, model=str(model_file), resume=True)
    assert result.resumed == 5
    write_archive(tmp_path / "d.npz", tmp_path / "one.ardm", STEPS, model=str(model_file), jobs=2)    # workers
    assert (tmp_path / "r.ardm").read_bytes() == (tmp_path / "one.ardm").read_bytes()


def test_a_carried_model_that_is_not_one_complete_xz_stream_is_refused(npz_arrays, model_file, tmp_path,
                                                                       elsewhere, monkeypatch):
    """Format 4's model section must be one xz stream of the model file, nothing after it and
    nothing past MAX_CARRIED_MODEL once decompressed; anything else is a corrupt archive."""
    np.savez(tmp_path / "d.npz", **npz_arrays)
    index = write_archive(tmp_path / "d.npz", tmp_path / "d.ardm", STEPS, model=str(model_file)).index
    assert archive._unpack_model(xz(model_file.read_bytes())) == model_file.read_bytes()
    assert archive._unpack_model(xz(b"x") + b"\0") == archive._unpack_model(b"not xz") == b""
    limit = archive.MAX_CARRIED_MODEL
    monkeypatch.setattr(archive, "MAX_CARRIED_MODEL", len(model_file.read_bytes()) - 1)
    with pytest.raises(FormatError, match="carried model 'thumbs' does not match its hash"):
        extract_all(tmp_path / "d.ardm", tmp_path / "back.npz")
    monkeypatch.setattr(archive, "MAX_CARRIED_MODEL", limit)
    assert all(e is None for _, e in test_archive(tmp_path / "d.ardm"))
    flip(tmp_path / "d.ardm", index.model_offset + index.model_bytes // 2)
    with pytest.raises(FormatError, match="corrupt archive"):
        extract_all(tmp_path / "d.ardm", tmp_path / "back2.npz")


def test_a_damaged_carried_model_is_refused(invoke, npz_arrays, model_file, tmp_path, elsewhere):
    np.savez(tmp_path / "d.npz", **npz_arrays)
    index = write_archive(tmp_path / "d.npz", tmp_path / "d.ardm", STEPS, model=str(model_file)).index
    flip(tmp_path / "d.ardm", index.model_offset + index.model_bytes // 2)
    assert len(read_index(tmp_path / "d.ardm").members) == 15               # the index is still fine
    with pytest.raises(FormatError, match="carried model 'thumbs' does not match its hash"):
        test_archive(tmp_path / "d.ardm")
    assert_failed(invoke("test", tmp_path / "d.ardm"), 3, "carried model")
    assert_failed(invoke("decompress", tmp_path / "d.ardm", "-o", tmp_path / "back.npz"), 3, "carried model")
    assert_failed(invoke("decompress", tmp_path / "d.ardm", "--member", "gray/000001", "-o", tmp_path / "g.png"),
                  3, "carried model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.ardm", "d.npz"]


def test_a_format_2_archive_carrying_its_model_still_reads(npz_arrays, model_file, tmp_path, elsewhere):
    """Format 2 kept a carried model's size in its header (0: registered); laid out as it was."""
    from ardmzip import weights
    from ardmzip.codec import compress
    data, gray = model_file.read_bytes(), npz_arrays["gray"]
    blobs = [compress(image, STEPS, model=str(model_file)) for image in gray]
    shared = archive.Shared("npz", False, (archive.ArraySpec("gray", gray.shape),), "thumbs",
                            hashlib.sha256(data).digest()[:8], STEPS, 0, container.FORMAT_VERSION, len(data))
    parts = [archive._member_parts(shared, f"gray/{i:06d}", b, 2) for i, b in enumerate(blobs)]
    body = shared.pack(2) + data + b"".join(r for r, _, _ in parts)
    index = archive._varint(len(parts)) + b"".join(e for _, e, _ in parts)
    (tmp_path / "v2.ardm").write_bytes(body + index + archive._crc(index) + archive._footer_v2(len(body)))
    weights._KNOWN.clear()
    assert read_index(tmp_path / "v2.ardm").version == 2
    assert extract_all(tmp_path / "v2.ardm", tmp_path / "back.npz") == [(f"gray/{i:06d}", None) for i in range(3)]
    with np.load(tmp_path / "back.npz") as back:
        assert np.array_equal(back["gray"], gray)


def test_worker_processes_get_a_named_model_given_by_file(npz_arrays, model_file, tmp_path, monkeypatch):
    """An archive that names, not carries, a model this ardmzip lacks (registered where it was
    made), read with its model file given (``--model FILE``): -j workers get the file's bytes."""
    from ardmzip import weights
    np.save(tmp_path / "g.npy", npz_arrays["gray"])
    monkeypatch.setattr(weights, "_CACHE", dict(weights._CACHE))
    monkeypatch.setattr(weights, "_KNOWN", {})
    sha = hashlib.sha256(model_file.read_bytes()).hexdigest()
    monkeypatch.setitem(weights.REGISTRY, "thumbs", (str(model_file), sha))
    assert write_archive(tmp_path / "g.npy", tmp_path / "g.ardm", STEPS, model="thumbs").index.model_bytes == 0
    monkeypatch.delitem(weights.REGISTRY, "thumbs")
    del weights._CACHE["thumbs"]
    weights.load(model_file)                                          # --model FILE
    assert all(e is None for _, e in test_archive(tmp_path / "g.ardm", jobs=2))


def test_registered_models_are_named_unless_carry_model(npz_arrays, tmp_path):
    from ardmzip import weights
    np.savez(tmp_path / "d.npz", **npz_arrays)
    named = write_archive(tmp_path / "d.npz", tmp_path / "n.ardm", STEPS).index
    carried = write_archive(tmp_path / "d.npz", tmp_path / "c.ardm", STEPS, carry_model=True).index
    by_path = write_archive(tmp_path / "d.npz", tmp_path / "p.ardm", STEPS,
                            model=str(weights.MODEL_DIR / "xic-s48.npz")).index    # a registered model's file
    assert named.model_bytes == by_path.model_bytes == 0 and by_path.shared == named.shared
    assert carried.model_bytes == len(xz(weights.load().data))
    assert carried.members == tuple(dataclasses.replace(m, offset=m.offset + carried.model_offset + carried.model_bytes
                                                        - named.model_offset) for m in named.members)
    assert all(e is None for _, e in test_archive(tmp_path / "c.ardm"))


def test_cli_carried_model(invoke, npz_arrays, model_file, tmp_path, elsewhere):
    from ardmzip import weights
    np.savez(tmp_path / "d.npz", **npz_arrays)
    r = invoke("compress", "-s", STEPS, tmp_path / "d.npz", "-o", tmp_path / "d.ardm", "--model", model_file)
    assert r.exit_code == 0, r.stderr
    weights._KNOWN.clear()
    size = len(xz(model_file.read_bytes()))
    r = invoke("info", tmp_path / "d.ardm")
    assert r.exit_code == 0 and "model thumbs (" in r.stdout and f"carried ({size} bytes, xz)" in r.stdout, r.stdout
    rows = [json.loads(line) for line in invoke("list", "--json", tmp_path / "d.ardm").stdout.splitlines()]
    assert {(row["model"], row["model_source"]) for row in rows} == {("thumbs", f"carried ({size} bytes, xz)")}
    assert f"carried ({size} bytes, xz)" in invoke("list", tmp_path / "d.ardm").stdout
    d = json.loads(invoke("info", "--json", tmp_path / "d.ardm").stdout)
    assert d["model_carried_bytes"] == size and d["model_hash"] == hashlib.sha256(model_file.read_bytes()).hexdigest()[:16]
    r = invoke("decompress", tmp_path / "d.ardm", "-o", tmp_path / "back.npz")
    assert r.exit_code == 0, r.stderr
    with np.load(tmp_path / "back.npz") as back:
        assert all(np.array_equal(back[k], v) for k, v in npz_arrays.items())
    r = invoke("compress", "-s", STEPS, tmp_path / "d.npz", "-o", tmp_path / "r.ardm")
    assert "registered" in invoke("info", tmp_path / "r.ardm").stdout
    assert_failed(invoke("compress", "-s", STEPS, tmp_path / "d.npz", "-o", tmp_path / "x.ardm", "--model",
                         tmp_path / "missing.npz"), 4, "missing.npz")
    assert_failed(invoke("compress", "-s", STEPS, tmp_path / "d.npz", "-o", tmp_path / "x.ardm", "--model", "nope"),
                  4, "unknown model 'nope'")
    assert not (tmp_path / "x.ardm").exists() and not list(tmp_path.glob("x.ardm*"))


def test_single_files_with_an_unregistered_model_decode_with_model_file(invoke, model_file, tmp_path, elsewhere):
    from ardmzip import weights
    from ardmzip.codec import compress, decompress
    from ardmzip.errors import ModelMismatch
    image = RNG.integers(0, 256, (5, 6, 3), np.uint8)
    data = compress(image, STEPS, model=str(model_file))
    (tmp_path / "x.ardm").write_bytes(data)
    weights._KNOWN.clear()
    with pytest.raises(ModelMismatch, match="model 'thumbs'.*--model"):
        decompress(data)
    assert_failed(invoke("decompress", tmp_path / "x.ardm", "-o", tmp_path / "x.png"), 4, "thumbs", "--model")
    assert_failed(invoke("test", tmp_path / "x.ardm", "--model", tmp_path / "x.ardm"), 4, "not an ardmzip model")
    assert not (tmp_path / "x.png").exists()
    r = invoke("decompress", tmp_path / "x.ardm", "-o", tmp_path / "x.png", "--model", model_file)
    assert r.exit_code == 0, r.stderr
    assert np.array_equal(read_picture(tmp_path / "x.png").pixels, image)
    assert invoke("test", tmp_path / "x.ardm", "--model", model_file).exit_code == 0
    weights._KNOWN.clear()
    weights.load(model_file)                                        # the Python API: load it, then decode
    assert np.array_equal(decompress(data), image)


def test_pool_map_stops_at_a_failing_task_and_yields_nothing_after_it():
    """-j N: results come in order, and a task that raises ends the map there (the archive's
    .partial must not get later members after a gap); a failing input still lets the work
    before it land."""
    tasks = [(i, (str(i) if i != 2 else "not a number",)) for i in range(8)]
    got = []
    with pytest.raises(ValueError):
        for tag, value in archive._ordered_map(int, tasks, 2):
            got.append((tag, value))
    assert got == [(0, 0), (1, 1)]

    def inputs():
        yield from [(0, ("0",)), (1, ("1",))]
        raise OSError("unreadable input")
    got = []
    with pytest.raises(OSError):
        for tag, value in archive._ordered_map(int, inputs(), 2):
            got.append((tag, value))
    assert got == [(0, 0), (1, 1)]

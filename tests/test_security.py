"""Hostile and resource-hungry inputs (issue 15): names, bombs, races, pipes, full disks.

Hostile archives are built with the project's own format helpers (``archive.Shared``,
``_member_parts``, ``_footer``; for format 1 ``_record``, ``_pack_index``, ``_footer_v1``;
``container.pack``), so that only the hostile field is wrong and every CRC is right: what
is tested is the check, not the checksum in front of it.
The property tests at the end fuzz the container, archive and constraint parsers;
``ARDMZIP_FUZZ_EXAMPLES=N`` runs N examples each instead of the quick default (CI).
"""
from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ardmzip import archive, constraint, container, weights
from ardmzip.archive import ArraySpec, MemberInfo, extract_all, name_problem, read_index, write_archive
from ardmzip.codec import compress, compress_picture, decompress, pixel_crc
from ardmzip.errors import FormatError, InputError, LimitError, OutputError
from ardmzip.imageio import Picture, read_picture, write_file_atomic, write_file_under

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 2
RNG = np.random.default_rng(15)
FUZZ_EXAMPLES = int(os.environ.get("ARDMZIP_FUZZ_EXAMPLES", "200"))       # a few seconds in all
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def rgb_blob() -> bytes:
    """A real 2x2 RGB member."""
    return compress_picture(Picture(RNG.integers(0, 256, (2, 2, 3), np.uint8), "RGB"), STEPS)


HEADER_V1 = b"ARDS\x01"


def shared_for(kind: str, arrays: list[ArraySpec], steps: int = STEPS) -> archive.Shared:
    model = weights.load()
    return archive.Shared(kind, False, tuple(arrays), model.name, model.hash8, steps, 0, container.FORMAT_VERSION)


def v2_archive(shared: archive.Shared, records: list[bytes], entries: list[bytes], version: int = 3) -> bytes:
    """Header, members, index and footer of format 3 (or 2) around the given parts."""
    head = shared.pack(version)
    out = head + b"".join(records)
    if version == 2:
        index = archive._varint(len(entries)) + b"".join(entries)
        return out + index + archive._crc(index) + archive._footer_v2(len(out))
    index = b"".join(entries)
    return out + index + archive._footer(head, index)


def build_archive(kind: str, arrays: list[ArraySpec], members: list[tuple[str, bytes]], version: int = 3) -> bytes:
    """An archive laid out exactly as the writer lays it out (format 3, or 2 or 1), whatever the
    names say; ``members`` are (name, single .ardm file)."""
    if version > 1:
        steps = container.peek_header(members[0][1]).steps if members else STEPS
        shared = shared_for(kind, arrays, steps)
        parts = [archive._member_parts(shared, name, blob, version) for name, blob in members]
        return v2_archive(shared, [r for r, _, _ in parts], [e for _, e, _ in parts], version)
    out = bytearray(HEADER_V1)
    infos = []
    for name, blob in members:
        out += archive._record(name, len(blob))
        h = container.peek_header(blob)
        infos.append(MemberInfo(name, len(out), len(blob), h.mode, h.width, h.height))
        out += blob
    index_offset = len(out)
    out += archive._pack_index(kind, False, arrays, infos)
    out += archive._footer_v1(index_offset, len(infos))
    return bytes(out)


build_v = build_archive


def constant_ardm(width: int, height: int, colour: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    """An RGB picture of one colour: its file is a header and a 4-byte CONSTANT stream."""
    model = weights.load()
    pixels_crc = pixel_crc(np.full((height, width, 3), colour, np.uint8)) if width * height < 10**6 else 0
    header = container.Header(model.name, model.hash8, "RGB", width, height, 16, 0, pixels_crc)
    return container.pack(header, [bytes([constraint.CONSTANT, *colour])])


def assert_failed(result, code: int, *mentions: str) -> list[str]:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("ardmzip:") for line in lines), lines
    assert not any("internal error" in line or "Traceback" in line for line in lines), lines
    for text in mentions:
        assert any(text in line for line in lines), (text, lines)
    return lines


def files_in(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "ardmzip", *args], capture_output=True, env=env,
                          timeout=180, check=False, **kwargs)


def peak_bytes(fn) -> int:
    """Peak Python memory allocated while ``fn`` runs (its exception is swallowed)."""
    tracemalloc.start()
    try:
        fn()
    except Exception:  # noqa: BLE001 - only the memory matters here
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["a.png", "sub/b c.png", "ünï/çødé.png", "a..b", "...", ".hidden/x",
                                  "x" * archive.MAX_NAME_BYTES])
def test_plain_relative_names_are_accepted(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name, problem", [
    ("", "bytes"), ("x" * (archive.MAX_NAME_BYTES + 1), "bytes"), ("é" * 2049, "bytes"),
    ("/etc/passwd", "relative"), ("a//b", "relative"), ("./a", "relative"), ("a/.", "relative"),
    ("..", "relative"), ("../x", "relative"), ("a/../../b", "relative"), ("a/", "relative"),
    ("a\\b", "backslash"), ("..\\x", "backslash"),
    ("a\x00b", "control"), ("\x1b[31mred", "control"), ("a\nb", "control"), ("a\x9bb", "control"),
    ("a\x7f", "control"), ("\ud800", "UTF-8"),
])
def test_unsafe_names_are_refused(name, problem):
    assert problem in name_problem(name)


def _hostile_archives(blob: bytes, version: int) -> dict[str, bytes]:
    rgb = (1, 2, 2, 3)
    build_archive = functools.partial(build_v, version=version)
    return {
        "npz key ../../victim": build_archive("npz", [ArraySpec("../../victim", rgb)],
                                              [("../../victim/000000", blob)]),
        "npz key with NUL": build_archive("npz", [ArraySpec("a\x00b", rgb)], [("a\x00b/000000", blob)]),
        "npz absolute key": build_archive("npz", [ArraySpec("/tmp/x", rgb)], [("/tmp/x/000000", blob)]),
        "npz key with escape codes": build_archive("npz", [ArraySpec("\x1b]0;pwned\x07", rgb)],
                                                   [("\x1b]0;pwned\x07/000000", blob)]),
        "npy with a key": build_archive("npy", [ArraySpec("../x", rgb)], [("../x/000000", blob)]) if version < 3
        else b"",
        "image ../evil.png": build_archive("images", [], [("../evil.png", blob)]),
        "image with escape codes": build_archive("images", [], [("a\x1b[2J.png", blob)]),
        "image with backslash": build_archive("images", [], [("..\\evil.png", blob)]),
        "duplicate npz keys": build_archive("npz", [ArraySpec("k", rgb), ArraySpec("k", rgb)],
                                            [("k/000000", blob), ("k/000000", blob)]),
    }


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("case", ["npz key ../../victim", "npz key with NUL", "npz absolute key",
                                  "npz key with escape codes", "npy with a key", "image ../evil.png",
                                  "image with escape codes", "image with backslash", "duplicate npz keys"])
def test_hostile_names_are_refused_on_reading(case, version, rgb_blob, tmp_path, invoke):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    evil = work / "evil.ardm"
    if case == "npy with a key" and version == 3:
        with pytest.raises(ValueError, match="key"):               # format 3 has no place for one
            shared_for("npy", [ArraySpec("../x", (1, 2, 2, 3))]).pack()
        return
    evil.write_bytes(_hostile_archives(rgb_blob, version)[case])
    with pytest.raises(FormatError, match="corrupt archive"):
        read_index(evil)
    out = work / "out"
    assert_failed(invoke("decompress", evil, "-o", out, "-f"), 3, "corrupt archive")
    assert_failed(invoke("decompress", evil, "-o", work / "x.npz", "-f"), 3, "corrupt archive")
    assert_failed(invoke("decompress", evil, "--member", "../../victim/000000", "-o", out), 3)
    result = invoke("test", evil)
    assert_failed(result, 3, "corrupt archive")
    assert "OK" not in result.stderr
    result = invoke("list", evil)
    assert_failed(result, 3)
    assert "\x1b" not in result.stdout + result.stderr and "\x00" not in result.stderr
    assert files_in(tmp_path) == {"a", "a/b", "a/b/evil.ardm"}          # nothing written anywhere


def test_hostile_names_are_refused_on_writing(tmp_path):
    images = np.zeros((1, 2, 2), np.uint8)
    for key in ("../x", "a\x1bb", "a//b"):
        path = tmp_path / "bad.npz"
        with Path(path).open("wb") as f:
            np.savez(f, **{key: images})
        with pytest.raises(InputError, match="cannot name archive members"):
            write_archive(path, tmp_path / "bad.ardm", STEPS)
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.new("L", (2, 2)).save(folder / "a\x1b[2Jb.png")
    with pytest.raises(InputError, match="control character"):
        write_archive(folder, tmp_path / "bad.ardm", STEPS)
    assert not any(p.suffix in (".ardm", ".partial") for p in tmp_path.iterdir())


@pytest.fixture(scope="module")
def nested(tmp_path_factory) -> Path:
    """An archive with members a.png, sub/b.png and sub/c.png."""
    root = tmp_path_factory.mktemp("nested")
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png", "sub/c.png"):
        Image.fromarray(RNG.integers(0, 256, (3, 4, 3), np.uint8)).save(src / name)
    write_archive(src, root / "nested.ardm", STEPS)
    return root / "nested.ardm"


def test_extraction_does_not_write_through_a_symlinked_folder(nested, tmp_path, invoke):
    outside, out = tmp_path / "outside", tmp_path / "out"
    outside.mkdir()
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)
    results = dict(extract_all(nested, out))
    assert results["a.png"] is None
    assert isinstance(results["sub/b.png"], OutputError) and "symbolic link" in str(results["sub/b.png"])
    assert list(outside.iterdir()) == []
    assert_failed(invoke("decompress", nested, "-o", out, "-f"), 5, "symbolic link", "--follow-symlinks")
    assert_failed(invoke("decompress", nested, "--member", "sub/b.png", "--member", "a.png", "-o", out, "-f"), 5,
                  "symbolic link")
    assert list(outside.iterdir()) == []
    result = invoke("decompress", nested, "-o", out, "-f", "--follow-symlinks")     # asked for: allowed
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["b.png", "c.png"]


def test_a_symlink_in_place_of_a_file_is_replaced_not_followed(nested, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").symlink_to(victim)
    with pytest.raises(OutputError, match="exists"):
        extract_all(nested, out)
    assert all(error is None for _, error in extract_all(nested, out, force=True))
    assert victim.read_bytes() == b"keep"
    assert not (out / "a.png").is_symlink() and read_picture(out / "a.png").mode == "RGB"


@pytest.mark.parametrize("openat", [True, False])
def test_write_file_under(tmp_path, monkeypatch, openat):
    from ardmzip import imageio
    monkeypatch.setattr(imageio, "_OPENAT", openat and imageio._OPENAT)      # False: the by-path fallback
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    assert write_file_under(out, "a/b/c.png", b"1") == str(out / "a" / "b" / "c.png")
    assert (out / "a" / "b" / "c.png").read_bytes() == b"1"
    with pytest.raises(OutputError, match="exists"):
        write_file_under(out, "a/b/c.png", b"2")
    (out / "a" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputError, match="symbolic link"):
        write_file_under(out, "a/link/d.png", b"3")
    assert list(outside.iterdir()) == []
    write_file_under(out, "a/link/d.png", b"3", follow_symlinks=True)
    assert (outside / "d.png").read_bytes() == b"3"
    (out / "file").write_bytes(b"")
    with pytest.raises(OutputError, match="cannot create folder"):
        write_file_under(out, "file/e.png", b"4")


def test_write_file_under_refuses_unsafe_parts_even_unchecked(tmp_path):
    for relative in ("../x.png", "a/../../x.png", "/abs.png", "a//x.png"):
        with pytest.raises(OutputError):
            write_file_under(tmp_path / "out", relative, b"x")
    assert files_in(tmp_path) <= {"out"}


# ---------------------------------------------------------------- bombs


def test_a_tiny_file_claiming_a_huge_picture_is_refused_at_once(invoke, tmp_path):
    bomb = constant_ardm(20000, 20000)
    assert len(bomb) < 64
    t0 = time.perf_counter()
    with pytest.raises(LimitError, match="400,000,000 pixels, over the limit of 178,956,970"):
        decompress(bomb)
    assert time.perf_counter() - t0 < 1.0
    assert peak_bytes(lambda: decompress(bomb)) < 1 << 20
    path = tmp_path / "bomb.ardm"
    path.write_bytes(bomb)
    assert_failed(invoke("decompress", path), 2, "--max-pixels")
    assert_failed(invoke("test", path), 2, "over the limit")
    assert files_in(tmp_path) == {"bomb.ardm"}
    result = invoke("info", path)                     # the header alone is still shown
    assert result.exit_code == 0 and "20000x20000" in result.stdout


def test_max_pixels_sets_the_limit_and_zero_lifts_it(invoke, tmp_path):
    data = constant_ardm(100, 60)
    with pytest.raises(LimitError):
        decompress(data, max_pixels=5999)
    assert decompress(data, max_pixels=6000).shape == (60, 100, 3)
    assert decompress(data, max_pixels=0).shape == (60, 100, 3)
    path = tmp_path / "c.ardm"
    path.write_bytes(data)
    assert_failed(invoke("decompress", path, "--max-pixels", "100"), 2, "over the limit of 100")
    assert invoke("decompress", path, "--max-pixels", "0").exit_code == 0
    with pytest.raises(LimitError):
        compress(np.zeros((10, 10), np.uint8), 1, max_pixels=99)
    png = tmp_path / "p.png"
    Image.new("RGB", (40, 30)).save(png)
    with pytest.raises(LimitError, match="1,200 pixels"):
        read_picture(png, max_pixels=1199)
    assert_failed(invoke("compress", png, "--max-pixels", "1000"), 2, "--max-pixels")
    assert not (tmp_path / "p.ardm").exists()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height gray pixels, with a few bytes of image data."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        chunk(b"IEND", b"")


def test_an_input_bomb_is_refused_before_decoding_and_pillows_limit_is_restored():
    pillow = Image.MAX_IMAGE_PIXELS
    bomb = png_header_only(20000, 20000)
    with pytest.raises(LimitError, match="over the limit of 178,956,970"):
        read_picture(bomb)                                       # Pillow's own check, our message
    with pytest.raises(LimitError, match="144,000,000 pixels"):
        read_picture(png_header_only(12000, 12000), max_pixels=100_000_000)
    for lifted in (0, 500_000_000):                              # past Pillow's limit: its data is short
        with pytest.raises(InputError) as error:
            read_picture(bomb, max_pixels=lifted)
        assert not isinstance(error.value, LimitError)
    assert Image.MAX_IMAGE_PIXELS == pillow


def build_count_bomb(images: int, members: int, footer: int, version: int) -> bytes:
    """An npy-kind archive without member bytes whose array claims ``images`` 1x1 images, its
    index ``members`` members (format 2; format 3 has no count) and (format 1) its footer ``footer``."""
    if version > 1:
        return v2_archive(shared_for("npy", [ArraySpec("", (images, 1, 1))]), [],
                          [archive._varint(members)] if version == 2 else [], version)
    index = bytearray((archive.KINDS.index("npy"), 0))
    index += archive._varint(1) + archive._varint(0) + bytes((3,))
    for d in (images, 1, 1):
        index += archive._varint(d)
    index += archive._varint(members)
    index += archive._crc(index)
    return HEADER_V1 + bytes(index) + archive._footer_v1(len(HEADER_V1), footer)


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("images, members, footer", [
    (10**6, 0, 0),              # the bomb (with 10^7): names were made from the array's claim
    (10**12, 0, 0), (10**12, 10**12, 10**12), (10**7, 10**7, 10**7), (10**7, 10**7, 1)])
def test_claimed_member_counts_are_checked_against_the_bytes(tmp_path, invoke, images, members, footer, version):
    path = tmp_path / "bomb.ardm"
    path.write_bytes(build_count_bomb(images, members, footer, version))
    assert path.stat().st_size < 96
    t0 = time.perf_counter()
    claim = {1: footer, 2: members, 3: images}[version]   # format 2 keeps the count in the index, 3 in the arrays
    with pytest.raises(FormatError, match="cannot fit" if claim > 10**9 else "corrupt archive"):
        read_index(path)                     # a footer's claim is refused before the index is read
    assert time.perf_counter() - t0 < 1.0
    assert peak_bytes(lambda: read_index(path)) < 1 << 20
    assert_failed(invoke("list", path), 3, "corrupt archive")


def test_a_source_array_claiming_more_images_than_it_holds_is_refused(tmp_path):
    path = tmp_path / "claims.npy"
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                 "shape": (10**12, 32, 32)})
        f.write(bytes(100))
    peak = peak_bytes(lambda: write_archive(path, tmp_path / "x.ardm", STEPS))
    with pytest.raises(InputError, match="truncated"):
        write_archive(path, tmp_path / "x.ardm", STEPS)
    assert peak < 1 << 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.npy"]


def test_archive_members_over_the_limit(nested, tmp_path, invoke):
    results = archive.test_archive(nested, max_pixels=11)             # members are 4x3
    assert all(isinstance(error, LimitError) for _, error in results)
    assert all(error is None for _, error in archive.test_archive(nested, max_pixels=12))
    assert_failed(invoke("decompress", nested, "-o", tmp_path / "out", "--max-pixels", "11"), 2, "over the limit")
    assert_failed(invoke("decompress", nested, "--member", "a.png", "-o", tmp_path / "a.png",
                         "--max-pixels", "11"), 2, "over the limit")
    assert not (tmp_path / "a.png").exists() and list((tmp_path / "out").rglob("*.png")) == []
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, images=RNG.integers(0, 256, (2, 3, 4), np.uint8))
    with pytest.raises(LimitError):
        write_archive(arrays, tmp_path / "arrays.ardm", STEPS, max_pixels=11)
    write_archive(arrays, tmp_path / "arrays.ardm", STEPS)
    with pytest.raises(LimitError):                                    # refused before writing anything
        extract_all(tmp_path / "arrays.ardm", tmp_path / "back.npz", max_pixels=11)
    assert not (tmp_path / "back.npz").exists()


def test_running_out_of_memory_is_one_line_not_an_internal_error(invoke, tmp_path, monkeypatch):
    from ardmzip import cli

    def allocation_fails(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] . DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 6400000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(cli, "decompress_bytes", allocation_fails)
    path = tmp_path / "c.ardm"
    path.write_bytes(constant_ardm(4, 4))
    assert_failed(invoke("decompress", path), 1, "out of memory")
    assert not (tmp_path / "c.png").exists()


# ---------------------------------------------------------------- writes, pipes, full disks


def test_concurrent_writers_without_force_one_wins(tmp_path):
    target = tmp_path / "out.png"
    writers = 32
    start = threading.Barrier(writers)
    outcomes: list[object] = [None] * writers

    def write(i: int) -> None:
        start.wait()
        try:
            write_file_atomic(target, b"writer %d" % i)
            outcomes[i] = "ok"
        except OutputError as e:
            outcomes[i] = e

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in enumerate(outcomes) if o == "ok"]
    assert len(winners) == 1, outcomes
    assert all("exists" in str(o) for o in outcomes if o != "ok")
    assert target.read_bytes() == b"writer %d" % winners[0]
    assert os.listdir(tmp_path) == ["out.png"]                       # no temp file left


def test_without_hard_links_the_name_is_claimed_exclusively(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.png"
    write_file_atomic(target, b"first")
    with pytest.raises(OutputError, match="exists"):
        write_file_atomic(target, b"second")
    write_file_atomic(target, b"third", force=True)
    assert target.read_bytes() == b"third" and os.listdir(tmp_path) == ["out.png"]


def _pictures(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        Image.fromarray(RNG.integers(0, 256, (5, 6, 3), np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def finished_members(out: Path, src: Path) -> tuple[list[str], int]:
    """The members a resume would keep from ``out``'s .partial, and where the last ends."""
    partial = Path(str(out) + archive.PARTIAL_SUFFIX)
    with partial.open("rb") as f, open(str(out) + archive.JOURNAL_SUFFIX, "rb") as journal:
        shared, end = archive._read_shared(f, partial.stat().st_size)
        f.seek(0)
        prelude = f.read(end + shared.model_size)
        kept, _ = archive._resume(f, journal, prelude, shared, archive._open_source(src).pictures())
    return [m.name for _, m in kept], kept[-1][1].offset + kept[-1][1].size if kept else len(prelude)


def test_a_full_disk_while_archiving_is_one_line_with_the_resume_hint(tmp_path, invoke, monkeypatch):
    src = _pictures(tmp_path / "src", 4)
    out = tmp_path / "out.ardm"
    real_fsync, calls = os.fsync, []

    def disk_full_on_third_member(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 8:      # truncate .partial and journal, header, member 1 and its entry, 2, 2, member 3
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_on_third_member)
    lines = assert_failed(invoke("compress", src, "-o", out, "-s", STEPS), 5, "No space left on device",
                          "--resume")
    assert len(lines) == 1
    monkeypatch.setattr(os, "fsync", real_fsync)
    partial = Path(str(out) + archive.PARTIAL_SUFFIX)
    found, end = finished_members(out, src)
    assert found == ["00.png", "01.png"] and end == partial.stat().st_size
    result = invoke("compress", src, "-o", out, "-s", STEPS, "--resume", "-v")
    assert result.exit_code == 0 and "(2 resumed)" in result.stderr, result.stderr
    write_archive(src, tmp_path / "fresh.ardm", STEPS)
    assert out.read_bytes() == (tmp_path / "fresh.ardm").read_bytes()


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX shell's ulimit")
def test_a_file_size_limit_while_archiving_keeps_the_finished_members(tmp_path):
    src = _pictures(tmp_path / "src", 12)
    out = tmp_path / "out.ardm"
    limit = 1024                                   # `ulimit -f 1`: room for about six members
    command = f"ulimit -f 1; exec '{sys.executable}' -m ardmzip compress '{src}' -o '{out}' -s {STEPS}"
    proc = subprocess.run(["bash", "-c", command], capture_output=True, timeout=180,
                          env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"))
    err = proc.stderr.decode()
    assert proc.returncode == 5, err
    assert err.count("\n") == 1 and "File too large" in err and "--resume" in err and "Traceback" not in err
    partial = Path(str(out) + archive.PARTIAL_SUFFIX)
    found, end = finished_members(out, src)
    assert found and end == partial.stat().st_size <= limit            # whole members only


@pytest.fixture(scope="module")
def small_ardm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipe") / "x.ardm"
    path.write_bytes(compress(RNG.integers(0, 256, (6, 5, 3), np.uint8), STEPS))
    return path


@pytest.mark.parametrize("args", [["decompress", "-c"], ["list"]])
def test_a_broken_pipe_ends_quietly(small_ardm, nested, args):
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    source = nested if args == ["list"] else small_ardm
    proc = subprocess.Popen([sys.executable, "-m", "ardmzip", *args, str(source)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()                           # the reader is gone before ardmzip writes (`| true`)
    err = proc.stderr.read()
    assert proc.wait(timeout=180) == 141, err
    assert err == b""


@pytest.mark.parametrize("args, redirect, code, message", [
    (["decompress", "-c"], ">&-", 5, "standard output is closed"), (["list"], ">&-", 5, "standard output is closed"),
    (["info"], ">&-", 5, "standard output is closed"), (["decompress", "-o", "{out}"], ">&-", 0, ""),
    (["decompress", "-c"], ">/dev/full", 5, "No space left on device")])
def test_a_closed_stdout(small_ardm, nested, tmp_path, args, redirect, code, message):
    if redirect == ">/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    out = tmp_path / "x.png"
    source = nested if args == ["list"] else small_ardm
    command = [sys.executable, "-m", "ardmzip", *(a.format(out=out) for a in args), str(source)]
    shell = " ".join(f"'{part}'" for part in command) + " " + redirect
    proc = subprocess.run(shell, shell=True, capture_output=False, stderr=subprocess.PIPE, timeout=180,
                          env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"))
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    if code:
        assert err.count("\n") == 1 and err.startswith("ardmzip: ") and message in err
    assert out.exists() == (code == 0)


# ---------------------------------------------------------------- fuzzing the parsers


def mutate(data: bytes, draw) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "set" and out:
            out[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del out[pos:pos + draw(st.integers(1, 8))]
        else:
            del out[pos:]
    return bytes(out)


def constraint_streams() -> st.SearchStrategy[tuple[bytes, int]]:
    """(stream, channels): valid constraints, valid ones mutated, a kind byte with noise, noise."""
    def valid(draw) -> tuple[bytes, int]:
        channels = draw(st.sampled_from([1, 3]))
        kind = draw(st.sampled_from(["plain", "values", "palette", "constant", "gray", "chroma", "copy"]))
        plain = constraint.Constraint(constraint.PLAIN, channels)
        if kind == "values":
            masks = np.zeros((channels, 256), bool)
            masks[:, draw(st.lists(st.integers(0, 255), min_size=1, max_size=8))] = True
            c = constraint.Constraint(constraint.VALUES, channels, masks)
        elif kind == "palette" and channels == 3:
            colours = sorted(set(draw(st.lists(st.tuples(*[st.integers(0, 255)] * 3), min_size=1, max_size=20))))
            c = constraint.Constraint(constraint.PALETTE, 3, np.array(colours, np.uint8))
        elif kind == "constant":
            c = constraint.Constraint(constraint.CONSTANT, channels, np.array(draw(
                st.lists(st.integers(0, 255), min_size=channels, max_size=channels)), np.uint8))
        elif kind == "gray" and channels == 3:
            c = constraint.Constraint(constraint.GRAY, 3)
        elif kind == "chroma" and channels == 3:
            tables = np.zeros((3, 3, 6), np.uint8)
            tables[..., -1] = 1
            c = constraint.Constraint.chroma_blocks(constraint.Constraint(constraint.PLAIN, 3), (2, 2, 0, 1), tables)
        elif kind == "copy" and channels == 3:
            c = constraint.Constraint.colour_copies(constraint.Constraint(constraint.PLAIN, 3))
        else:
            c = plain
        return c.to_bytes() + draw(st.binary(max_size=16)), channels

    @st.composite
    def streams(draw) -> tuple[bytes, int]:
        how = draw(st.sampled_from(["valid", "mutated", "kind", "noise"]))
        if how == "noise":
            return draw(st.binary(max_size=200)), draw(st.sampled_from([1, 3]))
        if how == "kind":
            return bytes([draw(st.integers(0, 8))]) + draw(st.binary(max_size=120)), draw(st.sampled_from([1, 3]))
        stream, channels = valid(draw)
        return (mutate(stream, draw) if how == "mutated" else stream), channels

    return streams()


def draw_arrays(data, kind: str, names) -> list[ArraySpec]:
    arrays = []
    if kind != "images":
        for key in data.draw(st.lists(names, min_size=1, max_size=1 if kind == "npy" else 3)):
            n = data.draw(st.sampled_from([0, 1, 2, 10**12]))
            arrays.append(ArraySpec("" if kind == "npy" and data.draw(st.booleans()) else key,
                                    (n, data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3)))))
    return arrays


def assert_safe_index(ix: archive.ArchiveIndex) -> None:
    for m in ix.members:
        assert name_problem(m.name) is None
    for a in ix.arrays:
        assert (a.key == "") if ix.kind == "npy" else name_problem(a.key) is None
    assert len({m.name for m in ix.members}) == len(ix.members)


class TestFuzz:
    """Parsers given hostile bytes raise only their documented errors and never build
    anything from a claim the bytes cannot back."""

    @FUZZ
    @given(constraint_streams())
    def test_constraint_parser(self, case):
        stream, channels = case
        try:
            parsed, rest = constraint.Constraint.parse(stream, channels)
        except FormatError:
            return
        assert parsed.to_bytes() + rest == stream            # one spelling for each constraint
        try:
            assert constraint.describe(stream, channels)
        except FormatError:                                  # GRAY's inner constraint is parsed later
            assert parsed.kind == constraint.GRAY

    @FUZZ
    @given(st.data())
    def test_container(self, data):
        model = weights.load()
        width, height = data.draw(st.integers(1, 300)), data.draw(st.integers(1, 300))
        header = container.Header(model.name, model.hash8, data.draw(st.sampled_from(container.MODES)), width,
                                  height, data.draw(st.integers(1, 64)), data.draw(st.integers(0, 2**64 - 1)), 0)
        streams, _ = data.draw(constraint_streams())
        packed = container.pack(header, [streams])
        candidate = mutate(packed, data.draw) if data.draw(st.booleans()) else packed
        limit = data.draw(st.sampled_from([0, 1, width * height, container.MAX_PIXELS]))
        try:
            parsed, got = container.unpack(candidate, max_pixels=limit)
        except LimitError:
            assert limit and container.peek_header(candidate).width * container.peek_header(candidate).height > limit
            return
        except FormatError:
            return
        assert container.pack(parsed, got) == candidate

    @FUZZ
    @given(st.data())
    def test_archive_index_v1(self, data):
        """Format 1 indexes with drawn names, keys, shapes and counts (valid CRCs), then mutated
        and re-checksummed: read_index refuses them or returns only safe, consistent members."""
        alphabet = st.sampled_from(["a", "b", ".", "..", "/", "\\", "\x00", "\x1b", "é", "000000"])
        names = st.lists(alphabet, min_size=1, max_size=6).map("".join)
        kind = data.draw(st.sampled_from(archive.KINDS))
        arrays = draw_arrays(data, kind, names)
        members = []
        pos = len(HEADER_V1)
        for name in data.draw(st.lists(names, max_size=4)):
            size = data.draw(st.integers(0, 40))
            record = archive._record(name, size)
            members.append((MemberInfo(name, pos + len(record), size, data.draw(st.sampled_from(container.MODES)),
                                       data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3))), record))
            pos += len(record) + size
        body = bytearray(HEADER_V1)
        for m, record in members:
            body += record + bytes(m.size)
        index = archive._pack_index(kind, False, arrays, [m for m, _ in members])
        if data.draw(st.booleans()):                      # mutate the index and fix its CRC
            index = mutate(index[:-4], data.draw)
            index += archive._crc(index)
        count = data.draw(st.sampled_from([len(members), 10**12, 0]))
        blob = bytes(body) + index + archive._footer_v1(len(body), count)
        try:
            ix = archive._read_index(io.BytesIO(blob), len(blob))
        except FormatError:
            return
        assert len(ix.members) == count <= len(index) // archive.MIN_MEMBER_BYTES
        assert_safe_index(ix)

    @FUZZ
    @pytest.mark.parametrize("version", [2, 3])
    @given(data=st.data())
    def test_archive_index(self, version, data):
        """Format 2 and 3 headers and indexes with drawn names, keys, shapes, modes, stream
        lengths and counts (valid CRCs), then mutated and re-checksummed: read_index refuses them
        or returns only safe members that tile the file, no more than its bytes can hold."""
        alphabet = st.sampled_from(["a", "b", ".", "..", "/", "\\", "\x00", "\x1b", "é", "000000"])
        names = st.lists(alphabet, min_size=1, max_size=6).map("".join)
        kind = data.draw(st.sampled_from(archive.KINDS))
        arrays = draw_arrays(data, kind, names)
        if kind == "npy" and version == 3:                # no place for a .npy's key
            arrays = [ArraySpec("", a.shape) for a in arrays]
        shared = shared_for(kind, arrays)
        head = shared.pack(version)
        if data.draw(st.booleans()):                      # mutate the header (and fix its CRC)
            head = mutate(head[:-4] if version == 2 else head, data.draw)
            head += archive._crc(head) if version == 2 else b""
        entries, members = bytearray(), 0
        count = data.draw(st.integers(0, 4))
        for _ in range(count):
            if kind == "images":
                name = data.draw(names).encode()
                entries += archive._varint(len(name)) + name + bytes((data.draw(st.integers(0, 12)) |
                                                                     data.draw(st.sampled_from([0, 0x80])),))
                fields = 4 if version == 2 else data.draw(st.integers(2, 3))      # width, height (, ...)
                entries += bytes(data.draw(st.lists(st.integers(0, 4), min_size=fields, max_size=fields)))
            for _ in range(data.draw(st.integers(1, 2))):
                n = data.draw(st.integers(0, 20))
                entries += archive._varint(n)
                members += n + 4
        index = bytes(entries)
        if version == 2:
            index = archive._varint(data.draw(st.sampled_from([count, 10**12, 0]))) + index
        if data.draw(st.booleans()):
            index = mutate(index, data.draw)
        body = head + bytes(members) + index
        if version == 2:
            blob = body + archive._crc(index) + archive._footer_v2(len(head) + members)
        else:
            blob = body + archive._footer(head, index)
        try:
            ix = archive._read_index(io.BytesIO(blob), len(blob))
        except FormatError:
            return
        assert len(ix.members) <= len(index)
        pos = ix.model_offset + ix.model_bytes
        for m in ix.members:
            assert m.offset == pos and m.size == m.meta_size + sum(m.streams) + 4
            pos += m.size
        assert pos == ix.index_offset
        assert_safe_index(ix)

    @FUZZ
    @given(st.data())
    def test_partial_scan(self, data):
        """A .partial and its journal, damaged anywhere: resuming keeps only members whose bytes
        are exactly those written for the same source pictures."""
        blob = constant_ardm(3, 2)
        picture = Picture(np.full((2, 3, 3), (1, 2, 3), np.uint8), "RGB")
        shared = shared_for("images", [], 16)
        parts = [archive._member_parts(shared, n, blob) for n in ("a.png", "b/c.png")]
        good = shared.pack() + b"".join(r for r, _, _ in parts)
        journal = b"".join(e for _, e, _ in parts)
        if data.draw(st.booleans()):
            good = mutate(good, data.draw)
        else:
            journal = mutate(journal, data.draw)
        source = iter([("a.png", picture), ("b/c.png", picture), ("d.png", picture)])
        kept, rest = archive._resume(io.BytesIO(good), io.BytesIO(journal), shared.pack(), shared, source)
        assert [m.name for _, m in kept] == ["a.png", "b/c.png"][:len(kept)]
        for (entry, m), (record, want_entry, _) in zip(kept, parts):
            assert entry == want_entry and good[m.offset:m.offset + m.size] == record
        assert [n for n, _ in rest] == ["a.png", "b/c.png", "d.png"][len(kept):]

    @FUZZ                                   # constant members: decoded without a network call
    @given(st.lists(st.lists(st.sampled_from(["a", "..", ".", "", "b\x00", "c\\d", "e"]), min_size=1, max_size=4)
                    .map("/".join), min_size=1, max_size=3, unique=True))
    def test_extraction_stays_in_its_folder(self, names):
        import tempfile
        blob = constant_ardm(2, 2)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "deep" / "er").mkdir(parents=True)
            path = root / "deep" / "er" / "x.ardm"
            path.write_bytes(build_archive("images", [], [(n, blob) for n in names]))
            out = root / "deep" / "er" / "out"
            try:
                results = extract_all(path, out)
            except FormatError:
                assert any(name_problem(n) for n in names)
                return
            assert all(name_problem(n) is None for n in names)
            assert all(error is None or isinstance(error, OutputError) for _, error in results)
            written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
            assert written - {"deep/er/x.ardm"} <= {f"deep/er/out/{p}" for p in archive.png_names(names).values()}

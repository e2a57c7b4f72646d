"""Tests for the ardmzip command line (ardmzip/cli.py).

Most tests run the CLI in-process with click's CliRunner; a few run a real
``python -m ardmzip`` subprocess to check true exit codes, a one-line stderr and
no traceback.  Images are tiny (at most 16x16) and made here with Pillow in
tmp_path; compression uses 2 steps so the whole file stays fast on a small CPU.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

import ardmzip
from ardmzip import choose, container, weights
from ardmzip.files import compress_bytes, decompress_bytes

STEPS = "2"
RNG = np.random.default_rng(7)
MODE_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


# ---------------------------------------------------------------- helpers


def make_image(mode: str = "RGB", size: tuple[int, int] = (6, 5)) -> Image.Image:
    """A small random image; 'P' gets a palette of distinct colours, '1' random bits."""
    w, h = size
    if mode == "P":
        i = np.arange(16)
        palette = np.stack([i * 16, 255 - i * 16, i * 37 % 256], axis=1).astype(np.uint8)  # distinct
        im = Image.frombytes("P", (w, h), RNG.integers(0, len(palette), (h, w), np.uint8).tobytes())
        im.putpalette(palette.tobytes(), "RGB")
        return im
    if mode == "1":
        return Image.fromarray(RNG.integers(0, 2, (h, w), np.uint8) * 255).convert("1")
    if mode == "RGBA-opaque":
        px = RNG.integers(0, 256, (h, w, 4), np.uint8)
        px[..., 3] = 255
        return Image.frombytes("RGBA", (w, h), px.tobytes())
    c = MODE_CHANNELS[mode]
    return Image.frombytes(mode, (w, h), RNG.integers(0, 256, (h, w, c), np.uint8).tobytes())


def save_png(path: Path, mode: str = "RGB", size: tuple[int, int] = (6, 5), **params) -> Path:
    make_image(mode, size).save(path, "PNG", **params)
    return path


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def pixels(source: Path | bytes) -> tuple[str, np.ndarray, list | None]:
    """Mode, raw pixel array (palette indices for 'P') and palette of an image file."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        im.load()
        return im.mode, np.asarray(im).copy(), im.getpalette()


def assert_same_image(a: Path | bytes, b: Path | bytes) -> None:
    mode_a, px_a, pal_a = pixels(a)
    mode_b, px_b, pal_b = pixels(b)
    assert mode_a == mode_b
    assert px_a.shape == px_b.shape
    assert np.array_equal(px_a, px_b)
    if mode_a == "P":
        assert pal_a == pal_b


def stderr_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_failed(result, code: int, *mentions: str) -> str:
    """Exit ``code``, exactly one 'ardmzip:' line on stderr, no traceback; returns the line."""
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception   # no escaped exception
    assert "Traceback" not in result.stderr
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("ardmzip:"), lines
    for text in mentions:
        assert text in lines[0], lines
    return lines[0]


def assert_no_tmp(directory: Path) -> None:
    assert list(directory.rglob(".ardmzip-*.tmp")) == []


def listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def run_cli(*args: str):
    """Run the ardmzip CLI in a real subprocess (cwd: wherever the paths are absolute)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "ardmzip", *args], capture_output=True, env=env,
                          timeout=120, check=False)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rgb_png_bytes() -> bytes:
    return png_bytes(make_image("RGB", (6, 5)))


@pytest.fixture(scope="module")
def good_ardm(rgb_png_bytes) -> bytes:
    """A valid .ardm (6x5 RGB, 2 steps), made once through the API."""
    return compress_bytes(rgb_png_bytes, 2)[0]


@pytest.fixture
def png(tmp_path) -> Path:
    return save_png(tmp_path / "x.png")


@pytest.fixture
def ardm(tmp_path, good_ardm) -> Path:
    path = tmp_path / "x.ardm"
    path.write_bytes(good_ardm)
    return path


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "RGBA-opaque", "P", "1"])
def test_round_trip_keeps_pixels_and_mode(invoke, tmp_path, mode):
    src = save_png(tmp_path / "img.png", mode)
    r = invoke("compress", "-s", STEPS, src, "-o", tmp_path / "img.ardm")
    assert r.exit_code == 0, r.stderr
    r = invoke("decompress", tmp_path / "img.ardm", "-o", tmp_path / "back.png")
    assert r.exit_code == 0, r.stderr
    assert_same_image(src, tmp_path / "back.png")
    assert_no_tmp(tmp_path)


def test_round_trip_keeps_png_text_metadata(invoke, tmp_path):
    info_chunk = PngImagePlugin.PngInfo()
    info_chunk.add_text("Comment", "hello ardm")
    src = save_png(tmp_path / "t.png", "L", pnginfo=info_chunk)
    assert invoke("compress", "-s", STEPS, src).exit_code == 0
    r = invoke("info", "--json", tmp_path / "t.ardm")
    assert "text:Comment" in json.loads(r.stdout)["metadata"]
    assert invoke("decompress", tmp_path / "t.ardm", "-o", tmp_path / "back.png").exit_code == 0
    with Image.open(tmp_path / "back.png") as im:
        assert im.text.get("Comment") == "hello ardm"
    assert_same_image(src, tmp_path / "back.png")


def test_default_output_names(invoke, png, tmp_path):
    r = invoke("compress", "-s", STEPS, png)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "x.ardm").is_file()
    png.rename(tmp_path / "orig.png")
    r = invoke("decompress", tmp_path / "x.ardm")
    assert r.exit_code == 0, r.stderr
    assert_same_image(tmp_path / "orig.png", tmp_path / "x.png")
    assert listing(tmp_path) == {"orig.png", "x.ardm", "x.png"}


def test_default_output_name_with_relative_path(invoke, png, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("compress", "-s", STEPS, "x.png").exit_code == 0
    assert (tmp_path / "x.ardm").is_file()


def test_output_option_names_the_file(invoke, png, tmp_path):
    r = invoke("compress", "-s", STEPS, png, "-o", tmp_path / "other.bin")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "other.bin").read_bytes()[:4] == b"ARDM"
    assert not (tmp_path / "x.ardm").exists()
    r = invoke("decompress", tmp_path / "other.bin", "-o", tmp_path / "y.png")   # any suffix with -o
    assert r.exit_code == 0, r.stderr
    assert_same_image(png, tmp_path / "y.png")


def test_stdout_flag_writes_archive_and_png(invoke, png, tmp_path):
    r = invoke("compress", "-s", STEPS, "-c", png)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes[:4] == b"ARDM"
    assert listing(tmp_path) == {"x.png"}                    # nothing written to disk
    (tmp_path / "s.ardm").write_bytes(r.stdout_bytes)
    r = invoke("decompress", "-c", tmp_path / "s.ardm")
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes.startswith(b"\x89PNG")
    assert_same_image(png, r.stdout_bytes)
    assert not (tmp_path / "s.png").exists()


def test_stdin_to_stdout(invoke, rgb_png_bytes):
    r = invoke("compress", "-s", STEPS, "-", input=rgb_png_bytes)
    assert r.exit_code == 0, r.stderr
    archive = r.stdout_bytes
    assert archive[:4] == b"ARDM"
    r = invoke("decompress", "-", input=archive)
    assert r.exit_code == 0, r.stderr
    assert_same_image(rgb_png_bytes, r.stdout_bytes)


def test_no_sources_reads_stdin(invoke, rgb_png_bytes):
    r = invoke("compress", "-s", STEPS, input=rgb_png_bytes)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes[:4] == b"ARDM"
    assert_same_image(decompress_bytes(r.stdout_bytes), rgb_png_bytes)


def test_stdin_with_output_file(invoke, tmp_path, rgb_png_bytes, good_ardm):
    r = invoke("compress", "-s", STEPS, "-", "-o", tmp_path / "in.ardm", input=rgb_png_bytes)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "in.ardm").read_bytes() == good_ardm      # deterministic: same as the API
    r = invoke("decompress", "-", "-o", tmp_path / "in.png", input=good_ardm)
    assert r.exit_code == 0, r.stderr
    assert_same_image(rgb_png_bytes, tmp_path / "in.png")


def test_empty_stdin_is_an_input_error(invoke):
    assert_failed(invoke("compress", "-s", STEPS, "-", input=b""), 2, "stdin")
    assert_failed(invoke("decompress", "-", input=b""), 2, "stdin")


@pytest.fixture
def stdin_terminal(monkeypatch):
    """The CLI sees a terminal on stdin (someone typed the command and no pipe)."""
    import ardmzip.cli as cli
    monkeypatch.setattr(cli, "_terminal", lambda stream: stream is not None and stream is sys.stdin)


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_no_file_at_a_terminal_shows_usage_without_reading(invoke, stdin_terminal, command):
    """As zstd ("stdin is a console"): the usage and one error line at once, exit 2, instead of
    waiting for the terminal and then saying "stdin is empty"."""
    r = invoke(command, input=b"never read")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    lines = stderr_lines(r)
    assert lines[0].startswith("Usage: ") and f" {command} " in lines[0] and "-h" in lines[1]
    assert lines[-1] == "ardmzip: stdin is a terminal: name the files to read, or pipe data in"
    assert r.stdout_bytes == b""


@pytest.mark.parametrize("args", [["compress", "-", "-c"], ["decompress", "-", "-o", "x.png"], ["test", "-"],
                                  ["info", "-"]])
def test_dash_at_a_terminal_is_refused_in_one_line(invoke, stdin_terminal, args):
    assert_failed(invoke(*args, input=b"never read"), 2, "stdin is a terminal")


def test_device_help_does_not_promise_what_is_unverified(invoke):
    for command in ("compress", "decompress", "test"):
        text = " ".join(invoke(command, "--help").stdout.split())
        assert "--device" in text and "identical on every device" not in text, command
        assert "only the CPU path is verified" in text, command


def zlib_level_class(png: bytes) -> int:
    """FLEVEL of a PNG's zlib stream (RFC 1950): 0 for zlib levels 0-1, 1 for 2-5, 2 for 6, 3 for 7-9."""
    return png[png.index(b"IDAT") + 5] >> 6


def test_png_level(invoke, ardm, tmp_path, rgb_png_bytes):
    """Decompressed PNGs use zlib level 9 unless --png-level says otherwise; same pixels."""
    for args, flevel in [((), 3), (("--png-level", "9"), 3), (("--png-level", "6"), 2), (("--png-level", "0"), 0)]:
        r = invoke("decompress", ardm, "-c", *args)
        assert r.exit_code == 0, r.stderr
        assert zlib_level_class(r.stdout_bytes) == flevel, args
        assert_same_image(r.stdout_bytes, rgb_png_bytes)
    (tmp_path / "d").mkdir()
    save_png(tmp_path / "d" / "y.png")                                   # an archive: extracted at that level too
    assert invoke("compress", "-s", STEPS, tmp_path / "d", "-o", tmp_path / "d.ardm").exit_code == 0
    r = invoke("decompress", tmp_path / "d.ardm", "-o", tmp_path / "out", "--png-level", "1")
    assert r.exit_code == 0, r.stderr
    assert zlib_level_class((tmp_path / "out" / "y.png").read_bytes()) == 0
    r = invoke("decompress", tmp_path / "d.ardm", "-m", "y.png", "-o", tmp_path / "y.png", "--png-level", "6")
    assert r.exit_code == 0 and zlib_level_class((tmp_path / "y.png").read_bytes()) == 2
    r = invoke("decompress", ardm, "-c", "--png-level", "10")
    assert r.exit_code == 2 and r.stdout_bytes == b""


def test_same_input_gives_same_archive_as_api(invoke, png, tmp_path):
    assert invoke("compress", "-s", STEPS, "--seed", "3", png).exit_code == 0
    assert (tmp_path / "x.ardm").read_bytes() == compress_bytes(png.read_bytes(), 2, seed=3)[0]


# ---------------------------------------------------------------- info, test, models, version


def test_info_text(invoke, ardm, good_ardm):
    r = invoke("info", ardm)
    assert r.exit_code == 0, r.stderr
    line = r.stdout.strip()
    assert "\n" not in line
    assert line.startswith(f"{ardm}: 6x5 RGB, {len(good_ardm)} bytes")
    model = container.unpack(good_ardm)[0].model_name           # the one "auto" chose
    assert model in choose.CANDIDATES
    for text in ("bpsp", f"model {model}", "2 steps", "seed 0", "pixel crc32", "metadata: none"):
        assert text in line


def test_info_json_fields(invoke, ardm, good_ardm, rgb_png_bytes):
    r = invoke("info", "--json", ardm)
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) == {"mode", "width", "height", "model", "model_hash", "steps", "seed", "pixel_crc32",
                      "metadata", "bytes", "header_bytes", "subpixels", "bpsp", "file", "format_version", "planes",
                      "container"}
    assert (d["mode"], d["width"], d["height"]) == ("RGB", 6, 5)
    model = container.unpack(good_ardm)[0].model_name
    assert (d["model"], d["steps"], d["seed"], d["file"]) == (model, 2, 0, str(ardm))
    assert len(d["model_hash"]) == 16 and int(d["model_hash"], 16) >= 0
    assert d["bytes"] == len(good_ardm)
    _, streams = container.unpack(good_ardm)
    assert d["header_bytes"] == len(good_ardm) - sum(map(len, streams)) >= 20
    assert d["container"] == "compact"          # a shipped model: named by its id
    assert d["subpixels"] == 6 * 5 * 3
    assert d["bpsp"] == pytest.approx(8 * len(good_ardm) / 90)
    assert d["metadata"] == []
    expected_crc = zlib.crc32(np.ascontiguousarray(pixels(rgb_png_bytes)[1]).tobytes())
    assert d["pixel_crc32"] == f"{expected_crc:08x}"


def test_info_shows_steps_and_seed_given(invoke, png, tmp_path):
    assert invoke("compress", "-s", "3", "--seed", "12345", png).exit_code == 0
    d = json.loads(invoke("info", "--json", tmp_path / "x.ardm").stdout)
    assert (d["steps"], d["seed"]) == (3, 12345)


@pytest.mark.parametrize("flags, steps", [(["-1"], 4), (["--fast"], 4), (["-9"], 64), (["--best"], 64),
                                          (["-2"], 5), (["-6"], ardmzip.DEFAULT_STEPS), (["-3", "-8"], 32), ([], ardmzip.DEFAULT_STEPS)])
def test_levels_choose_the_step_budget(invoke, png, tmp_path, flags, steps):
    assert invoke("compress", *flags, png).exit_code == 0
    assert json.loads(invoke("info", "--json", tmp_path / "x.ardm").stdout)["steps"] == steps


def test_level_and_steps_together_are_refused(invoke, png, tmp_path):
    r = invoke("compress", "-9", "-s", "5", png)
    assert r.exit_code == 2 and "not both" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "x.ardm").exists()


def test_info_json_one_object_per_file_and_stdin(invoke, ardm, tmp_path, good_ardm):
    other = tmp_path / "y.ardm"
    other.write_bytes(good_ardm)
    r = invoke("info", "--json", ardm, other)
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["file"] for o in objs] == [str(ardm), str(other)]
    r = invoke("info", "--json", "-", input=good_ardm)
    assert r.exit_code == 0 and json.loads(r.stdout)["file"] == "-"


def test_info_bad_file_does_not_stop_others(invoke, ardm, tmp_path):
    bad = tmp_path / "bad.ardm"
    bad.write_bytes(b"not an archive")
    r = invoke("info", bad, ardm)
    assert_failed(r, 3, "bad.ardm")
    assert str(ardm) in r.stdout


def test_info_missing_file(invoke, tmp_path):
    assert_failed(invoke("info", tmp_path / "nope.ardm"), 2, "nope.ardm")


def test_test_command_ok(invoke, ardm, tmp_path):
    before = listing(tmp_path)
    r = invoke("test", ardm)
    assert r.exit_code == 0, r.stderr
    assert r.stderr.strip() == f"{ardm}: OK"
    assert listing(tmp_path) == before                      # writes nothing
    r = invoke("test", "-q", ardm)
    assert r.exit_code == 0 and r.stderr == ""


def test_test_command_corrupt(invoke, ardm, tmp_path):
    data = bytearray(ardm.read_bytes())
    data[-6] ^= 0x10
    bad = tmp_path / "bad.ardm"
    bad.write_bytes(bytes(data))
    r = invoke("test", ardm, bad)
    assert r.exit_code == 3
    assert "Traceback" not in r.stderr
    errors = [l for l in stderr_lines(r) if l.startswith("ardmzip:")]
    assert len(errors) == 1 and "bad.ardm" in errors[0]
    assert f"{ardm}: OK" in r.stderr


def test_test_command_recursive(invoke, tmp_path, good_ardm):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.ardm").write_bytes(good_ardm)
    (tmp_path / "d" / "sub" / "b.ardm").write_bytes(good_ardm)
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    r = invoke("test", "-r", tmp_path / "d")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.count(": OK") == 2


def test_version(invoke):
    for flag in ("--version", "-V"):
        r = invoke(flag)
        assert r.exit_code == 0
        assert ardmzip.__version__ in r.stdout and "ardmzip" in r.stdout


def test_models_lists_default(invoke):
    r = invoke("models")
    assert r.exit_code == 0
    assert "auto (default)" in r.stdout
    assert all(f"{name} (auto" in r.stdout for name in choose.CANDIDATES + choose.SMALL_CANDIDATES)
    assert all(name in r.stdout for name in weights.REGISTRY)     # older models stay, so their files decode
    assert "sha256" in r.stdout


def test_help(invoke):
    r = invoke("--help")
    assert r.exit_code == 0
    for cmd in ("compress", "decompress", "info", "test", "models"):
        assert cmd in r.stdout


def test_verbosity(invoke, png, tmp_path):
    r = invoke("compress", "-s", STEPS, "-v", png)
    assert r.exit_code == 0
    assert "->" in r.stderr and "bpsp" in r.stderr
    r = invoke("compress", "-s", STEPS, "-q", "-f", png)
    assert r.exit_code == 0 and r.stderr == ""


# ---------------------------------------------------------------- overwriting


def test_refuses_to_overwrite_compress_output(invoke, png, tmp_path):
    existing = tmp_path / "x.ardm"
    existing.write_bytes(b"precious bytes \x00\xff")
    assert_failed(invoke("compress", "-s", STEPS, png), 5, "exists", "-f")
    assert existing.read_bytes() == b"precious bytes \x00\xff"
    assert_failed(invoke("compress", "-s", STEPS, png, "-o", existing), 5, "exists")
    assert existing.read_bytes() == b"precious bytes \x00\xff"
    assert_no_tmp(tmp_path)


def test_refuses_to_overwrite_decompress_output(invoke, ardm, tmp_path):
    existing = tmp_path / "x.png"
    existing.write_bytes(b"old png")
    assert_failed(invoke("decompress", ardm), 5, "exists")
    assert existing.read_bytes() == b"old png"
    assert_no_tmp(tmp_path)


def test_force_overwrites(invoke, png, ardm, tmp_path, rgb_png_bytes):
    (tmp_path / "x.png").write_bytes(b"old png")
    r = invoke("decompress", "-f", ardm)
    assert r.exit_code == 0, r.stderr
    assert_same_image(tmp_path / "x.png", rgb_png_bytes)
    (tmp_path / "x.ardm").write_bytes(b"old")
    r = invoke("compress", "-s", STEPS, "--force", tmp_path / "x.png")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "x.ardm").read_bytes()[:4] == b"ARDM"
    assert_no_tmp(tmp_path)


def test_output_same_as_input_is_refused_even_with_force(invoke, png, tmp_path):
    original = png.read_bytes()
    assert_failed(invoke("compress", "-s", STEPS, "-f", "--rm", png, "-o", png), 5, "input")
    assert png.read_bytes() == original


# ---------------------------------------------------------------- bad inputs


def _compress_fails(invoke, tmp_path, src: Path, code: int, *mentions: str) -> None:
    before = listing(tmp_path)
    assert_failed(invoke("compress", "-s", STEPS, src), code, *mentions)
    assert listing(tmp_path) == before
    assert not src.with_suffix(".ardm").exists()


def test_missing_file(invoke, tmp_path):
    _compress_fails(invoke, tmp_path, tmp_path / "missing.png", 2, "missing.png")
    assert_failed(invoke("decompress", tmp_path / "missing.ardm"), 2, "missing.ardm")
    assert not (tmp_path / "missing.png").exists()


def test_random_bytes_named_png(invoke, tmp_path):
    src = tmp_path / "x.png"
    src.write_bytes(RNG.integers(0, 256, 300, np.uint8).tobytes())
    _compress_fails(invoke, tmp_path, src, 2, "x.png")


def test_empty_image_file(invoke, tmp_path):
    src = tmp_path / "empty.png"
    src.write_bytes(b"")
    _compress_fails(invoke, tmp_path, src, 2, "empty.png")


def test_text_file_named_png(invoke, tmp_path):
    src = tmp_path / "notes.png"
    src.write_text("just text\n" * 20)
    _compress_fails(invoke, tmp_path, src, 2)


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png"])
def test_jpeg_is_refused_as_lossy(invoke, tmp_path, name):
    src = tmp_path / name
    make_image("RGB").save(src, "JPEG")
    line = assert_failed(invoke("compress", "-s", STEPS, src), 2, name)
    assert "JPEG" in line and "lossy" in line
    assert listing(tmp_path) == {name}


def test_directory_without_recursive(invoke, tmp_path):
    (tmp_path / "d").mkdir()
    save_png(tmp_path / "d" / "a.png")
    assert_failed(invoke("compress", "-s", STEPS, tmp_path / "d"), 2, "directory", "-r")
    assert listing(tmp_path) == {"d", "d/a.png"}


def test_unknown_model(invoke, png, tmp_path):
    before = listing(tmp_path)
    assert_failed(invoke("compress", "-s", STEPS, "--model", "no-such-model", png), 4, "no-such-model")
    assert listing(tmp_path) == before


def test_archive_from_unknown_model(invoke, tmp_path, good_ardm):
    header, streams = container.unpack(good_ardm)
    for name, hash8 in (("other-model", header.model_hash), (header.model_name, b"\x01" * 8)):
        src = tmp_path / "alien.ardm"
        src.write_bytes(container.pack(replace(header, model_name=name, model_hash=hash8), streams))
        assert_failed(invoke("decompress", src), 4, "alien.ardm")
        assert not (tmp_path / "alien.png").exists()
    assert_no_tmp(tmp_path)


def _decompress_fails(invoke, tmp_path, data: bytes, code: int = 3) -> str:
    src = tmp_path / "bad.ardm"
    src.write_bytes(data)
    line = assert_failed(invoke("decompress", src), code, "bad.ardm")
    assert not (tmp_path / "bad.png").exists()
    assert_no_tmp(tmp_path)
    return line


def test_empty_archive(invoke, tmp_path):
    _decompress_fails(invoke, tmp_path, b"")


@pytest.mark.parametrize("keep", [1, 4, 5, 12, 30, -20, -5, -1])
def test_truncated_archive(invoke, tmp_path, good_ardm, keep):
    _decompress_fails(invoke, tmp_path, good_ardm[:keep])


def test_trailing_garbage(invoke, tmp_path, good_ardm):
    _decompress_fails(invoke, tmp_path, good_ardm + b"\x00")


def _flip(data: bytes, pos: int, bit: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 1 << bit
    return bytes(out)


@pytest.mark.parametrize("where", ["magic", "version", "mode", "width", "header-middle", "header-crc",
                                   "stream-count", "payload-start", "payload-middle", "payload-end",
                                   "last-byte"])
def test_bit_flipped_archive(invoke, tmp_path, good_ardm, where):
    header_len = len(container._pack_header(container.peek_header(good_ardm)))
    payload = (header_len + len(good_ardm) - 4) // 2
    pos = {"magic": 0, "version": 4, "mode": 5, "width": 6, "header-middle": header_len // 2,
           "header-crc": header_len - 2, "stream-count": header_len, "payload-start": header_len + 3,
           "payload-middle": payload, "payload-end": len(good_ardm) - 6,
           "last-byte": len(good_ardm) - 1}[where]
    for bit in (0, 7):
        _decompress_fails(invoke, tmp_path, _flip(good_ardm, pos, bit))


def test_every_single_bit_flip_is_caught_by_test_command(invoke, tmp_path, good_ardm):
    """One flipped bit per byte, all bytes, in one `ardmzip test` call: every file fails with 3."""
    names = []
    for pos in range(len(good_ardm)):
        path = tmp_path / f"f{pos:04d}.ardm"
        path.write_bytes(_flip(good_ardm, pos, pos % 8))
        names.append(path)
    r = invoke("test", "-q", *names)
    assert r.exit_code == 3
    assert "Traceback" not in r.stderr
    lines = stderr_lines(r)
    assert len(lines) == len(names)
    assert all(line.startswith("ardmzip:") for line in lines)


def test_random_bytes_archive(invoke, tmp_path):
    _decompress_fails(invoke, tmp_path, RNG.integers(0, 256, 500, np.uint8).tobytes())


def test_png_named_ardm(invoke, tmp_path, rgb_png_bytes):
    _decompress_fails(invoke, tmp_path, rgb_png_bytes)


def test_decompress_without_ardm_suffix_needs_output(invoke, tmp_path, good_ardm):
    src = tmp_path / "archive.bin"
    src.write_bytes(good_ardm)
    assert_failed(invoke("decompress", src), 2, "suffix", "-o")
    assert listing(tmp_path) == {"archive.bin"}


def test_decompress_uppercase_suffix(invoke, tmp_path, good_ardm, rgb_png_bytes):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "UP.ARDM").write_bytes(good_ardm)
    r = invoke("decompress", "-r", tmp_path / "d")
    assert r.exit_code == 0, r.stderr
    assert_same_image(tmp_path / "d" / "UP.png", rgb_png_bytes)


# ---------------------------------------------------------------- unwritable outputs


def test_output_in_missing_directory(invoke, png, ardm, tmp_path):
    before = listing(tmp_path)
    assert_failed(invoke("compress", "-s", STEPS, png, "-o", tmp_path / "nodir" / "x.ardm"), 5, "nodir")
    assert_failed(invoke("decompress", ardm, "-o", tmp_path / "nodir" / "x.png"), 5, "nodir")
    assert listing(tmp_path) == before


def test_output_is_an_existing_directory(invoke, png, tmp_path):
    (tmp_path / "taken").mkdir()
    assert_failed(invoke("compress", "-s", STEPS, png, "-o", tmp_path / "taken"), 5, "taken")
    assert_failed(invoke("compress", "-s", STEPS, "-f", png, "-o", tmp_path / "taken"), 5, "taken")
    assert (tmp_path / "taken").is_dir() and list((tmp_path / "taken").iterdir()) == []
    assert_no_tmp(tmp_path)


def test_output_parent_is_a_file(invoke, png, tmp_path):
    (tmp_path / "plain").write_bytes(b"file")
    assert_failed(invoke("compress", "-s", STEPS, png, "-o", tmp_path / "plain" / "x.ardm"), 5)
    assert (tmp_path / "plain").read_bytes() == b"file"


def test_recursive_output_folder_is_a_file(invoke, tmp_path):
    (tmp_path / "d").mkdir()
    save_png(tmp_path / "d" / "a.png")
    (tmp_path / "out").write_bytes(b"file")
    assert_failed(invoke("compress", "-s", STEPS, "-r", tmp_path / "d", "-o", tmp_path / "out"), 5, "out")
    assert (tmp_path / "out").read_bytes() == b"file"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_directory(invoke, png, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert_failed(invoke("compress", "-s", STEPS, png, "-o", ro / "x.ardm"), 5)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


# ---------------------------------------------------------------- several inputs


def test_one_bad_file_does_not_stop_the_others(invoke, tmp_path):
    a, c = save_png(tmp_path / "a.png"), save_png(tmp_path / "c.png", "L")
    bad = tmp_path / "b.png"
    bad.write_bytes(b"garbage")
    r = invoke("compress", "-s", STEPS, a, bad, c)
    assert r.exit_code == 2
    assert "Traceback" not in r.stderr
    errors = [l for l in stderr_lines(r) if l.startswith("ardmzip:")]
    assert len(errors) == 1 and "b.png" in errors[0]
    assert (tmp_path / "a.ardm").is_file() and (tmp_path / "c.ardm").is_file()
    assert not (tmp_path / "b.ardm").exists()
    r = invoke("compress", "-q", "-s", STEPS, "-f", a, bad, c)   # -q: only the error line
    assert_failed(r, 2, "b.png")
    # and decompressing several, one corrupt
    (tmp_path / "a.png").unlink()
    (tmp_path / "c.png").unlink()
    (tmp_path / "b.png").unlink()
    (tmp_path / "b.ardm").write_bytes(b"ARDM\x01junk")
    r = invoke("decompress", "-q", tmp_path / "a.ardm", tmp_path / "b.ardm", tmp_path / "c.ardm")
    assert_failed(r, 3, "b.ardm")
    assert (tmp_path / "a.png").is_file() and (tmp_path / "c.png").is_file()
    assert not (tmp_path / "b.png").exists()
    assert_no_tmp(tmp_path)


def test_exit_code_is_that_of_the_last_failure(invoke, png, tmp_path):
    (tmp_path / "x.ardm").write_bytes(b"taken")
    missing = tmp_path / "missing.png"
    assert invoke("compress", "-q", "-s", STEPS, missing, png).exit_code == 5
    assert invoke("compress", "-q", "-s", STEPS, png, missing).exit_code == 2


def test_output_file_with_several_inputs_is_refused(invoke, tmp_path):
    a, b = save_png(tmp_path / "a.png"), save_png(tmp_path / "b.png")
    assert_failed(invoke("compress", "-s", STEPS, a, b, "-o", tmp_path / "one.ardm"), 2, "-o")
    assert listing(tmp_path) == {"a.png", "b.png"}


def test_output_folder_with_several_inputs(invoke, tmp_path):
    a, b = save_png(tmp_path / "a.png"), save_png(tmp_path / "b.png", "LA")
    (tmp_path / "out").mkdir()
    r = invoke("compress", "-s", STEPS, a, b, "-o", tmp_path / "out")
    assert r.exit_code == 0, r.stderr
    assert listing(tmp_path / "out") == {"a.ardm", "b.ardm"}


# ---------------------------------------------------------------- recursive


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    save_png(root / "a.png", "RGB", (4, 4))
    save_png(root / "sub" / "b.png", "L", (5, 3))
    make_image("RGB", (3, 4)).save(root / "sub" / "deeper" / "c.bmp")
    (root / "sub" / "notes.txt").write_text("not an image")
    return root


def test_recursive_mirrors_tree_both_ways(invoke, tree, tmp_path):
    r = invoke("compress", "-s", STEPS, "-r", tree, "-o", tmp_path / "packed")
    assert r.exit_code == 0, r.stderr
    assert listing(tmp_path / "packed") == {"a.ardm", "sub", "sub/b.ardm", "sub/deeper", "sub/deeper/c.ardm"}
    r = invoke("decompress", "-r", tmp_path / "packed", "-o", tmp_path / "unpacked")
    assert r.exit_code == 0, r.stderr
    assert listing(tmp_path / "unpacked") == {"a.png", "sub", "sub/b.png", "sub/deeper", "sub/deeper/c.png"}
    assert_same_image(tree / "a.png", tmp_path / "unpacked" / "a.png")
    assert_same_image(tree / "sub" / "b.png", tmp_path / "unpacked" / "sub" / "b.png")
    assert_same_image(tree / "sub" / "deeper" / "c.bmp", tmp_path / "unpacked" / "sub" / "deeper" / "c.png")
    assert_no_tmp(tmp_path)


def test_recursive_without_output_writes_next_to_sources(invoke, tree):
    r = invoke("compress", "-s", STEPS, "-r", tree)
    assert r.exit_code == 0, r.stderr
    assert (tree / "a.ardm").is_file() and (tree / "sub" / "b.ardm").is_file()
    assert (tree / "sub" / "deeper" / "c.ardm").is_file()
    assert not (tree / "sub" / "notes.ardm").exists()


def test_recursive_empty_folder(invoke, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_failed(invoke("compress", "-s", STEPS, "-r", tmp_path / "empty"), 2, "no input")


# ---------------------------------------------------------------- --rm


def test_rm_removes_source_after_success(invoke, png, tmp_path):
    original = png.read_bytes()
    r = invoke("compress", "-s", STEPS, "--rm", png)
    assert r.exit_code == 0, r.stderr
    assert not png.exists() and (tmp_path / "x.ardm").is_file()
    r = invoke("decompress", "--rm", tmp_path / "x.ardm")
    assert r.exit_code == 0, r.stderr
    assert not (tmp_path / "x.ardm").exists()
    assert_same_image(tmp_path / "x.png", original)


def test_rm_keeps_source_after_failure(invoke, png, tmp_path):
    (tmp_path / "x.ardm").write_bytes(b"taken")
    assert_failed(invoke("compress", "-s", STEPS, "--rm", png), 5)
    assert png.is_file()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    assert_failed(invoke("compress", "-s", STEPS, "--rm", bad), 2)
    assert bad.read_bytes() == b"garbage"
    corrupt = tmp_path / "c.ardm"
    corrupt.write_bytes(b"ARDM\x01")
    assert_failed(invoke("decompress", "--rm", corrupt), 3)
    assert corrupt.read_bytes() == b"ARDM\x01"


def test_rm_keeps_source_with_stdout(invoke, png):
    r = invoke("compress", "-s", STEPS, "--rm", "-c", png)
    assert r.exit_code == 0
    assert png.is_file()


def test_keep_flag_is_accepted(invoke, png, tmp_path):
    assert invoke("compress", "-s", STEPS, "-k", png).exit_code == 0
    assert png.is_file() and (tmp_path / "x.ardm").is_file()


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize("args", [["compress", "-s", "0"], ["compress", "--seed", "-1"],
                                  ["compress", "--device", "tpu"], ["nosuchcommand"], ["info"]])
def test_usage_errors_exit_2(invoke, args):
    r = invoke(*args)
    assert r.exit_code == 2
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------- real subprocesses


@pytest.mark.parametrize("case", ["missing", "corrupt", "exists"])
def test_subprocess_errors_are_one_line(tmp_path, good_ardm, case):
    if case == "missing":
        args, code = ["compress", "-s", STEPS, str(tmp_path / "missing.png")], 2
    elif case == "corrupt":
        (tmp_path / "c.ardm").write_bytes(_flip(good_ardm, len(good_ardm) // 2, 3))
        args, code = ["decompress", str(tmp_path / "c.ardm")], 3
    else:
        (tmp_path / "e.ardm").write_bytes(good_ardm)
        (tmp_path / "e.png").write_bytes(b"keep me")
        args, code = ["decompress", str(tmp_path / "e.ardm")], 5
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    proc = run_cli(*args)
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n")
    assert err.startswith("ardmzip: ")
    assert proc.stdout == b""
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before     # nothing written or changed


def test_subprocess_round_trip(tmp_path):
    src = save_png(tmp_path / "s.png", "RGBA", (5, 4))
    proc = run_cli("compress", "-s", STEPS, str(src))
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    assert proc.stdout == b"" and "\r" not in err                # no bar: stderr is not a terminal
    assert err.count("\n") == 1 and err.startswith(f"{src} -> {tmp_path / 's.ardm'}: ")     # the summary
    proc = run_cli("decompress", "-c", str(tmp_path / "s.ardm"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""                                     # to stdout: the summary needs -v
    assert_same_image(src, proc.stdout)


def test_one_thread_archive_decodes_with_two_threads(tmp_path):
    """Compressed in-process on 1 thread, decompressed by a 2-thread subprocess from stdin."""
    assert torch.get_num_threads() == 1
    image = png_bytes(make_image("RGB", (16, 16)))
    archive = compress_bytes(image, 2)[0]
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    code = ("import sys, torch; torch.set_num_threads(2); assert torch.get_num_threads() == 2; "
            "from ardmzip.cli import main; sys.argv = ['ardmzip', 'decompress', '-', '-c']; main()")
    proc = subprocess.run([sys.executable, "-c", code], input=archive, capture_output=True, env=env,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert_same_image(image, proc.stdout)
    # and the other way: the 2-thread CLI's archive is byte-identical to ours
    (tmp_path / "i.png").write_bytes(image)
    proc = subprocess.run([sys.executable, "-m", "ardmzip", "compress", "-s", STEPS, "-c", str(tmp_path / "i.png")],
                          capture_output=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == archive


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_an_interrupt_is_one_line_exit_130_and_no_output(invoke, monkeypatch, png, ardm, tmp_path, command):
    import ardmzip.cli as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"{command}_bytes", interrupted)
    out = tmp_path / "out.bin"
    r = invoke(command, png if command == "compress" else ardm, "-o", out)
    assert r.exit_code == 130 and r.stderr.strip() == "ardmzip: interrupted"
    assert not out.exists()

"""Tests for ardmzip/progress.py and the messages the CLI prints (issue 19, "silence").

One bar per picture over the steps of all its planes (with an ETA), per image for
archives; on a terminal only, off with -q; then one summary line per input, in one format.
In-process tests make the CLI see a terminal by patching ``cli._terminal``; two run a real
subprocess on a pseudo-terminal. Pictures are tiny and coded in 2 steps.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import ardmzip
from ardmzip import cli, progress
from ardmzip.cli import main
from ardmzip.codec import compress_picture, decompress_picture
from ardmzip.imageio import picture_from_array
from ardmzip.progress import PictureBar, coded_planes, decoded_planes

STEPS = 2
RNG = np.random.default_rng(19)
# SRC -> DST: [N images, | K of N images, ]A -> B bytes, X bpsp[ (Y without ...)], T s
SUMMARY = re.compile(r"^\S.* -> \S.*: (\d+ (of \d+ )?images(?: \(\d+ resumed\))?, )?\d+ -> \d+ bytes, "
                     r"\d+\.\d{3} bpsp( \(\d+\.\d{3} without [^)]+\))?, \d+\.\d s$")

pytestmark = pytest.mark.usefixtures("one_thread")


def rgba(h: int = 6, w: int = 5, seed: int = 0) -> np.ndarray:
    """RGBA gradients whose alpha varies: two planes for the network (coded, not stored)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(4 * x + 3 * y + 20 * k + seed) % 256 for k in range(4)], -1).astype(np.uint8)


def save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def fractions(text: str) -> list[tuple[int, int]]:
    """Every "n/total" a tqdm bar drew."""
    return [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+) \[", text)]


def lines(text: str) -> list[str]:
    """What stays on screen: each line's text after its last carriage return."""
    return [line.rsplit("\r", 1)[-1].strip() for line in text.split("\n") if line.rsplit("\r", 1)[-1].strip()]


@pytest.fixture
def invoke():
    try:
        runner = CliRunner(mix_stderr=False)        # click 8.1
    except TypeError:
        runner = CliRunner()                        # click >= 8.2

    def _invoke(*args: str, input: bytes | None = None):
        return runner.invoke(main, [str(a) for a in args], input=input)
    return _invoke


@pytest.fixture
def terminal(monkeypatch):
    """The CLI sees a terminal on stderr (and, if asked, on stdin)."""
    seen = {"stderr": True, "stdin": False}
    monkeypatch.setattr(cli, "_terminal", lambda stream: stream is not None and (
        (seen["stderr"] and stream is sys.stderr) or (seen["stdin"] and stream is sys.stdin)))
    return seen


# ---------------------------------------------------------------- progress.py


class TestPictureBar:
    def test_passes_share_one_bar(self):
        out = io.StringIO()
        with PictureBar("x", file=out) as bar:
            bar.expect(2, 3)
            assert bar.bar.total == 6
            assert list(bar.loop(range(3))) == [0, 1, 2]
            assert list(bar.loop(range(2, -1, -1))) == [2, 1, 0]
            assert (bar.bar.n, bar.bar.total) == (6, 6)
        assert {total for _, total in fractions(out.getvalue())} == {6}      # drawn as one bar of 6

    def test_a_pass_of_another_length_or_an_unexpected_pass_corrects_the_total(self):
        with PictureBar("x", file=io.StringIO()) as bar:
            bar.expect(2, 16)
            assert bar.bar.total == 32
            list(bar.loop(range(5)))                  # a small plane: fewer steps than asked
            assert bar.bar.total == 10
            list(bar.loop(range(5)))
            list(bar.loop(range(5)))                  # a third pass (another coding order)
            assert (bar.bar.n, bar.bar.total) == (15, 15)

    def test_a_pass_stopped_early_still_closes(self):
        with PictureBar("x", file=io.StringIO()) as bar:
            bar.expect(1, 4)
            for step in bar.loop(range(4)):
                if step == 1:
                    break                             # the decoder stops when every stream failed
        assert bar.bar.n == 1

    def test_nothing_to_run_draws_nothing(self):
        out = io.StringIO()
        with PictureBar("x", file=out) as bar:
            bar.expect(0, 16)
        assert bar.bar is None and out.getvalue() == ""

    def test_a_terminal_without_a_size_gets_one(self):
        import pty
        main_fd, side = pty.openpty()                 # a new pseudo-terminal reports 0 x 0
        try:
            with os.fdopen(side, "w", closefd=False) as f:
                assert tuple(os.get_terminal_size(f.fileno())) == (0, 0)
                assert progress._screen(f) == {"ncols": 80, "nrows": 24}
                b = progress.bar(3, "x", "step", file=f)
                assert (b.ncols, b.nrows) == (80, 24)
                b.close()
        finally:
            os.close(main_fd)
            os.close(side)
        assert progress._screen(io.StringIO()) == {"dynamic_ncols": True}


def smooth(h: int, w: int, c: int) -> np.ndarray:
    return rgba(h, w)[..., :c]


def with_alpha(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.dstack([colour, alpha])


@pytest.mark.parametrize("array,planes", [
    (np.full((8, 8, 3), 7, np.uint8), 0),                               # one colour: no network
    (smooth(8, 8, 3), 1),
    (with_alpha(smooth(8, 8, 3), np.full((8, 8), 255, np.uint8)), 1),   # constant alpha
    (with_alpha(smooth(8, 8, 3), smooth(8, 8, 1)[..., 0]), 2),
    (smooth(8, 8, 1), 1),
    (with_alpha(np.full((8, 8), 3, np.uint8), smooth(8, 8, 1)[..., 0]), 1),
])
def test_planes_counted_as_the_codec_codes_them(array, planes):
    assert coded_planes(array) == planes
    data = ardmzip.compress(array, steps=STEPS)
    assert decoded_planes(data) == (planes, STEPS)
    with PictureBar("x", file=io.StringIO()) as bar:
        bar.expect(planes, STEPS)
        assert np.array_equal(decompress_picture(data, progress=bar).pixels, array)
        assert bar.bar is None or bar.bar.n == bar.bar.total == planes * STEPS


def test_a_stored_plane_is_decoded_without_the_network():
    noise = RNG.integers(0, 256, (6, 6, 3), dtype=np.uint8)             # coding would only add bytes
    data = ardmzip.compress(noise, steps=STEPS)
    assert coded_planes(noise) == 1 and decoded_planes(data) == (0, STEPS)


def test_decoded_planes_of_a_damaged_file_is_no_estimate():
    assert decoded_planes(b"not an ardm file") == (0, 0)


def test_one_bar_counts_every_plane_and_the_files_do_not_change():
    picture = picture_from_array(rgba(8, 7))
    out = io.StringIO()
    with PictureBar("p", file=out) as bar:
        bar.expect(2, STEPS)
        data = compress_picture(picture, STEPS, progress=bar)
        assert bar.bar.n == bar.bar.total == 2 * STEPS
    assert data == compress_picture(picture, STEPS)
    assert {total for _, total in fractions(out.getvalue())} == {2 * STEPS}


# ---------------------------------------------------------------- the CLI: bars


def test_compress_shows_one_bar_over_both_planes(invoke, terminal, tmp_path):
    src = save(tmp_path / "a.png", rgba())
    r = invoke("compress", "-s", STEPS, src)
    assert r.exit_code == 0, r.stderr
    drawn = fractions(r.stderr)
    assert drawn and {total for _, total in drawn} == {2 * STEPS}          # one bar, both planes
    assert "a.png:" in r.stderr and "step" in r.stderr
    (summary,) = lines(r.stderr)                                          # the bar is gone, the summary stays
    assert SUMMARY.match(summary)


def test_decompress_and_test_show_the_bar_too(invoke, terminal, tmp_path):
    ardm = tmp_path / "a.ardm"
    ardm.write_bytes(ardmzip.compress(rgba(), steps=STEPS))
    for args in (["decompress", ardm], ["test", ardm]):
        r = invoke(*args)
        assert r.exit_code == 0, r.stderr
        assert {total for _, total in fractions(r.stderr)} == {2 * STEPS}, args


@pytest.mark.parametrize("quiet,term", [(True, True), (False, False)])
def test_no_bar_with_q_or_without_a_terminal(invoke, terminal, tmp_path, quiet, term):
    terminal["stderr"] = term
    src = save(tmp_path / "a.png", rgba())
    r = invoke("compress", "-s", STEPS, *(["-q"] if quiet else []), src)
    assert r.exit_code == 0, r.stderr
    assert fractions(r.stderr) == [] and "\r" not in r.stderr
    assert r.stderr == "" if quiet else SUMMARY.match(r.stderr.strip())


def test_archives_show_a_bar_per_image_for_compress_extract_and_test(invoke, terminal, tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(3):
        save(tmp_path / "in" / f"{i}.png", rgba(seed=i))
    out = tmp_path / "x.ardm"
    for args in (["compress", tmp_path / "in", "-o", out, "-s", STEPS], ["decompress", out, "-o", tmp_path / "o"],
                 ["test", out]):
        r = invoke(*args)
        assert r.exit_code == 0, r.stderr
        assert {total for _, total in fractions(r.stderr)} == {3} and "img" in r.stderr, args
    r = invoke("decompress", out, "-m", "1.png", "-o", tmp_path / "one.png")     # one member: its steps
    assert r.exit_code == 0, r.stderr
    assert {total for _, total in fractions(r.stderr)} == {2 * STEPS}


def test_progress_on_a_real_pseudo_terminal(tmp_path):
    """A subprocess whose stderr is a new pty (which reports 0 columns: tqdm alone would draw
    nothing there): the bar is drawn and cleared, and the summary stays."""
    import pty
    src = save(tmp_path / "a.png", rgba())
    main_fd, side = pty.openpty()
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ardmzip", "compress", "-s", str(STEPS), str(src)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=side, env=env)
    os.close(side)
    chunks = []
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:                               # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    assert "%|" in text and {total for _, total in fractions(text)} == {2 * STEPS}
    assert SUMMARY.match(lines(text)[-1]), text


# ---------------------------------------------------------------- the CLI: summary lines


def test_every_command_prints_one_summary_line_in_one_format(invoke, tmp_path):
    src = save(tmp_path / "a.png", rgba())
    (tmp_path / "in").mkdir()
    save(tmp_path / "in" / "b.png", rgba(seed=1))
    save(tmp_path / "in" / "c.png", rgba(seed=2))
    (tmp_path / "two").mkdir()
    commands = [["compress", "-s", STEPS, src], ["decompress", tmp_path / "a.ardm", "-o", tmp_path / "back.png"],
                ["compress", "-s", STEPS, tmp_path / "in", "-o", tmp_path / "in.ardm"],
                ["decompress", tmp_path / "in.ardm", "-o", tmp_path / "out"],
                ["decompress", tmp_path / "in.ardm", "-m", "b.png", "-o", tmp_path / "b.png"],
                ["decompress", tmp_path / "in.ardm", "-m", "b.png", "-m", "c.png", "-o", tmp_path / "two"],
                ["test", tmp_path / "in.ardm"]]
    for args in commands:
        r = invoke(*args)
        assert r.exit_code == 0, (args, r.stderr)
        if args[0] == "test":
            assert r.stderr == f"{args[1]}: OK (2 images)\n"                 # test: a verdict, not a size
            continue
        assert len(r.stderr.splitlines()) == 1 and SUMMARY.match(r.stderr.strip()), (args, r.stderr)
    r = invoke("compress", "-s", STEPS, "-r", tmp_path / "in", "-o", tmp_path / "r")
    assert r.exit_code == 0 and len(r.stderr.splitlines()) == 2                # -r: a line for each input
    assert all(SUMMARY.match(line) for line in r.stderr.splitlines())
    r = invoke("decompress", tmp_path / "a.ardm", "-o", tmp_path / "back2.png", "-q")
    assert r.exit_code == 0 and r.stderr == ""


def test_summary_directions_and_stdout(invoke, tmp_path):
    src = save(tmp_path / "a.png", rgba())
    r = invoke("compress", "-s", STEPS, src)
    size = (tmp_path / "a.ardm").stat().st_size
    assert f": {6 * 5 * 4} -> {size} bytes" in r.stderr                 # pixel bytes -> .ardm bytes
    r = invoke("decompress", tmp_path / "a.ardm", "-o", tmp_path / "b.png")
    assert f": {size} -> {6 * 5 * 4} bytes" in r.stderr                 # and back
    r = invoke("decompress", tmp_path / "a.ardm", "-c")
    assert r.exit_code == 0 and r.stderr == ""                           # data on stdout: quiet ...
    r = invoke("decompress", tmp_path / "a.ardm", "-c", "-v")
    assert SUMMARY.match(r.stderr.strip()) and " -> stdout: " in r.stderr   # ... unless -v


def test_a_tiny_picture_says_what_its_header_costs(invoke, tmp_path):
    """A 1x1 picture's 45-byte file is 41 bytes of header: 120 bpsp, which the line explains."""
    src = save(tmp_path / "one.png", np.array([[[1, 2, 3]]], np.uint8))
    r = invoke("compress", src)
    assert r.exit_code == 0, r.stderr
    data = (tmp_path / "one.ardm").read_bytes()
    header = ardmzip.files.header_bytes(data)
    assert f"{8 * len(data) / 3:.3f} bpsp ({8 * (len(data) - header) / 3:.3f} without the {header}-byte header)" \
        in r.stderr
    r = invoke("info", tmp_path / "one.ardm")
    assert f"without the {header}-byte header" in r.stdout
    big = save(tmp_path / "big.png", RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8))     # 768 + 42 bytes
    r = invoke("compress", "-s", STEPS, big)
    assert "header" not in r.stderr and SUMMARY.match(r.stderr.strip())    # a tenth or more only

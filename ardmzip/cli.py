"""The ardmzip command line (click), a thin layer over files.py and codec.py.

    ardmzip compress photo.png -o photo.ardm      # or: ardmzip photo.png
    ardmzip decompress photo.ardm -o photo.png
    ardmzip info photo.ardm
    ardmzip test photo.ardm

Conventions follow gzip/zstd: -o names the output (one input), -f overwrites, -c writes
to stdout, '-' reads stdin, -r walks folders, sources are kept unless --rm. Each failure
prints one line on stderr; the exit code is that of the last failure (see errors.py):
1 internal, 2 bad input or usage, 3 corrupt archive, 4 unknown model, 5 output problem.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import click

from . import __version__
from .errors import ArdmzipError, InputError, OutputError
from .files import SUFFIX, Result, compress_bytes, decompress_bytes, info, read_input
from .imageio import write_file_atomic

IMAGE_SUFFIXES = {".png", ".bmp", ".dib", ".ppm", ".pgm", ".pbm", ".pnm", ".tif", ".tiff", ".webp", ".gif",
                  ".tga", ".qoi", ".pcx"}


class Reporter:
    """Messages on stderr, governed by -q/-v; the worst exit code seen so far."""

    def __init__(self, verbosity: int):
        self.verbosity = verbosity
        self.exit_code = 0

    def say(self, message: str, level: int = 1) -> None:
        if self.verbosity >= level:
            click.echo(message, err=True)

    def fail(self, name: str, error: BaseException) -> None:
        if isinstance(error, ArdmzipError):
            code, text = error.exit_code, str(error)
        elif isinstance(error, MemoryError):
            code, text = 1, "out of memory (try a smaller image or fewer steps)"
        else:
            code, text = 1, f"internal error: {type(error).__name__}: {error}"
            if self.verbosity >= 2:
                import traceback
                traceback.print_exc()
        text = " ".join(text.split())                       # one line, always
        prefix = f"{name}: " if name and not text.startswith(name) else ""
        click.echo(f"ardmzip: {prefix}{text}", err=True)
        self.exit_code = code


def _expand(paths: Iterable[str], recursive: bool, suffixes: set[str] | None) -> list[tuple[str, str]]:
    """(file, path relative to the folder given, for mirroring with -o DIR)."""
    out = []
    for p in paths:
        if p != "-" and os.path.isdir(p):
            if not recursive:
                raise InputError(f"{p} is a directory (use -r)")
            for f in sorted(Path(p).rglob("*")):
                if f.is_file() and (suffixes is None or f.suffix.lower() in suffixes):
                    out.append((str(f), str(f.relative_to(p))))
        else:
            out.append((p, os.path.basename(p)))
    return out


def _run(sources: tuple[str, ...], output: str | None, to_stdout: bool, force: bool, remove: bool,
         recursive: bool, verbosity: int, suffixes: set[str] | None,
         out_name: Callable[[str], str], work: Callable[[bytes, bool], tuple[bytes, Result]]) -> None:
    """Shared driver of compress and decompress: expand inputs, name outputs, report."""
    rep = Reporter(verbosity)
    progress = verbosity >= 1 and sys.stderr.isatty()
    try:
        files = _expand(sources or ("-",), recursive, suffixes)
        if not files:
            raise InputError("no input files")
        many = len(files) > 1 or recursive
        if output and many and not (os.path.isdir(output) or recursive):
            raise InputError("-o names one file; with several inputs give a folder (with -r) or omit -o")
        if to_stdout and sys.stdout.isatty() and not force:
            raise OutputError("refusing to write binary data to a terminal (use -o, or -f to force)")
    except ArdmzipError as e:
        rep.fail("", e)
        sys.exit(rep.exit_code)
    for src, rel in files:
        name = "stdin" if src == "-" else src
        try:
            data = sys.stdin.buffer.read() if src == "-" else read_input(src)
            if src == "-" and not data:
                raise InputError("stdin is empty")
            if to_stdout or (src == "-" and not output):
                dst = None
            elif output and many:
                dst = os.path.join(output, out_name(rel))
                try:
                    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
                except OSError as e:
                    raise OutputError(f"cannot create folder for {dst}: {e.strerror or e}") from None
            else:
                dst = output or out_name(src)
            if dst is not None and src != "-" and os.path.exists(dst) and os.path.samefile(src, dst):
                raise OutputError(f"{dst} is the input file; choose another output")
            if dst is not None and not force and os.path.lexists(dst):
                raise OutputError(f"{dst} exists; use -f to overwrite")   # before the slow part
            t0 = time.perf_counter()
            result_bytes, result = work(data, progress)
            if dst is None:
                sys.stdout.buffer.write(result_bytes)
                sys.stdout.buffer.flush()
            else:
                write_file_atomic(dst, result_bytes, force)
            seconds = time.perf_counter() - t0
            result.source, result.output = name, dst or "stdout"
            rep.say(f"{name} -> {result.output}: {result.raw_bytes} -> {result.ardm_bytes} bytes, "
                    f"{result.bpsp:.3f} bpsp, {seconds:.1f} s", level=1 if many or verbosity >= 2 else 2)
            if remove and src != "-" and dst is not None:
                os.unlink(src)
        except KeyboardInterrupt:
            click.echo("ardmzip: interrupted", err=True)
            sys.exit(130)
        except BaseException as e:  # noqa: BLE001 - every failure becomes one line
            if isinstance(e, SystemExit):
                raise
            rep.fail(name, e)
    sys.exit(rep.exit_code)


common = [
    click.option("-o", "--output", type=click.Path(dir_okay=True), help="output file (or folder with -r)"),
    click.option("-c", "--stdout", "to_stdout", is_flag=True, help="write to standard output"),
    click.option("-f", "--force", is_flag=True, help="overwrite existing outputs"),
    click.option("-k", "--keep", is_flag=True, default=True, help="keep source files (the default)"),
    click.option("--rm", "remove", is_flag=True, help="remove each source file after success"),
    click.option("-r", "--recursive", is_flag=True, help="walk folders; with -o DIR mirror the tree"),
    click.option("-q", "--quiet", "quiet", count=True, help="no messages except errors"),
    click.option("-v", "--verbose", "verbose", count=True, help="more messages (-vv: tracebacks)"),
    click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True,
                 help="where the network runs; the output is identical on every device"),
]


def with_common(f):
    for option in reversed(common):
        f = option(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="ardmzip")
def main() -> None:
    """Lossless image compression with an exact autoregressive diffusion model."""


@main.command()
@click.argument("sources", nargs=-1, type=str)
@with_common
@click.option("-s", "--steps", type=click.IntRange(1, 2**32 - 1), default=None,
              help="network calls per image plane: more is smaller and slower [default: 32]")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=0, help="coding-order seed")
@click.option("--model", default=None, help="model name (see `ardmzip models`)")
def compress(sources, output, to_stdout, force, keep, remove, recursive, quiet, verbose, device, steps, seed, model):
    """Compress images (PNG, BMP, PNM, TIFF, lossless WebP, GIF) to .ardm files."""

    def work(data: bytes, progress: bool):
        ardm, picture = compress_bytes(data, steps, model=model, seed=seed, device=device, progress=progress)
        px = picture.pixels
        return ardm, Result("", None, px.nbytes, len(ardm), px.size)

    _run(sources, output, to_stdout, force, remove, recursive, 1 + verbose - quiet, IMAGE_SUFFIXES,
         lambda p: str(Path(p).with_suffix(SUFFIX)), work)


@main.command()
@click.argument("sources", nargs=-1, type=str)
@with_common
def decompress(sources, output, to_stdout, force, keep, remove, recursive, quiet, verbose, device):
    """Decompress .ardm files to PNG (same mode, pixels and metadata)."""

    def out_name(p: str) -> str:
        if not p.lower().endswith(SUFFIX):
            raise InputError(f"{p}: unknown suffix (expected {SUFFIX}); use -o")
        return p[: -len(SUFFIX)] + ".png"

    def work(data: bytes, progress: bool):
        png = decompress_bytes(data, device=device, progress=progress)
        i = info(data)
        return png, Result("", None, i["subpixels"], len(data), i["subpixels"])

    _run(sources, output, to_stdout, force, remove, recursive, 1 + verbose - quiet, {SUFFIX}, out_name, work)


@main.command("test")
@click.argument("sources", nargs=-1, required=True, type=str)
@click.option("-r", "--recursive", is_flag=True)
@click.option("-q", "--quiet", count=True)
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu")
def test_cmd(sources, recursive, quiet, device):
    """Decode .ardm files and check their pixels, writing nothing."""
    rep = Reporter(1 - quiet)
    try:
        files = _expand(sources, recursive, {SUFFIX})
    except ArdmzipError as e:
        rep.fail("", e)
        sys.exit(rep.exit_code)
    for src, _ in files:
        try:
            data = sys.stdin.buffer.read() if src == "-" else read_input(src)
            decompress_bytes(data, device=device)
            rep.say(f"{src}: OK")
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, (SystemExit, KeyboardInterrupt)):
                raise
            rep.fail(src, e)
    sys.exit(rep.exit_code)


@main.command("info")
@click.argument("sources", nargs=-1, required=True, type=str)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per file")
def info_cmd(sources, as_json):
    """Show an .ardm file's header: image, model, steps, size in bits per subpixel."""
    rep = Reporter(1)
    for src in sources:
        try:
            data = sys.stdin.buffer.read() if src == "-" else read_input(src)
            i = info(data)
            if as_json:
                click.echo(json.dumps(dict(i, file=src)))
            else:
                meta = ", ".join(i["metadata"]) or "none"
                click.echo(f"{src}: {i['width']}x{i['height']} {i['mode']}, {i['bytes']} bytes, "
                           f"{i['bpsp']:.3f} bpsp; model {i['model']} ({i['model_hash']}), {i['steps']} steps, "
                           f"seed {i['seed']}, pixel crc32 {i['pixel_crc32']}, metadata: {meta}")
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, (SystemExit, KeyboardInterrupt)):
                raise
            rep.fail(src, e)
    sys.exit(rep.exit_code)


@main.command("models")
def models_cmd():
    """List the models this ardmzip has."""
    from .weights import DEFAULT_MODEL, REGISTRY
    for name, (fname, sha) in sorted(REGISTRY.items()):
        click.echo(f"{name}{' (default)' if name == DEFAULT_MODEL else ''}: {fname} sha256 {sha}")


if __name__ == "__main__":
    main()

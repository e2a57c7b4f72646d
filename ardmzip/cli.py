"""The ardmzip command line (click), a thin layer over files.py and codec.py.

    ardmzip compress photo.png -o photo.ardm
    ardmzip decompress photo.ardm -o photo.png
    ardmzip info photo.ardm
    ardmzip test photo.ardm

Dataset archives (archive.py: many images in one file, random access):

    ardmzip compress photos/ -o photos.ardm [--resume] [-j 2]   # or: data.npz -o data.ardm
    ardmzip list photos.ardm
    ardmzip decompress photos.ardm -o out/                      # .npz/.npy sources: -o back.npz
    ardmzip decompress photos.ardm --member sub/a.png -o a.png
    ardmzip test photos.ardm; ardmzip info photos.ardm

A folder (or .npz/.npy) source with -o NAME.ardm and no -r makes one archive; with -r
each image becomes its own .ardm as before.

Messages, as zstd: on a terminal a progress bar per image (every step of every plane, with
an ETA; archives: per image), then one summary line per input (``_summary``); -q: errors
only; no bar when stderr is not a terminal; the summary needs -v when the output goes to
standard output.

Conventions follow gzip/zstd: -o names the output (one input), -f overwrites, -c writes
to stdout, '-' reads stdin, -r walks folders, sources are kept unless --rm. Each failure
prints one line on stderr; the exit code is that of the last failure (see errors.py):
1 internal error or out of memory, 2 bad input or usage, or a picture over --max-pixels,
3 corrupt archive, 4 unknown model, 5 output problem (a closed standard output too),
130 interrupted, 141 standard output's reader went away (a broken pipe: no message, as
gzip killed by SIGPIPE).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, NoReturn

import click

from . import __version__
from . import archive
from .archive import ARRAY_SUFFIXES, CONTROL_CHARACTERS, IMAGE_SUFFIXES
from .adapt import DEFAULT_STEPS as ADAPT_STEPS
from .codec import LEVEL_STEPS
from .container import MAX_PIXELS
from .errors import ArdmzipError, InputError, OutputError
from .files import SUFFIX, Result, compress_bytes, decode_bytes, decompress_bytes, header_bytes, info, read_input
from .imageio import PNG_LEVEL, write_file_atomic, write_file_under
from .progress import PictureBar
from .runtime import keep_freed_memory

MODEL_FILE_HELP = "a model file for files made with a model this ardmzip does not have (checked by its hash)"
EXIT_BROKEN_PIPE = 141          # 128 + SIGPIPE: what a shell reports for gzip killed by the signal


class Reporter:
    """Messages on stderr, governed by -q/-v; the worst exit code seen so far."""

    def __init__(self, verbosity: int):
        self.verbosity = verbosity
        self.exit_code = 0

    def say(self, message: str, level: int = 1) -> None:
        if self.verbosity >= level:
            click.echo(_printable(message), err=True)

    @contextlib.contextmanager
    def each(self, name: str):
        """Run one input's work; a failure is reported and the loop goes on to the next."""
        try:
            yield
        except SystemExit:
            raise
        except KeyboardInterrupt:
            click.echo("ardmzip: interrupted", err=True)
            sys.exit(130)
        except BaseException as e:  # noqa: BLE001 - every failure becomes one line
            self.fail(name, e)

    def fail(self, name: str, error: BaseException, hint: str = "") -> None:
        """Report ``error`` as one line and remember its exit code. A broken pipe is not
        reported: it ends the whole run quietly (``_Main``)."""
        if isinstance(error, BrokenPipeError):
            raise error
        if isinstance(error, ArdmzipError):
            code, text = error.exit_code, str(error)
        elif _out_of_memory(error):
            code, text = 1, "out of memory (try a smaller image or fewer steps)"
        else:
            code, text = 1, f"internal error: {type(error).__name__}: {error}"
            if self.verbosity >= 2:
                import traceback
                traceback.print_exc()
        text = " ".join((f"{text} ({hint})" if hint else text).split())     # one line, always
        prefix = f"{name}: " if name and not text.startswith(name) else ""
        click.echo(_printable(f"ardmzip: {prefix}{text}"), err=True)
        self.exit_code = code


def _out_of_memory(error: BaseException) -> bool:
    """MemoryError, or torch's RuntimeError for a failed allocation ("[enforce fail at
    alloc_cpu.cpp] ... can't allocate memory", "CUDA out of memory")."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        s in text for s in ("can't allocate memory", "out of memory", "alloc_cpu.cpp"))


def _printable(text: str) -> str:
    """``text`` with control characters (terminal escape codes, from file names or metadata
    keys) written as \\xNN, so that printing it cannot drive the terminal."""
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _terminal(stream) -> bool:
    """Whether ``stream`` (sys.stdin, sys.stderr; None where closed) is a terminal."""
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def _picture_bar(progress: bool, name: str):
    """A progress bar over one picture's steps (PictureBar), or a context giving False."""
    if not progress:
        return contextlib.nullcontext(False)
    label = os.path.basename(name) or name
    return PictureBar(label if len(label) <= 30 else "..." + label[-27:])


def _summary(src: str, dst: str, raw: int, ardm: int, subpixels: int, seconds: float, *, decoding: bool = False,
             what: str = "", without: tuple[int, str] | None = None) -> str:
    """The one line every command prints for each input it turns into an output:

        SRC -> DST: [WHAT, ]RAW -> ARDM bytes, BPSP bpsp[ (B without ...)], SECONDS s

    RAW: pixel bytes, ARDM: .ardm bytes (the other way round when ``decoding``), BPSP: bits
    per subpixel of the .ardm bytes. ``without`` = (bytes, what they are): also give the bpsp
    without those bytes (a single image's header when it is a tenth of the file or more: a
    1x1 picture's 45 bytes are 41 of header; an archive's overhead)."""
    sizes = f"{ardm} -> {raw}" if decoding else f"{raw} -> {ardm}"
    bpsp = f"{8 * ardm / max(1, subpixels):.3f} bpsp"
    if without is not None:
        bpsp += f" ({8 * (ardm - without[0]) / max(1, subpixels):.3f} without {without[1]})"
    return f"{src} -> {dst}: {what}{sizes} bytes, {bpsp}, {seconds:.1f} s"


def _header_note(header: int, ardm: int) -> tuple[int, str] | None:
    """``_summary``'s ``without`` for a single image: its header, where that is 10% or more."""
    return (header, f"the {header}-byte header") if header and 10 * header >= ardm else None


def _stdin_refused(ctx: click.Context, dash: bool) -> NoReturn:
    """Reading image data from a terminal is never meant (zstd: "stdin is a console"): refuse
    at once, after the usage when no file was named at all (``dash``: '-' was)."""
    if not dash:
        click.echo(ctx.get_usage(), err=True)
        click.echo(f"Try '{ctx.command_path} -h' for help.", err=True)
    click.echo("ardmzip: stdin is a terminal: name the files to read, or pipe data in", err=True)
    sys.exit(InputError.exit_code)


def _stdout() -> BinaryIO:
    """Standard output for binary data; OutputError where it was closed (``>&-``)."""
    if sys.stdout is None:
        raise OutputError("standard output is closed")
    return sys.stdout.buffer


def _write_stdout(data: bytes) -> None:
    """Write to standard output; a broken pipe propagates (``_Main`` ends quietly), another
    failure (a full disk behind it) is an OutputError."""
    out = _stdout()
    try:
        out.write(data)
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write to standard output: {e.strerror or e}") from None


def _echo(*lines: str) -> None:
    """Lines of text output (info, list), control characters escaped; errors as for
    ``_write_stdout``."""
    if sys.stdout is None:
        raise OutputError("standard output is closed")
    try:
        click.echo("\n".join(_printable(line) for line in lines))
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write to standard output: {e.strerror or e}") from None


def _exit_on_broken_pipe() -> NoReturn:
    """The reader of standard output went away: stop at once, quietly, like gzip (which
    SIGPIPE kills). Python's flush at exit would hit the pipe again, so stdout goes to
    /dev/null first."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    sys.exit(EXIT_BROKEN_PIPE)


def _open_standard_fds() -> None:
    """Point closed standard fds (``>&-``) at /dev/null, so that no file ardmzip opens takes
    their number (a worker process or a stray print would write into it); sys.stdout stays
    None, so writing to stdout is still refused."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)


class _Main(click.Group):
    """The command group: a broken pipe anywhere ends the run quietly (``_exit_on_broken_pipe``)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _exit_on_broken_pipe()


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
         recursive: bool, verbosity: int, suffixes: set[str] | None, out_name: Callable[[str], str],
         work: Callable[[bytes, "bool | PictureBar"], tuple[bytes, Result]], decoding: bool = False) -> None:
    """Shared driver of compress and decompress: expand inputs, name outputs, report."""
    rep = Reporter(verbosity)
    progress = verbosity >= 1 and _terminal(sys.stderr)
    if not sources or "-" in sources:
        if _terminal(sys.stdin):
            _stdin_refused(click.get_current_context(), bool(sources))
    try:
        files = _expand(sources or ("-",), recursive, suffixes)
        if not files:
            raise InputError("no input files")
        many = len(files) > 1 or recursive
        if output and many and not (os.path.isdir(output) or recursive):
            raise InputError("-o names one file; with several inputs give a folder (with -r) or omit -o")
        if to_stdout or (not output and any(src == "-" for src, _ in files)):
            stdout = _stdout()                      # a closed stdout is refused before the slow part
            if to_stdout and stdout.isatty() and not force:
                raise OutputError("refusing to write binary data to a terminal (use -o, or -f to force)")
    except ArdmzipError as e:
        rep.fail("", e)
        sys.exit(rep.exit_code)
    for src, rel in files:
        name = "stdin" if src == "-" else src
        with rep.each(name):
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
            with _picture_bar(progress, name) as bar:
                result_bytes, result = work(data, bar)
            if dst is None:
                _write_stdout(result_bytes)
            else:
                write_file_atomic(dst, result_bytes, force)
            seconds = time.perf_counter() - t0
            result.source, result.output = name, dst or "stdout"
            rep.say(_summary(name, result.output, result.raw_bytes, result.ardm_bytes, result.subpixels, seconds,
                             decoding=decoding, without=_header_note(result.header_bytes, result.ardm_bytes)),
                    level=2 if dst is None else 1)
            if remove and src != "-" and dst is not None:
                os.unlink(src)
    sys.exit(rep.exit_code)


DEVICE_HELP = ("where the network runs (auto: cuda when there is one); the exact integer network is meant to "
               "give the same files everywhere, but only the CPU path is verified so far")

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
                 help=DEVICE_HELP),
    click.option("--max-pixels", type=click.IntRange(min=0), default=MAX_PIXELS, show_default=True, metavar="N",
                 help="refuse pictures over N pixels (width x height) before coding or decoding them; 0: no limit"),
]


def with_common(f):
    for option in reversed(common):
        f = option(f)
    return f


def with_ray(f):
    """--ray [ADDRESS]: archives' batches on a Ray cluster instead of -j local processes."""
    return click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
                        help="archives: code the batches on a Ray cluster (HOST:PORT, ray://HOST:PORT, auto; "
                             "alone: RAY_ADDRESS, else a local one); needs pip install 'ardmzip[ray]'")(f)


@contextlib.contextmanager
def _workers(jobs: int, ray_address: str | None, rep: Reporter):
    """What archive.py's ``jobs`` gets: -j's process count, or with --ray a cluster.RayMap."""
    if ray_address is None:
        yield jobs
        return
    if jobs > 1:
        raise InputError("-j and --ray: give one (on Ray every CPU of the cluster takes batches)")
    from .cluster import connect
    with connect(ray_address or None) as on_ray:
        rep.say(f"on Ray: {on_ray.describe()}")
        yield on_ray


def with_levels(f):
    """-1 .. -9, --fast (= -1) and --best (= -9), as in gzip; the last one given wins."""
    steps = ", ".join(f"-{n}: {k}" for n, k in LEVEL_STEPS.items())
    f = click.option("--best", "level", flag_value=9, help="same as -9")(f)
    f = click.option("--fast", "level", flag_value=1, help="same as -1")(f)
    for n in sorted(LEVEL_STEPS, reverse=True):           # help shows -1 alone, for all nine
        f = click.option(f"-{n}", "level", flag_value=n, hidden=n != 1,
                         help=f"-1 (fastest) .. -9 (smallest): a step budget ({steps}) [default: -6]"
                         if n == 1 else None)(f)
    return f


def steps_for(level: int | None, steps: int | None) -> int | None:
    """The step budget from a level or --steps (None: the default)."""
    if level is not None and steps is not None:
        raise InputError("give a level (-1 .. -9) or --steps, not both")
    return LEVEL_STEPS[level] if level is not None else steps


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="ardmzip")
def main() -> None:
    """Lossless image compression with an exact autoregressive diffusion model."""
    _open_standard_fds()
    keep_freed_memory()


@main.command()
@click.argument("sources", nargs=-1, type=str)
@with_common
@with_levels
@click.option("-s", "--steps", type=click.IntRange(1, 2**32 - 1), default=None,
              help="network calls per image plane: more is smaller and slower [default: 16]")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=0, help="coding-order seed")
@click.option("--model", default=None, metavar="NAME|FILE",
              help="model name (see `ardmzip models`) or model file (.npz from `ardmzip fit`; an archive carries it) "
                   "[default: auto, the shipped model estimated to code each image smallest; one for an archive]")
@click.option("--carry-model", is_flag=True, help="archives: carry the model's weights even if it is registered")
@click.option("--resume", is_flag=True, help="archives: continue an interrupted run from its .partial file")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="archives: worker processes compressing in parallel (same bytes)")
@click.option("--adapt", is_flag=True,
              help="tune the model's biases to each image before coding it: ~1% smaller photos, "
                   "~8x the compress time, the same decompress")
@click.option("--adapt-steps", type=click.IntRange(1, 100000), default=None, metavar="N",
              help=f"--adapt with N tuning steps [default: {ADAPT_STEPS}; more is smaller and slower]")
@with_ray
def compress(sources, output, to_stdout, force, keep, remove, recursive, quiet, verbose, device, max_pixels, level,
             steps, seed, model, carry_model, resume, jobs, adapt, adapt_steps, ray_address):
    """Compress images (PNG, BMP, PNM, TIFF, lossless WebP, GIF) to .ardm files.

    A folder, .npz or .npy with -o NAME.ardm (and no -r) becomes one dataset archive."""
    verbosity = 1 + verbose - quiet
    try:
        steps = steps_for(level, steps)
    except InputError as e:
        Reporter(verbosity).fail("", e)
        sys.exit(e.exit_code)
    adapt = adapt_steps or (ADAPT_STEPS if adapt else 0)
    target = _archive_target(sources, output, recursive)
    if target is not None and adapt:
        Reporter(verbosity).fail("", InputError("--adapt codes single files, not archives (use -r for one file "
                                                "per image)"))
        sys.exit(InputError.exit_code)
    if target is not None:
        _compress_archive(*target, to_stdout, force, remove, verbosity, device, steps, seed, model, resume, jobs,
                          max_pixels, carry_model, ray_address)
        return
    if resume or jobs > 1 or carry_model or ray_address is not None:
        Reporter(verbosity).fail("", InputError("--resume, -j, --ray and --carry-model apply to archives: "
                                                "DIR, .npz or .npy -o NAME.ardm"))
        sys.exit(InputError.exit_code)

    def work(data: bytes, progress: bool | PictureBar):
        ardm, picture = compress_bytes(data, steps, model=model, seed=seed, device=device, progress=progress,
                                       max_pixels=max_pixels, adapt=adapt)
        px = picture.pixels
        return ardm, Result("", None, px.nbytes, len(ardm), px.size, header_bytes(ardm))

    _run(sources, output, to_stdout, force, remove, recursive, verbosity, IMAGE_SUFFIXES,
         lambda p: str(Path(p).with_suffix(SUFFIX)), work)


def _archive_target(sources: tuple[str, ...], output: str | None, recursive: bool) -> tuple[str, str] | None:
    """(source, archive) when compress should make one archive, else None."""
    if recursive or len(sources) != 1 or sources[0] == "-":
        return None
    src = sources[0]
    if os.path.isdir(src):
        return (src, output) if output and output.lower().endswith(SUFFIX) else None
    if src.lower().endswith(ARRAY_SUFFIXES):
        return src, output or os.path.splitext(src)[0] + SUFFIX
    return None


def _compress_archive(src: str, out: str, to_stdout: bool, force: bool, remove: bool, verbosity: int, device: str,
                      steps: int | None, seed: int, model: str | None, resume: bool, jobs: int,
                      max_pixels: int, carry_model: bool = False, ray_address: str | None = None) -> None:
    rep = Reporter(verbosity)
    partial = out + archive.PARTIAL_SUFFIX
    try:
        if to_stdout:
            raise InputError("an archive is written to a file: use -o NAME.ardm, not -c")
        if remove:
            raise InputError("--rm is not supported when making an archive")
        with _workers(jobs, ray_address, rep) as jobs:
            r = archive.write_archive(src, out, steps, resume=resume, force=force, model=model, seed=seed,
                                      device=device, jobs=jobs, progress=verbosity >= 1 and _terminal(sys.stderr),
                                      max_pixels=max_pixels, carry_model=carry_model)
        ix = r.index
        resumed = f" ({r.resumed} resumed)" if r.resumed else ""
        rep.say(_summary(src, out, ix.subpixels, ix.size, ix.subpixels, r.seconds,
                         what=f"{len(ix.members)} images{resumed}, ", without=_overhead_note(ix)))
    except KeyboardInterrupt:
        kept = f"; finished images are kept in {partial} (continue with --resume)" if os.path.exists(partial) else ""
        click.echo(f"ardmzip: interrupted{kept}", err=True)
        sys.exit(130)
    except BaseException as e:  # noqa: BLE001 - every failure becomes one line
        if isinstance(e, SystemExit):
            raise
        kept = getattr(e, "archive_partial", None)
        rep.fail(src, e, f"finished images are kept in {kept}; continue with --resume" if kept else "")
    sys.exit(rep.exit_code)


@main.command()
@click.argument("sources", nargs=-1, type=str)
@with_common
@click.option("-m", "--member", "members", multiple=True,
              help="archives: extract only this member (repeatable; see `ardmzip list`)")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="archives: worker processes decoding in parallel (same pixels)")
@with_ray
@click.option("--follow-symlinks", is_flag=True,
              help="archives: extract through symbolic links to folders inside the output folder (refused by default)")
@click.option("--png-level", type=click.IntRange(0, 9), default=PNG_LEVEL, show_default=True, metavar="N",
              help="zlib level of the PNGs written: 0 (fastest) .. 9 (smallest)")
@click.option("--model", "model_file", default=None, metavar="FILE", help=MODEL_FILE_HELP)
def decompress(sources, output, to_stdout, force, keep, remove, recursive, quiet, verbose, device, max_pixels, members,
               jobs, ray_address, follow_symlinks, png_level, model_file):
    """Decompress .ardm files to PNG (same mode, pixels and metadata).

    An archive extracts to a folder of PNGs (-o DIR; default: its name without .ardm),
    or for .npz/.npy sources to -o NAME.npz / NAME.npy, bit-exact."""
    verbosity = 1 + verbose - quiet
    _load_model_file(model_file, Reporter(verbosity))
    if members or any(s != "-" and os.path.isfile(s) and archive.is_archive(s) for s in sources):
        _decompress_archive(sources, output, to_stdout, force, remove, verbosity, device, members, jobs, max_pixels,
                            follow_symlinks, png_level, ray_address)
        return
    if jobs > 1 or ray_address is not None:
        Reporter(verbosity).fail("", InputError("-j and --ray apply to archives: decompress ARCHIVE.ardm -j N"))
        sys.exit(InputError.exit_code)

    def out_name(p: str) -> str:
        if not p.lower().endswith(SUFFIX):
            raise InputError(f"{p}: unknown suffix (expected {SUFFIX}); use -o")
        return p[: -len(SUFFIX)] + ".png"

    def work(data: bytes, progress: bool | PictureBar):
        _not_an_archive(data)
        png = decompress_bytes(data, device=device, progress=progress, max_pixels=max_pixels, png_level=png_level)
        i = info(data)
        return png, Result("", None, i["subpixels"], len(data), i["subpixels"], i["header_bytes"])

    _run(sources, output, to_stdout, force, remove, recursive, verbosity, {SUFFIX}, out_name, work, decoding=True)


def _load_model_file(path: str | None, rep: Reporter) -> None:
    """--model FILE: make a model file known (by its hash) to this run; exit 4 if it is not one."""
    if path is None:
        return
    from .weights import load
    try:
        load(path=path)
    except ArdmzipError as e:
        rep.fail(path, e)
        sys.exit(rep.exit_code)


def _not_an_archive(data: bytes) -> None:
    if data[:len(archive.MAGIC)] == archive.MAGIC:
        raise InputError("is a dataset archive: give it on its own (ardmzip decompress ARCHIVE -o DIR)")


def _overhead_note(ix: archive.ArchiveIndex) -> tuple[int, str]:
    """``_summary``'s ``without`` for an archive: everything but its members' .ardm bytes."""
    return ix.overhead_bytes, f"the overhead of {ix.overhead_bytes} bytes, {ix.overhead_per_image:.1f} per image"


def _decompress_archive(sources: tuple[str, ...], output: str | None, to_stdout: bool, force: bool, remove: bool,
                        verbosity: int, device: str, members: tuple[str, ...], jobs: int, max_pixels: int,
                        follow_symlinks: bool, png_level: int, ray_address: str | None = None) -> None:
    rep = Reporter(verbosity)
    progress = verbosity >= 1 and _terminal(sys.stderr)
    src = sources[0] if len(sources) == 1 else ""
    with rep.each(src):
        if len(sources) != 1 or src == "-" or not archive.is_archive(src):
            raise InputError("give one archive file" + (" with --member" if members else
                                                         "; archives are extracted one at a time"))
        if to_stdout and _stdout().isatty() and not force:
            raise OutputError("refusing to write binary data to a terminal (use -o, or -f to force)")
        t0 = time.perf_counter()
        if members:
            _extract_members(rep, src, output, to_stdout, force, device, members, max_pixels, follow_symlinks,
                             png_level, progress)
            sys.exit(rep.exit_code)
        if to_stdout:
            raise InputError("-c writes one image: add --member NAME")
        index = archive.read_index(src)
        if output is None:
            if not src.lower().endswith(SUFFIX):
                raise InputError(f"{src}: unknown suffix (expected {SUFFIX}); use -o")
            output = src[: -len(SUFFIX)] + ("" if index.kind == "images" else "." + index.kind)
        zeros = f"zero-filled in {output}" if output.lower().endswith(ARRAY_SUFFIXES) else ""

        def report(name: str, error: BaseException | None) -> None:
            if error is not None:
                rep.fail(f"{src}: {name}", error, zeros)

        with _workers(jobs, ray_address, rep) as jobs:
            results = archive.extract_all(src, output, force, device, progress, report, jobs, max_pixels=max_pixels,
                                          follow_symlinks=follow_symlinks, png_level=png_level)
        failed = sum(e is not None for _, e in results)
        count = f"{len(results) - failed} of {len(results)}" if failed else f"{len(results)}"
        rep.say(_summary(src, output, index.subpixels, index.size, index.subpixels, time.perf_counter() - t0,
                         decoding=True, what=f"{count} images, ", without=_overhead_note(index)),
                level=2 if failed else 1)                 # a failed input: its error lines only, unless -v
        if remove and not failed:
            os.unlink(src)
    sys.exit(rep.exit_code)


def _extract_members(rep: Reporter, src: str, output: str | None, to_stdout: bool, force: bool, device: str,
                     members: tuple[str, ...], max_pixels: int, follow_symlinks: bool, png_level: int,
                     progress: bool) -> None:
    """--member: one member to -o FILE (or stdout), several into -o DIR mirroring names (never
    outside DIR, nor through a symbolic link in it unless ``follow_symlinks``)."""
    from .imageio import picture_to_png
    index = archive.read_index(src)
    known = {m.name for m in index.members}
    for name in members:
        if name not in known:
            raise InputError(f"no member named {name!r} (see ardmzip list {src})")
    single = len(set(members)) == 1 and not (output and os.path.isdir(output))
    if to_stdout and not single:
        raise InputError("-c writes one image: give one --member")
    names = archive.png_names([m.name for m in index.members])
    targets: dict[str, str | None] = {}
    for name in dict.fromkeys(members):
        if to_stdout:
            targets[name] = None
        elif single:
            targets[name] = output or os.path.basename(names[name])
        else:
            targets[name] = os.path.join(output or os.curdir, *names[name].split("/"))
    if not force:
        for dst in targets.values():
            if dst is not None and os.path.lexists(dst):
                raise OutputError(f"{dst} exists; use -f to overwrite")     # before the slow part
    by_name = {m.name: m for m in index.members}
    start, failed = time.perf_counter(), False
    for name, dst in targets.items():
        try:
            t0 = time.perf_counter()
            with _picture_bar(progress, name) as bar:
                picture = archive.extract_member(src, name, device, max_pixels=max_pixels, progress=bar)
            png = picture_to_png(picture, png_level)
            if dst is None:
                _write_stdout(png)
            elif single:
                write_file_atomic(dst, png, force)
            else:
                write_file_under(output or os.curdir, names[name], png, force, follow_symlinks)
            m = by_name[name]
            rep.say(_summary(f"{src}: {name}", dst or "stdout", m.subpixels, m.size, m.subpixels,
                             time.perf_counter() - t0, decoding=True), level=1 if single and dst else 2)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one line per member, the others go on
            rep.fail(f"{src}: {name}", e)
            failed = True
    if not single and not failed:          # several members: one line for them all (each with -v)
        chosen = [by_name[name] for name in targets]
        raw, size = sum(m.subpixels for m in chosen), sum(m.size for m in chosen)
        rep.say(_summary(src, output or os.curdir, raw, size, raw, time.perf_counter() - start, decoding=True,
                         what=f"{len(chosen)} images, "))


@main.command("test")
@click.argument("sources", nargs=-1, required=True, type=str)
@click.option("-r", "--recursive", is_flag=True)
@click.option("-q", "--quiet", count=True, help="no messages except errors")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True,
              help=DEVICE_HELP)
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="archives: worker processes decoding in parallel")
@with_ray
@click.option("--max-pixels", type=click.IntRange(min=0), default=MAX_PIXELS, show_default=True, metavar="N",
              help="refuse pictures over N pixels (width x height) before decoding them; 0: no limit")
@click.option("--model", "model_file", default=None, metavar="FILE", help=MODEL_FILE_HELP)
def test_cmd(sources, recursive, quiet, device, jobs, ray_address, max_pixels, model_file):
    """Decode .ardm files (and every member of archives) and check their pixels, writing nothing."""
    rep = Reporter(1 - quiet)
    _load_model_file(model_file, rep)
    progress = quiet == 0 and _terminal(sys.stderr)
    workers = contextlib.ExitStack()
    try:
        files = _expand(sources, recursive, {SUFFIX})
        jobs = workers.enter_context(_workers(jobs, ray_address, rep))    # one connection for all archives
    except ArdmzipError as e:
        rep.fail("", e)
        sys.exit(rep.exit_code)
    with workers:
        for src, _ in files:
            with rep.each(src):
                if src != "-" and archive.is_archive(src):
                    def report(name: str, error: BaseException | None, src: str = src) -> None:
                        if error is not None:
                            rep.fail(f"{src}: {name}", error)

                    results = archive.test_archive(src, device, progress, report, jobs, max_pixels=max_pixels)
                    if all(e is None for _, e in results):
                        rep.say(f"{src}: OK ({len(results)} images)")
                    continue
                data = _read_single(src)
                with _picture_bar(progress, src) as bar:
                    decode_bytes(data, device=device, progress=bar, max_pixels=max_pixels)
                rep.say(f"{src}: OK")
    sys.exit(rep.exit_code)


def _read_single(src: str) -> bytes:
    """The bytes of a single-image .ardm (from stdin for '-', not a terminal); archives are refused."""
    if src == "-" and _terminal(sys.stdin):
        _stdin_refused(click.get_current_context(), True)
    data = sys.stdin.buffer.read() if src == "-" else read_input(src)
    _not_an_archive(data)
    return data


@main.command("info")
@click.argument("sources", nargs=-1, required=True, type=str)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per file")
def info_cmd(sources, as_json):
    """Show an .ardm file's header: image, model, steps, size in bits per subpixel (archives: totals)."""
    rep = Reporter(1)
    for src in sources:
        with rep.each(src):
            if src != "-" and archive.is_archive(src):
                a = archive.archive_info(src)
                if as_json:
                    _echo(json.dumps(dict(a, file=src)))
                else:
                    arrays = "".join(f"; array {x['key'] or 'data'} {tuple(x['shape'])} uint8" for x in a["arrays"])
                    model = f"; model {a['model']} ({a['model_hash']}, {a['model_source']}), {a['steps']} steps, " \
                        f"seed {a['seed']}" if a["model"] else ""
                    _echo(f"{src}: archive of {a['images']} images ({a['kind']}), {a['bytes']} bytes, "
                               f"{a['bpsp']:.3f} bpsp; overhead {a['overhead_bytes']} bytes "
                               f"({a['overhead_per_image']:.1f} per image){model}{arrays}")
                continue
            data = _read_single(src)
            i = info(data)
            if as_json:
                _echo(json.dumps(dict(i, file=src)))
            else:
                meta = ", ".join(i["metadata"]) or "none"
                note = _header_note(i["header_bytes"], i["bytes"])
                without = f" ({8 * (i['bytes'] - note[0]) / i['subpixels']:.3f} without {note[1]})" if note else ""
                _echo(f"{src}: {i['width']}x{i['height']} {i['mode']}, {i['bytes']} bytes, "
                           f"{i['bpsp']:.3f} bpsp{without}; model {i['model']} ({i['model_hash']}), {i['steps']} steps, "
                           f"seed {i['seed']}, pixel crc32 {i['pixel_crc32']}, metadata: {meta}; "
                           f"planes: {'; '.join(i['planes'])} (format {i['format_version']}, {i['container']} container)")
    sys.exit(rep.exit_code)


@main.command("list")
@click.argument("sources", nargs=-1, required=True, type=str)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per member")
def list_cmd(sources, as_json):
    """List an archive's members (size, bits per subpixel, image) from its index alone."""
    rep = Reporter(1)
    for src in sources:
        with rep.each(src):
            index = archive.read_index(src)
            a = archive.archive_info(src)
            model = {"model": a["model"], "model_hash": a["model_hash"], "model_source": a["model_source"]}
            if as_json:
                for m in index.members:
                    _echo(json.dumps({"archive": src, "name": m.name, "bytes": m.size, "width": m.width,
                                      "height": m.height, "mode": m.mode, "bpsp": m.bpsp, **model}))
                continue
            lines = [f"{src}:"] if len(sources) > 1 else []
            lines.append(f"{'bytes':>10} {'bpsp':>7}  {'image':<14} name")
            lines += [f"{m.size:>10} {m.bpsp:>7.3f}  {f'{m.width}x{m.height} {m.mode}':<14} {m.name}"
                      for m in index.members]
            lines.append(f"{index.size:>10} {index.bpsp:>7.3f}  {len(index.members)} images, "
                         f"{index.overhead_bytes} bytes overhead ({index.overhead_per_image:.1f} per image)"
                         + (f"; model {a['model']} ({a['model_hash']}, {a['model_source']})" if a["model"] else ""))
            _echo(*lines)
    sys.exit(rep.exit_code)


@main.command("models")
def models_cmd():
    """List the models this ardmzip has."""
    from .choose import CANDIDATES, SMALL_CANDIDATES, TILE
    from .weights import REGISTRY
    small = (f" (images up to {TILE}x{TILE}: {', '.join(SMALL_CANDIDATES)})"
             if SMALL_CANDIDATES != CANDIDATES else "")
    click.echo(f"auto (default): per image, the one of {', '.join(CANDIDATES)}{small} estimated to code it smallest")
    for name, (fname, sha) in sorted(REGISTRY.items()):
        big, thumb = name in CANDIDATES, name in SMALL_CANDIDATES
        mark = (" (auto)" if big and thumb else f" (auto, above {TILE}x{TILE})" if big
                else f" (auto, up to {TILE}x{TILE})" if thumb else "")
        click.echo(f"{name}{mark}: {fname} sha256 {sha}")


@main.command("fit")
@click.argument("data", nargs=-1, required=True, type=str)
@click.option("-o", "--output", required=True, metavar="MODEL.npz", help="the model file to write")
@click.option("--from", "base", default=None, metavar="MODEL",
              help="model to start from: a name (see `ardmzip models`) or a model file [default: the default model]")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="training time budget, summed over resumes [default: 30]")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="train this many steps instead of --minutes")
@click.option("--run", "run_dir", default=None, metavar="DIR",
              help="checkpoint folder; the same command continues it [default: MODEL.npz.run]")
@click.option("--val", multiple=True, metavar="PATH", help="held-out pictures whose bpsp the run logs")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-4, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, help="CPU threads (0: torch's default)")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--bf16/--no-bf16", default=None,
              help="train in bfloat16 products (default: where the CPU or GPU has them in hardware)")
@click.option("-f", "--force", is_flag=True, help="overwrite MODEL.npz")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
def fit_cmd(data, output, base, minutes, steps, run_dir, val, lr, device, threads, seed, bf16, force, quiet):
    """Fit a model to DATA (folders, .npz/.npy arrays of one kind of picture): fine-tune a
    shipped model and write MODEL.npz, for `compress --model MODEL.npz`. Resumable."""
    from .fit import fit
    rep = Reporter(0 if quiet else 1)
    with rep.each(output):
        r = fit(list(data), output, base=base, minutes=minutes, steps=steps,
                run_dir=run_dir, lr=lr, device=device, threads=threads, seed=seed, val=list(val),
                force=force, progress=False if quiet else None, bf16=bf16)
        rep.say(f"{r.path}: model {r.path.stem} sha256 {r.sha256[:16]}, {r.steps} steps, "
                f"{r.seconds / 60:.1f} min of training; use: ardmzip compress ... --model {r.path}")
    sys.exit(rep.exit_code)


@main.command("train", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                         "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train_cmd(args):
    """Train an ARDM (see `ardmzip train --help`); same as python -m ardmzip.train."""
    from .train import main as train_main
    train_main(list(args))


@main.command("export", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                          "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def export_cmd(args):
    """Export a training run to a shipped integer model (python -m ardmzip.weights export)."""
    from .weights import main as weights_main
    weights_main(["export", *args])


if __name__ == "__main__":
    main()

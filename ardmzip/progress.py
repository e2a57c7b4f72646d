"""Progress bars on stderr (tqdm): one per picture, over the network steps of all its planes
with an ETA, and one per archive, over its images.

A picture is coded in passes: one step loop per plane that needs the network (colour, and
alpha when it varies; a small palette picture may take a second pass in another order).
Each step costs about one trunk call over the whole picture, so steps are the unit. The
codec's step loops go through ``step_bar(steps, progress, desc)``, where ``progress`` is

- False: nothing;
- True: a bar per pass, as the API always showed;
- a ``PictureBar``: the passes of one picture share it, ``total`` = passes x steps.

    with PictureBar("photo.png") as bar:
        bar.expect(coded_planes(picture.pixels), steps)
        compress_picture(picture, steps, progress=bar)
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterable, Iterator, TextIO

import numpy as np
from tqdm import tqdm

from . import constraint, container

FALLBACK_SIZE = (80, 24)     # columns, rows for a terminal that reports none (a new pseudo-terminal)


def _screen(file: TextIO) -> dict:
    """tqdm's size arguments: follow the terminal, unless it reports a 0 x 0 size, where tqdm
    would draw nothing at all (an empty bar, and every row "hidden"): then FALLBACK_SIZE."""
    try:
        size = os.get_terminal_size(file.fileno())
    except (AttributeError, OSError, ValueError):
        return {"dynamic_ncols": True}
    if size.columns and size.lines:
        return {"dynamic_ncols": True}
    return {"ncols": size.columns or FALLBACK_SIZE[0], "nrows": size.lines or FALLBACK_SIZE[1]}


def bar(total: int | None, desc: str, unit: str, enabled: bool = True, file: TextIO | None = None) -> tqdm:
    """A tqdm bar on stderr that clears itself when done (the summary line follows it)."""
    file = file if file is not None else sys.stderr
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=file, leave=False,
                **(_screen(file) if enabled else {}))


class PictureBar:
    """One picture's progress over the steps of every pass; a context manager."""

    def __init__(self, desc: str = "", file: TextIO | None = None) -> None:
        self.desc, self.file = desc, file
        self.bar: tqdm | None = None      # drawn once the total is known
        self.expected = 1                 # passes expected (``expect``)
        self.started = 0                  # passes begun

    def expect(self, passes: int, steps: int) -> None:
        """Set the estimate: ``passes`` step loops of ``steps`` steps (0 passes: nothing to run)."""
        self.expected = passes
        self._total(max(0, passes - self.started) * steps)

    def loop(self, steps: Iterable[int]) -> Iterator[int]:
        """Yield one pass's steps, counting each when the caller asks for the next one."""
        steps = list(steps)
        self.started += 1
        self._total(len(steps) * (1 + max(0, self.expected - self.started)))
        for step in steps:
            yield step
            self.bar.update(1)

    def _total(self, remaining: int) -> None:
        """Total = steps done (whole passes and the current one's) + ``remaining``."""
        if self.bar is None:
            if remaining:                 # nothing to count (constant planes): no bar at all
                self.bar = bar(remaining, self.desc, "step", file=self.file)
            return
        self.bar.total = self.bar.n + remaining
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "PictureBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def step_bar(steps: range, progress: "bool | PictureBar", desc: str) -> Iterable[int]:
    """The codec's step loop: ``steps`` counted on ``progress`` (see the module docstring)."""
    if isinstance(progress, PictureBar):
        return progress.loop(steps)
    return tqdm(steps, desc=desc, unit="step", disable=not progress, leave=False,
                **(_screen(sys.stderr) if progress else {}))


def coded_planes(pixels: np.ndarray) -> int:
    """How many planes of an (H, W, C) picture need the network: colour, and alpha (C = 2
    or 4), each unless it is one constant colour."""
    c = pixels.shape[2]
    planes = [pixels[..., :3] if c >= 3 else pixels[..., 0]] + ([pixels[..., -1]] if c in (2, 4) else [])
    return sum(bool((p != p[0, 0]).any()) for p in planes)


def decoded_planes(data: bytes) -> tuple[int, int]:
    """(planes that need the network, steps) of an .ardm file, from its header and the first
    byte of each stream (constant and stored planes are decoded without it); (0, 0) if it does
    not parse."""
    try:
        header, streams = container.unpack(data)
    except Exception:  # noqa: BLE001 - only an estimate: the decoder reports the real error
        return 0, 0
    if header.version < 2:                      # no constraint bytes; a 1-byte alpha was constant
        return sum(len(s) != 1 or i == 0 for i, s in enumerate(streams)), header.steps
    if header.mode in container.SIXTEEN_BIT_MODES:  # the last stream holds the low bytes: no network
        streams = streams[:-1]
    return sum(bool(s) and s[0] not in (constraint.CONSTANT, constraint.STORED) for s in streams), header.steps


@contextlib.contextmanager
def for_picture(progress: "bool | PictureBar", desc: str,
                estimate: Callable[[], tuple[int, int]]) -> Iterator["bool | PictureBar"]:
    """What to hand the codec as ``progress`` for one picture: the caller's PictureBar, or a
    new one (labelled ``desc``, closed at the end) for True, told ``estimate()`` = (passes,
    steps); False stays False and ``estimate`` is not called."""
    if not progress:
        yield False
        return
    with contextlib.ExitStack() as stack:
        bar = progress if isinstance(progress, PictureBar) else stack.enter_context(PictureBar(desc))
        bar.expect(*estimate())
        yield bar

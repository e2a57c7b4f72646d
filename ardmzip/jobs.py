"""How the archive's work runs: batches of pictures, mapped in order over this process, a pool
of worker processes, or a cluster (``cluster.RayMap``), never more than a few batches ahead.

    for tag, result in _ordered_map(fn, ((tag, args) for ...), jobs): ...   # jobs: 1, N, or a mapper

``_batches`` groups pictures so that those of one size share network calls; ``_ordered_map``
runs ``fn`` on each batch (``_in_order`` keeps a bounded window of started tasks and takes
their results in input order, whatever runs them); ``_read_ahead`` overlaps reading the next
images with coding in a single process. An error while reading the inputs arrives after the
work read before it, so finished members still land.

Separate from archive.py because none of it knows the archive's format: the functions the
jobs run (``archive._compress_job``, ``archive._decompress_job``) stay there.
"""
from __future__ import annotations

import contextlib
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from . import codec

# Worker processes, or a mapper that runs archive.py's jobs elsewhere (``_ordered_map``).
Jobs = int | Callable[[Callable, Iterable[tuple[Any, tuple]]], Iterator[tuple[Any, Any]]]


def _batches(items: Iterable[Any], size: Callable[[Any], int], device: str = "cpu") -> Iterator[list[Any]]:
    """Consecutive items, about codec.batch_subpixels(device) subpixels at a time (at least one), so
    that pictures of one size share network calls; reading stays one batch ahead. An error
    while reading comes after the batch read before it, so finished work still lands."""
    batch: list[Any] = []
    total, limit = 0, codec.batch_subpixels(device)
    source = iter(items)
    while True:
        try:
            item = next(source)
        except StopIteration:
            break
        except Exception:
            if batch:
                yield batch
            raise
        if batch and total + size(item) > limit:
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size(item)
    if batch:
        yield batch


def _ordered_map(fn: Callable, tasks: Iterable[tuple[Any, tuple]], jobs: Jobs) -> Iterator[tuple[Any, Any]]:
    """(tag, fn(*args)) for each (tag, args) in ``tasks``, in order. With jobs > 1 in a pool
    of spawned worker processes (one torch thread each), at most 2 * jobs tasks ahead, so
    memory stays bounded; ``fn`` must be a module-level function. ``jobs`` may instead be a
    mapper with this contract, ``jobs(fn, tasks)`` (cluster.RayMap: the tasks on a Ray cluster)."""
    if callable(jobs):
        yield from jobs(fn, tasks)
        return
    if jobs <= 1:
        for tag, args in tasks:
            yield tag, fn(*args)
        return
    import concurrent.futures
    import multiprocessing
    pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=_worker_init)
    try:
        yield from _in_order(tasks, lambda args: pool.submit(fn, *args), lambda future: future.result(), 2 * jobs)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _in_order(tasks: Iterable[tuple[Any, tuple]], start: Callable[[tuple], Any], finish: Callable[[Any], Any],
              ahead: int, drop: Callable[[Any], Any] | None = None) -> Iterator[tuple[Any, Any]]:
    """(tag, finish(start(args))) for each (tag, args) in ``tasks``, in order, each task started
    (``start``: a pool's future, a Ray reference) at most ``ahead`` tasks before its result is
    taken (``finish``), so memory stays bounded. A task that fails raises from ``finish``:
    nothing after it is yielded; an error while reading the inputs comes after the work read
    before it has landed. Tasks still running when it ends (an error, or the caller stopped)
    are given to ``drop`` (cancel them)."""
    pending: deque = deque()
    inputs = iter(tasks)
    try:
        while True:
            try:
                tag, args = next(inputs)
            except StopIteration:
                break
            except Exception:             # a failing input still lets the work before it land
                while pending:
                    done, handle = pending.popleft()
                    yield done, finish(handle)
                raise
            pending.append((tag, start(args)))
            if len(pending) >= ahead:
                done, handle = pending.popleft()
                yield done, finish(handle)
        while pending:
            done, handle = pending.popleft()
            yield done, finish(handle)
    finally:
        if drop is not None:
            for _, handle in pending:
                with contextlib.suppress(Exception):
                    drop(handle)


def _worker_init() -> None:
    import torch

    from .runtime import keep_freed_memory
    torch.set_num_threads(1)        # one process per core; threads would only contend
    keep_freed_memory()             # our own process: fewer page faults (runtime.py)


def _read_ahead(items: Iterable[Any], depth: int = 64) -> Iterator[Any]:
    """``items``, read by a background thread up to ``depth`` ahead, so that decoding the
    next images overlaps the network (which releases the GIL). An error while reading
    arrives in order, after the items read before it."""
    import queue
    import threading
    box: queue.Queue = queue.Queue(depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((done, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, in order
            box.put((done, e))

    reader = threading.Thread(target=produce, name="ardmzip-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item, error = box.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()

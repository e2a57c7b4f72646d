"""Archive work on a Ray cluster: an ordered map over Ray tasks, for ``jobs=`` in archive.py.

    from ardmzip import archive, cluster
    with cluster.connect("auto") as on_ray:      # None: RAY_ADDRESS, a running local cluster, else a new one
        archive.write_archive("photos/", "photos.ardm", jobs=on_ray)      # same bytes as jobs=1

Ray is the engine: it places the tasks, retries those whose worker or node died, and moves
the data; this module only keeps them in order and bounded. ``RayMap`` has the contract of
``jobs._ordered_map``: ``(tag, fn(*args))`` for each ``(tag, args)`` in order, at most
``in_flight`` tasks ahead (2 per CPU of the cluster), and an error while reading the inputs
arrives after the work read before it. A task is one batch of an archive (``jobs._batches``).

What travels: a batch's pictures (or, to decode, its members' coded bytes) go to a worker with
the small arguments (steps, seed, a model name); the coded members (or decoded pictures) come
back. An argument that is the same object from one task to the next (a model's weights
carried as bytes) goes to Ray's object store once and travels by reference. The driver (the
process that called) reads the inputs and writes the archive, so resume, the .partial file and
the atomic rename work as without Ray; workers need no access to either, only the same ardmzip
and models (a worker whose ardmzip release or format versions differ refuses the task).
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from typing import Any, Callable, Iterable, Iterator

from .errors import ArdmzipError

__all__ = ["ClusterError", "RayMap", "connect", "RETRIES"]

RETRIES = 3              # times Ray reruns a task whose worker process or node died
CONNECT_TIMEOUT_S = 10   # for an ADDRESS to accept a connection and answer, before Ray is given it


class ClusterError(ArdmzipError):
    """Ray is missing, the cluster cannot be reached, or a batch failed more often than Ray retries it."""

    exit_code = 1


def code_id() -> str:
    """ardmzip's release and the format versions it writes: a worker must write what the
    driver would, or a distributed archive could differ from the one-machine archive. (Not a
    hash of the sources: a working tree edited while a run starts its workers would fail.)"""
    from . import __version__, archive, container
    return f"{__version__} (format {container.FORMAT_VERSION}, archive {archive.VERSION})"


def _task(fn: Callable, driver_code: str, *args: Any) -> Any:
    """What a Ray worker runs: ``fn(*args)`` on one torch thread (one task per CPU)."""
    if driver_code != code_id():
        raise ClusterError(f"a Ray worker runs ardmzip {code_id()}, the driver {driver_code}: "
                           f"install the same ardmzip on every node")
    import torch
    torch.set_num_threads(1)
    return fn(*args)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install 'ardmzip[ray]'") from None
    return ray


def _one_line(error: BaseException) -> str:
    lines = [s.strip() for s in str(error).splitlines() if s.strip()]
    return lines[0] if lines else type(error).__name__


class RayMap:
    """An ordered map over Ray tasks (``jobs._ordered_map``'s contract); see the module docstring."""

    def __init__(self, ray: Any, retries: int = RETRIES, in_flight: int | None = None) -> None:
        self.ray = ray
        self.retries = retries
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        self.in_flight = in_flight or 2 * self.cpus        # enough to keep every CPU busy, no more in the store
        # retry_exceptions=False: an error of fn itself (a bad picture) is final; only a dead worker is retried.
        self.remote = ray.remote(_task).options(num_cpus=1, max_retries=retries, retry_exceptions=False)

    def __call__(self, fn: Callable, tasks: Iterable[tuple[Any, tuple]]) -> Iterator[tuple[Any, Any]]:
        from .jobs import _in_order
        shared = _SharedArgs(self.ray)
        code = code_id()
        # An error, ^C, or the caller stopped: the tasks still in flight are cancelled.
        yield from _in_order(tasks, lambda args: self.remote.remote(fn, code, *shared.args(args)), self._result,
                             self.in_flight, self.ray.cancel)

    def _result(self, ref: Any) -> Any:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as e:     # fn raised: that error, as without Ray
            if isinstance(e.cause, BaseException):
                raise e.cause from None
            raise ClusterError(f"a Ray task failed: {_one_line(e)}") from None
        except exceptions.RayError as e:         # its worker or node died more than `retries` times, ...
            raise ClusterError(f"Ray could not finish a batch (tried {self.retries + 1} times): "
                               f"{type(e).__name__}: {_one_line(e)}") from None

    def describe(self) -> str:
        return f"{self.cpus} CPUs on {self.nodes} node{'s' if self.nodes != 1 else ''}"


class _SharedArgs:
    """Arguments that are the same object as the previous task's (model weights carried as bytes,
    say) go to the object store once; Ray hands a task's top-level references over as values."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self.previous: tuple = ()
        self.refs: dict[int, tuple[Any, Any]] = {}      # position -> (object, its reference)

    def args(self, args: tuple) -> tuple:
        out = list(args)
        for i, a in enumerate(args):
            if a is None or isinstance(a, (bool, int, float, str)) or i >= len(self.previous) \
                    or a is not self.previous[i]:
                continue
            if i not in self.refs or self.refs[i][0] is not a:
                self.refs[i] = (a, self.ray.put(a))
            out[i] = self.refs[i][1]
        self.previous = args
        return tuple(out)


# An HTTP/2 client's first bytes (the preface and an empty SETTINGS frame); a gRPC server
# (Ray's GCS, the Ray client server) answers with a SETTINGS frame (type 4) at once.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes((0, 0, 0, 4, 0, 0, 0, 0, 0))


def _check_reachable(address: str | None) -> None:
    """An ADDRESS (HOST:PORT or ray://HOST:PORT) where nothing listens, or something that
    does not speak gRPC, fails here in seconds: Ray itself would retry for a minute or more
    (for ever, with a server that hangs up)."""
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"bad Ray address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S) as s:
            s.settimeout(CONNECT_TIMEOUT_S)
            s.sendall(_HTTP2_HELLO)
            head = b""
            while len(head) < 9 and (chunk := s.recv(9 - len(head))):
                head += chunk
    except OSError as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None
    if len(head) < 9 or head[3] != 4:
        raise ClusterError(f"no Ray cluster at {address}: what answers there does not speak gRPC")


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 on /dev/null: Ray's C++ core writes its warnings there while it
    connects (a retry a second for a cluster that does not answer), and the processes it
    starts inherit it; Ray keeps its own logs (/tmp/ray/session_latest/logs), and a failure
    becomes one ClusterError line."""
    try:
        saved = os.dup(2)
    except OSError:                              # no descriptor 2 to protect
        yield
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def connect(address: str | None = None, retries: int = RETRIES, in_flight: int | None = None) -> Iterator[RayMap]:
    """A RayMap on the cluster at ``address`` (HOST:PORT, ray://HOST:PORT or "auto"; None:
    RAY_ADDRESS, else a cluster running on this machine, else a new local instance that ends
    with the block). If this process is already connected (``ray.init`` called), that one is used.
    Ray's own start-up and worker output stays in its log files, off the terminal."""
    ray = _import_ray()
    _check_reachable(address)
    started = False
    if not ray.is_initialized():
        try:
            with _stderr_silenced():
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError, ...: one line
            where = f" at {address}" if address else ""
            raise ClusterError(f"cannot start or reach a Ray cluster{where}: {_one_line(e)}") from None
        started = True
    try:
        yield RayMap(ray, retries, in_flight)
    finally:
        if started:
            ray.shutdown()

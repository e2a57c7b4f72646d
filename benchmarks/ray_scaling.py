"""Archives on Ray: images/s with 1 and 2 local Ray workers against one plain process.

    python -m benchmarks.ray_scaling ../shared/data/eval/cifar10_test_partial.npz --limit 300 \\
        --photos ../shared/data/eval/Unsplash30 --photo-limit 4 --workers 1,2

For each source (an .npz of images; a folder of photo crops) it writes the archive in one
process (``jobs=1``), then on a fresh local Ray instance with N CPUs (``ray.init(num_cpus=N)``,
``cluster.connect``) for each N in ``--workers``: compress, check the archive is byte-identical
to the one-process archive, then decode every member (``test_archive``). Ray's start-up is
timed apart; the coding times include starting its worker processes (a user waits for them
too). Markdown table to stdout, JSON with ``--out``.

How it scales to N machines. Start Ray on each (``ray start --head`` on one, ``ray start
--address HEAD:6379`` on the others), with the same ardmzip and models installed everywhere,
then run ``ardmzip compress BIG/ -o set.ardm --ray HEAD:6379`` on the head (or any node).
That process, the driver, reads the inputs, cuts them into batches (about 131K subpixels:
~42 CIFAR images, or one photo), hands at most 2 batches per cluster CPU to Ray, and writes
the members in order to set.ardm.partial, so --resume, the .partial and the atomic rename
work as on one machine. Ray's head places the tasks, moves their data and reruns a batch
whose worker died. What travels: a batch's pictures to a worker (~130 KB raw), its coded
members back (~70 KB for CIFAR); so only the driver needs the inputs and the output, and
they live on the machine it runs on, or on shared storage (NFS, a bucket mounted on every
node) to start or resume the driver anywhere. Each batch costs seconds of CPU against
milliseconds of transfer, so throughput grows with the cluster's CPUs until the driver's
reading or its network link is the bound: a worker CPU codes about 8-10 CIFAR images/s
(3 KB each), some 30 KB/s of pixels, so 1,000 CPUs ask the driver for about 30 MB/s.
Ordered writing means a slow batch holds back the ones after it (at most 2 per CPU wait).
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ardmzip import archive, cluster

from .compare import load_array_file, load_sets
from .throughput import publish


def _timed_job(log: str, fn, *args):
    """``fn(*args)`` in a Ray worker, its start and end (wall clock, shared on one machine) logged."""
    t0 = time.time()
    result = fn(*args)
    with open(log, "a") as f:
        f.write(f"{t0} {time.time()}\n")
    return result


def _busy(log: str) -> float:
    """Seconds the workers spent in jobs, summed over the tasks in ``log``."""
    with open(log) as f:
        return sum(float(b) - float(a) for a, b in (line.split() for line in f))


def _time(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def _row(source: str, how: str, n: int, raw: int, size: int, start: float, enc: float, dec: float,
         busy: float | None = None) -> dict:
    return {"source": source, "how": how, "images": n, "raw_bytes": raw, "bytes": size, "bpsp": 8 * size / raw,
            "ray_start_s": start, "compress_s": enc, "decompress_s": dec, "compress_worker_busy_s": busy,
            "compress_img_s": n / enc, "decompress_img_s": n / dec}


def _check(results: list) -> None:
    errors = [e for _, e in results if e is not None]
    if errors:
        raise SystemExit(f"decoding failed: {errors[0]}")


def run_source(name: str, src: str, n: int, raw: int, workers: list[int], steps: int | None, tmp: str) -> list[dict]:
    import ray
    plain = os.path.join(tmp, f"{name}-plain.ardm")
    torch.set_num_threads(1)                              # as each Ray worker: one thread a CPU
    enc, _ = _time(lambda: archive.write_archive(src, plain, steps))
    dec, results = _time(lambda: archive.test_archive(plain))
    _check(results)
    rows = [_row(name, "1 process, 1 thread", n, raw, os.path.getsize(plain), 0.0, enc, dec)]
    for w in workers:
        out = os.path.join(tmp, f"{name}-ray{w}.ardm")
        start, _ = _time(lambda: ray.init(num_cpus=w, logging_level=logging.ERROR, log_to_driver=False))
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])      # _timed_job travels by value
        log = os.path.join(tmp, f"{name}-ray{w}.log")
        try:
            with cluster.connect() as on_ray:
                timed = lambda fn, tasks: on_ray(functools.partial(_timed_job, log, fn), tasks)  # noqa: E731
                enc, _ = _time(lambda: archive.write_archive(src, out, steps, jobs=timed))
                if Path(out).read_bytes() != Path(plain).read_bytes():
                    raise SystemExit(f"{name}: the archive made on Ray differs from the one-process archive")
                dec, results = _time(lambda: archive.test_archive(out, jobs=on_ray))
                _check(results)
        finally:
            ray.shutdown()
        rows.append(_row(name, f"Ray, {w} worker{'s' if w > 1 else ''}", n, raw, os.path.getsize(out), start, enc,
                         dec, _busy(log)))
        print(f"{name}: {rows[-1]['how']}: {rows[-1]['compress_img_s']:.3g} img/s", file=sys.stderr)
    return rows


def photo_crops(folder: str, limit: int, side: int, dst: str) -> tuple[int, int]:
    """The central ``side`` x ``side`` of the first ``limit`` photos, as PNGs in ``dst``."""
    images = [im.reshape(*im.shape[:2], -1) for im in next(iter(load_sets([folder], limit)[0].values()))]
    os.makedirs(dst)
    raw = 0
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        crop = np.ascontiguousarray(im[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2])
        Image.fromarray(crop if crop.shape[-1] > 1 else crop[..., 0]).save(os.path.join(dst, f"{i:03d}.png"))
        raw += crop.nbytes
    return len(images), raw


def _at_once(r: dict) -> str:
    """Worker seconds in jobs per second of compressing: how many batches ran at a time."""
    busy = r["compress_worker_busy_s"]
    return "" if busy is None else f"{busy / r['compress_s']:.2f}"


def table(rows: list[dict]) -> str:
    out = ["| source | how | images | bpsp | Ray start s | compress img/s | decompress img/s | speed-up (compress) "
           "| jobs running at once (compress) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    base = {}
    for r in rows:
        base.setdefault(r["source"], r["compress_img_s"])
        out.append(f"| {r['source']} | {r['how']} | {r['images']} | {r['bpsp']:.3f} | {r['ray_start_s']:.1f} | "
                   f"{r['compress_img_s']:.3g} | {r['decompress_img_s']:.3g} | "
                   f"{r['compress_img_s'] / base[r['source']]:.2f}x | {_at_once(r)} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ray_scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", help=".npz/.npy of uint8 images (N, H, W, C)")
    p.add_argument("--limit", type=int, default=300, help="images of the array source")
    p.add_argument("--photos", default=None, help="a folder of photos: their central crops are a second source")
    p.add_argument("--photo-limit", type=int, default=4)
    p.add_argument("--photo-side", type=int, default=256, help="side of the central crop")
    p.add_argument("--workers", default="1,2", help="comma-separated Ray CPU counts")
    p.add_argument("--steps", type=int, default=None, help="steps per plane (default: the CLI's default)")
    p.add_argument("--out", default=None, help="folder for ray_scaling.md / ray_scaling.json")
    a = p.parse_args(argv)
    try:
        import ray
    except ImportError:
        raise SystemExit("needs Ray: pip install -e '.[ray]'") from None
    workers = [int(w) for w in a.workers.split(",")]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        if a.source:
            images = load_array_file(a.source, a.limit)
            src = os.path.join(tmp, "images.npz")
            np.savez(src, images=np.stack(images))
            rows += run_source(Path(a.source).stem, src, len(images), sum(im.nbytes for im in images), workers,
                               a.steps, tmp)
        if a.photos:
            n, raw = photo_crops(a.photos, a.photo_limit, a.photo_side, os.path.join(tmp, "photos"))
            rows += run_source(f"{Path(a.photos).name} {a.photo_side}px crops", os.path.join(tmp, "photos"), n, raw,
                               workers, a.steps, tmp)
    publish(rows, table(rows), a.out, "ray_scaling", sys.argv[1:] if argv is None else argv, ray=ray.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dataset throughput: images/s and MB/s of raw pixels through ardmzip archives.

    python -m benchmarks.throughput ../shared/data/eval/cifar10_test_partial.npz --limit 200 --jobs 1,2
    python -m benchmarks.throughput ../shared/data/eval/McMaster --limit 4 --jobs 2
    python -m benchmarks.throughput cifar.npz --limit 10000 --jobs 1 --device cuda   # a lent GPU

Compresses the images into one archive and extracts it back (``archive.write_archive`` /
``extract_all``: ``jobs`` worker processes with one torch thread each, or one process with
``--threads`` torch threads) to an .npz for an array or a folder of PNGs for a folder of
images, checks it bit-exact, and times both; then times lossless
WebP and JPEG-XL on the same images in one process for comparison. Writes a markdown
table (and JSON with ``--out``). With ``--device cuda`` the network runs on the GPU, whose
calls take codec.GPU_BATCH_FACTOR times as many pictures (the entropy coder stays on the CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ardmzip import archive
from ardmzip.runtime import keep_freed_memory

from .codecs import make_codec
from .compare import _git_revision, load_array_file, load_sets


def _row(name: str, n: int, raw: int, size: int, enc: float, dec: float) -> dict:
    return {"codec": name, "images": n, "raw_bytes": raw, "bytes": size, "bpsp": 8 * size / raw,
            "compress_s": enc, "decompress_s": dec, "compress_img_s": n / enc, "decompress_img_s": n / dec,
            "compress_MB_s": raw / enc / 1e6, "decompress_MB_s": raw / dec / 1e6}


def _same(back: str, images: list[np.ndarray], as_array: bool) -> bool:
    if as_array:
        with np.load(back) as z:
            return np.array_equal(z["images"], np.stack(images))
    return all(np.array_equal(np.asarray(Image.open(os.path.join(back, f"{i:05d}.png"))).reshape(im.shape), im)
               for i, im in enumerate(images))


def warm_up(images: list[np.ndarray], threads: int, device: str = "cpu") -> None:
    """What a long dataset job pays once, before the timed runs: the model loaded and its
    oneDNN weights packed, the compiled kernels started (jit.start; numba's ~0.9 s), an
    archive of a few of the images written and read back in this process."""
    from ardmzip import jit
    jit.start()
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "warm.npz"), os.path.join(tmp, "warm.ardm")
        np.savez(src, images=np.stack([im.reshape(*im.shape[:2], -1) for im in images[:4]]))
        archive.write_archive(src, out, device=device)
        list(archive.extract_all(out, os.path.join(tmp, "back.npz"), device=device))


def run(images: list[np.ndarray], as_array: bool, jobs_list: list[int], threads: int,
        references: list[str], device: str = "cpu") -> list[dict]:
    rows = []
    raw = sum(im.nbytes for im in images)
    with tempfile.TemporaryDirectory() as tmp:
        if as_array:
            src = os.path.join(tmp, "images.npz")
            np.savez(src, images=np.stack(images))
        else:
            src = os.path.join(tmp, "images")
            os.mkdir(src)
            for i, im in enumerate(images):
                Image.fromarray(im if im.shape[-1] > 1 else im[..., 0]).save(os.path.join(src, f"{i:05d}.png"))
        for jobs in jobs_list:
            out, back = os.path.join(tmp, f"a{jobs}.ardm"), os.path.join(tmp, f"b{jobs}" + (".npz" if as_array else ""))
            if jobs == 1:
                torch.set_num_threads(threads)
            t0 = time.perf_counter()
            archive.write_archive(src, out, jobs=jobs, device=device)
            enc = time.perf_counter() - t0
            t0 = time.perf_counter()
            errors = [e for _, e in archive.extract_all(out, back, jobs=jobs, device=device) if e is not None]
            dec = time.perf_counter() - t0
            if errors or not _same(back, images, as_array):
                raise SystemExit(f"ardmzip round trip failed ({errors[:1]})")
            label = f"ardmzip archive, {jobs} process{'es' if jobs > 1 else ''}" + \
                (" x 1 thread" if jobs > 1 else f" x {threads} thread{'s' if threads > 1 else ''}") + \
                (f" @{device}" if device != "cpu" else "")
            rows.append(_row(label, len(images), raw, os.path.getsize(out), enc, dec))
    for key in references:
        codec = make_codec(key)
        ok, why = codec.available()
        if not ok:
            print(f"note: skipping {key}: {why}", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        blobs = [codec.encode(im) for im in images]
        enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        decoded = [codec.decode(b) for b in blobs]
        dec = time.perf_counter() - t0
        if not all(np.array_equal(d.reshape(im.shape), im) for d, im in zip(decoded, images)):
            raise SystemExit(f"{key} round trip failed")
        rows.append(_row(codec.name, len(images), raw, sum(map(len, blobs)), enc, dec))
    return rows


def table(rows: list[dict]) -> str:
    out = ["| codec | images | bpsp | compress img/s | compress MB/s | decompress img/s | decompress MB/s |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['codec']} | {r['images']} | {r['bpsp']:.3f} | {r['compress_img_s']:.3g} | "
                   f"{r['compress_MB_s']:.3g} | {r['decompress_img_s']:.3g} | {r['decompress_MB_s']:.3g} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()       # the process settings of the ardmzip command (and its workers)
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help=".npz/.npy of uint8 images (N, H, W, C), or a folder of images")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--jobs", default="1,2", help="comma-separated worker counts to time")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the 1-process run")
    p.add_argument("--references", default="webp,jxl7")
    p.add_argument("--device", default="cpu", help="ardmzip's network on cpu or cuda (a lent GPU: --jobs 1)")
    p.add_argument("--out", default=None, help="folder for throughput.md / throughput.json")
    p.add_argument("--warm-up", action="store_true",
                   help="time a warm process (the steady rate of a long job): see warm_up; worker processes (--jobs > 1) still start cold")
    a = p.parse_args(argv)
    as_array = not os.path.isdir(a.source)
    if as_array:
        images = load_array_file(a.source, a.limit)
    else:
        images = [im.reshape(*im.shape[:2], -1) for im in next(iter(load_sets([a.source], a.limit)[0].values()))]
    if a.warm_up:
        warm_up(images, a.threads, a.device)
    rows = run(images, as_array, [int(j) for j in a.jobs.split(",")], a.threads,
               [k for k in a.references.split(",") if k], a.device)
    publish(rows, table(rows), a.out, "throughput", sys.argv[1:] if argv is None else argv, warm_up=a.warm_up)
    return 0


def publish(rows: list[dict], table_md: str, out: str | None, stem: str, argv: list[str], **extra) -> None:
    """Print the table and what produced it; with ``out``, also write OUT/STEM.md and STEM.json
    (the throughput and Ray benchmarks' reports)."""
    env = {"date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "torch": torch.__version__, **extra, "git_revision": _git_revision(), "argv": argv}
    md = f"{table_md}\n\n{json.dumps(env)}\n"
    print(md)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{stem}.md").write_text(md)
        (Path(out) / f"{stem}.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1))


if __name__ == "__main__":
    sys.exit(main())

"""Levels timed against each other: is each level slower than the one below, at every size?

    python -m benchmarks.levels PHOTO.png --cifar cifar10_test_partial.npz --rounds 5 --out DIR
    python -m benchmarks.levels PHOTO.png --steps 4,6,8,10,12 --sizes 128,photo   # any step budgets

Neighbouring levels differ by 10-30% of work, less than a 2-core VM's speed drifts within
minutes, so one timing per level (``benchmarks.compare``) cannot show them in order. Here
everything runs in one warm process (model loaded, kernels started, every picture shape
coded once before the clock starts) and each round visits the levels in turn, upwards in
even rounds and downwards in odd ones: neighbours are timed seconds apart, and a drift
favours neither side of a pair. For each pair of neighbours the report gives the per-round
ratios of their times (higher level / lower level); a pair is *in order* when the median
ratio is above 1, and *always* when every round's is.

Sizes (``--sizes``): ``cifar`` (the first 64 images of ``--cifar``, coded as one batch, as
archives do), ``N`` (the photo's central N x N crop), ``photo`` (the whole photo) and
``double`` (the photo beside its mirror image: twice the pixels, for 1 MP from a 0.5 MP
photo). It also reports CPU time over wall time per call (``time.process_time`` counts every
thread of the process): about 2 where both cores are busy. Every round trip is checked exact.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ardmzip import codec, jit
from ardmzip.imageio import picture_from_array

from .compare import environment, load_array_file


def subjects(photo: str, sizes: list[str], cifar: str | None) -> list[tuple[str, list[np.ndarray]]]:
    """(name, images) for each size; one image is coded as a file, several as one batch."""
    image = np.asarray(Image.open(photo).convert("RGB"))
    out = []
    for size in sizes:
        if size == "cifar":
            if cifar is None:
                raise SystemExit("--sizes cifar needs --cifar FILE")
            thumbnails = load_array_file(cifar, 64)
            out.append((f"cifar x{len(thumbnails)}", thumbnails))
        elif size == "photo":
            out.append((f"photo {image.shape[1]}x{image.shape[0]}", [image]))
        elif size == "double":
            double = np.ascontiguousarray(np.concatenate([image, image[:, ::-1]], axis=1))
            out.append((f"double {double.shape[1]}x{double.shape[0]}", [double]))
        else:
            n = int(size)
            if n > min(image.shape[:2]):
                raise SystemExit(f"--sizes {n}: larger than the photo ({image.shape[1]}x{image.shape[0]})")
            y, x = (image.shape[0] - n) // 2, (image.shape[1] - n) // 2
            out.append((f"crop {n}x{n}", [np.ascontiguousarray(image[y:y + n, x:x + n])]))
    return out


def _coder(images: list[np.ndarray], steps: int):
    """(compress, decompress, check) for one image (the public API) or a batch."""
    if len(images) == 1:
        return (lambda: codec.compress(images[0], steps)), codec.decompress, \
            (lambda back: np.array_equal(np.asarray(back).reshape(images[0].shape), images[0]))
    pictures = [picture_from_array(im) for im in images]
    return (lambda: codec.compress_pictures(pictures, steps)), codec.decompress_pictures, \
        (lambda back: all(np.array_equal(np.asarray(b.pixels).reshape(im.shape), im) for b, im in zip(back, images)))


def _timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def measure(name: str, images: list[np.ndarray], steps: list[int], rounds: int) -> dict:
    """Every step budget's compress and decompress times on one subject, ``rounds`` times."""
    coders = {k: _coder(images, k) for k in steps}
    for k in (steps[0], steps[-1]):          # both stage shapes (one level, pyramid) seen once, untimed
        compress, decompress, _ = coders[k]
        decompress(compress())
    times = {k: {"compress": [], "decompress": [], "compress_cpu": [], "decompress_cpu": []} for k in steps}
    size = {}
    for r in range(rounds):
        for k in (steps if r % 2 == 0 else steps[::-1]):
            compress, decompress, exact = coders[k]
            data, t_c, cpu_c = _timed(compress)
            back, t_d, cpu_d = _timed(decompress, data)
            if not exact(back):
                raise SystemExit(f"{name}, {k} steps: the round trip is not exact")
            size[k] = sum(map(len, data)) if isinstance(data, list) else len(data)
            for key, v in (("compress", t_c), ("decompress", t_d), ("compress_cpu", cpu_c), ("decompress_cpu", cpu_d)):
                times[k][key].append(v)
        print(f"  {name}: round {r + 1}/{rounds} done", flush=True)
    subpixels = sum(im.size for im in images)
    return {"name": name, "images": len(images), "subpixels": subpixels, "rounds": rounds,
            "steps": {k: {"bpsp": 8 * size[k] / subpixels, **times[k]} for k in steps}}


def pairs(result: dict, steps: list[int], key: str) -> list[dict]:
    """Neighbouring budgets' per-round time ratios (higher / lower)."""
    out = []
    for lo, hi in zip(steps, steps[1:]):
        ratios = [b / a for a, b in zip(result["steps"][lo][key], result["steps"][hi][key])]
        out.append({"lower": lo, "higher": hi, "median": statistics.median(ratios), "min": min(ratios),
                    "max": max(ratios), "in_order": statistics.median(ratios) > 1, "always": min(ratios) > 1})
    return out


def report(result: dict, steps: list[int], names: dict[int, str]) -> str:
    lines = [f"### {result['name']} ({result['images']} image(s), {result['subpixels'] / 3e6:.2f} MP, "
             f"{result['rounds']} rounds)", "",
             "| level | steps | bpsp | compress s (median) | decompress s (median) | CPU / wall, compress | CPU / wall, decompress |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for k in steps:
        s = result["steps"][k]
        cores = [statistics.median(c / w for c, w in zip(s[f"{key}_cpu"], s[key])) for key in ("compress", "decompress")]
        lines.append(f"| {names.get(k, '')} | {k} | {s['bpsp']:.3f} | {statistics.median(s['compress']):.3f} | "
                     f"{statistics.median(s['decompress']):.3f} | {cores[0]:.2f} | {cores[1]:.2f} |")
    lines += ["", "| pair (steps) | compress: higher / lower, median (min-max) | decompress |", "|---|---|---|"]
    for c, d in zip(pairs(result, steps, "compress"), pairs(result, steps, "decompress")):
        cell = lambda p: (f"{p['median']:.3f} ({p['min']:.3f}-{p['max']:.3f})"
                          + ("" if p["always"] else " **not always**" if p["in_order"] else " **INVERTED**"))
        lines.append(f"| {c['lower']} -> {c['higher']} | {cell(c)} | {cell(d)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.levels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photo", help="a photo (its crops and the whole picture are the sizes)")
    p.add_argument("--cifar", help="an .npz/.npy of 32x32 images for the cifar size")
    p.add_argument("--sizes", default="cifar,128,256,photo,double", help="comma-separated (see above)")
    p.add_argument("--steps", help="step budgets to time (default: the CLI's levels, -1 .. -9)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--large-rounds", type=int, default=3, help="rounds for pictures of over 0.3 MP")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="folder for results.md and results.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    jit.start()
    steps = sorted({int(k) for k in a.steps.split(",")}) if a.steps else sorted(set(codec.LEVEL_STEPS.values()))
    names = {k: f"-{n}" for n, k in codec.LEVEL_STEPS.items()}
    results, text = [], [f"step budgets {steps}; levels {', '.join(f'-{n}: {k}' for n, k in codec.LEVEL_STEPS.items())}\n"]
    for name, images in subjects(a.photo, [s.strip() for s in a.sizes.split(",")], a.cifar):
        rounds = a.large_rounds if sum(im.size for im in images) > 0.9e6 else a.rounds
        result = measure(name, images, steps, rounds)
        results.append(result)
        text.append(report(result, steps, names))
        print(text[-1], flush=True)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text("\n".join(text))
        (out / "results.json").write_text(json.dumps({"environment": environment(), "threads": a.threads,
                                                      "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""In-process A/B of two ardmzip checkouts: the Python API, calls alternating, bytes compared.

    git worktree add -f /tmp/old REV
    python -m benchmarks.ab_api --old /tmp/old PHOTO.png --rounds 10
    python -m benchmarks.ab_api --old /tmp/old CIFAR.npz --limit 64 --rounds 10     # a batch of thumbnails

``benchmarks.ab`` times whole commands, where torch's ~2 s import and numba's start are in
every figure and a 2-core VM's drift (20-30% within minutes) swamps a 5% change in a few
pairs. Here both checkouts are imported into one process (the old one under another package
name), warmed up (model loaded, kernels started: ``jit.start``), and each round times the old
and the new compress and decompress back to back, in alternating order; the report gives the
median and range of the per-round ratios new / old. Every round checks that both wrote the
same bytes and decoded the input exactly.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def load_checkout(root: str, name: str):
    """The ardmzip package of the checkout at ``root``, imported as ``name``."""
    spec = importlib.util.spec_from_file_location(name, str(Path(root) / "ardmzip" / "__init__.py"),
                                                  submodule_search_locations=[str(Path(root) / "ardmzip")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _own_numba_cache(*roots: str) -> None:
    """Compile this run's kernels into a cache of its own. numba caches a kernel next to its
    source with the name of the module it was compiled in: a checkout imported here as
    ``ardmzip_new`` would leave kernels that a later plain ``import ardmzip`` of the same
    files loads and cannot resolve (ModuleNotFoundError: ardmzip_new)."""
    import hashlib
    import os
    key = hashlib.sha1("\0".join(str(Path(r).resolve()) for r in roots).encode()).hexdigest()[:12]
    os.environ["NUMBA_CACHE_DIR"] = str(Path.home() / ".cache" / "ardmzip-ab-api" / key)
    if "numba" in sys.modules:                       # (read at numba's import)
        sys.modules["numba"].core.config.reload_config()


def _coder(package, images: list[np.ndarray], steps: int | None):
    """(compress, decompress) of the package: one picture through its API, several as one batch."""
    if len(images) == 1:
        return (lambda: package.compress(images[0], steps)), package.decompress
    codec, io = sys.modules[package.__name__ + ".codec"], sys.modules[package.__name__ + ".imageio"]
    pictures = [io.picture_from_array(im) for im in images]
    return (lambda: codec.compress_pictures(pictures, steps)), codec.decompress_pictures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab_api", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="an image file, or an .npz/.npy of uint8 images coded as one batch")
    p.add_argument("--old", required=True, help="root of the other checkout (git worktree)")
    p.add_argument("--new", default=str(Path(__file__).resolve().parents[1]), help="default: this checkout")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--steps", type=int, default=None, help="K (default: the default level's)")
    p.add_argument("--limit", type=int, default=64, help="images of an array source")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    _own_numba_cache(a.old, a.new)
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]   # no import hook to /work
    torch.set_num_threads(a.threads)
    if a.source.endswith((".npz", ".npy")):
        from .compare import load_array_file
        images = load_array_file(a.source, a.limit)
    else:
        images = [np.asarray(Image.open(a.source).convert("RGB"))]
    sides = {}
    for side, root in (("old", a.old), ("new", a.new)):
        package = load_checkout(root, f"ardmzip_{side}")
        sys.modules[package.__name__ + ".jit"].start()
        compress, decompress = _coder(package, images, a.steps)
        decompress(compress())                                                # warm-up
        sides[side] = (compress, decompress)
    ratios: dict[str, list[float]] = {"compress": [], "decompress": []}
    for r in range(a.rounds):
        got = {}
        for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
            compress, decompress = sides[side]
            t = time.perf_counter()
            data = compress()
            t_c = time.perf_counter() - t
            t = time.perf_counter()
            back = decompress(data)
            got[side] = (t_c, time.perf_counter() - t, data, back)
        if got["old"][2] != got["new"][2]:
            raise SystemExit(f"round {r}: the two checkouts wrote different bytes")
        back = got["new"][3] if isinstance(got["new"][3], list) else [got["new"][3]]
        if not all(np.array_equal(np.asarray(getattr(b, "pixels", b)).reshape(im.shape), im) for b, im in zip(back, images)):
            raise SystemExit(f"round {r}: the round trip is not exact")
        for k, key in enumerate(ratios):
            ratios[key].append(got["new"][k] / got["old"][k])
        print(f"round {r}: compress old {got['old'][0]:.3f} new {got['new'][0]:.3f} s, "
              f"decompress old {got['old'][1]:.3f} new {got['new'][1]:.3f} s", flush=True)
    for key, v in ratios.items():
        print(f"{key}: new / old median {statistics.median(v):.3f} (min {min(v):.3f}, max {max(v):.3f}, {len(v)} rounds)")
    print("same bytes and exact round trips in every round")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

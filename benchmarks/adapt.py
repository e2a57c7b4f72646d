"""Per-picture adaptation (``--adapt``, adapt.py) measured: each picture compressed plainly
and adapted in one process, sizes, times, and a check that the adapted file decodes.

    python -m benchmarks.adapt ../shared/data/eval/Unsplash30 --every 5 [--steps 30]

Prints one line per picture and the totals (bpsp over all subpixels). Gray pictures are
coded as one channel, everything else as RGB (alpha and palettes dropped).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import ardmzip
from ardmzip import adapt, container, jit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--every", type=int, default=1, help="every n-th picture (sorted by name)")
    ap.add_argument("--steps", type=int, default=adapt.DEFAULT_STEPS, help="adaptation steps")
    ap.add_argument("--level-steps", type=int, default=None, help="coding steps (default: the default level's)")
    args = ap.parse_args(argv)
    files = sorted(p for p in Path(args.folder).iterdir() if p.suffix.lower() in (".png", ".webp"))[::args.every]
    jit.start()
    total = np.zeros(3)
    print("picture | pixels | plain bpsp | adapted bpsp | change | compress s plain / adapted | decompress s "
          "plain / adapted | version")
    for path in files:
        with Image.open(path) as im:            # gray stays one channel (as the CLI codes it)
            img = np.asarray(im.convert("L" if im.mode in ("L", "1") else "RGB"))
        t0 = time.perf_counter()
        plain = ardmzip.compress(img, args.level_steps)
        t1 = time.perf_counter()
        tuned = ardmzip.compress(img, args.level_steps, adapt=args.steps)
        t2 = time.perf_counter()
        ok = np.array_equal(ardmzip.decompress(plain), img)
        t3 = time.perf_counter()
        ok &= np.array_equal(ardmzip.decompress(tuned), img)
        t4 = time.perf_counter()
        if not ok:
            print(f"{path.name}: DECODED WRONG", file=sys.stderr)
            return 1
        n = img.size
        total += (n, 8 * len(plain), 8 * len(tuned))
        print(f"{path.name[:28]} | {img.shape[1]}x{img.shape[0]} | {8 * len(plain) / n:.4f} | {8 * len(tuned) / n:.4f} | "
              f"{100 * (len(tuned) / len(plain) - 1):+.2f}% | {t1 - t0:.1f} / {t2 - t1:.1f} | {t3 - t2:.1f} / {t4 - t3:.1f} | "
              f"{container.unpack(tuned)[0].version}", flush=True)
    print(f"total | {int(total[0])} subpixels | {total[1] / total[0]:.4f} | {total[2] / total[0]:.4f} | "
          f"{100 * (total[2] / total[1] - 1):+.2f}% | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Coding overhead: ANS stream bits against the model's cross-entropy for the same order and schedule.

    python -m benchmarks.overhead ../shared/data/eval/cifar10_test_partial.npz --limit 100

Prints the payload bits (the entropy-coded ANS words), the ideal bits (sum of -log2 p of
the coded symbols under the exact integer frequencies), the planes' value-constraint bytes
(side information, constraint.py) and the container header bytes.
"""
from __future__ import annotations

import argparse
import sys

from ardmzip import codec
from ardmzip.imageio import picture_from_array

from .compare import load_sets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    a = p.parse_args(argv)
    sets, _names = load_sets(a.paths, a.limit)
    for name, images in sets.items():
        stats, file_bytes = codec.Stats(), 0
        for img in images:
            file_bytes += len(codec.compress_picture(picture_from_array(img), a.steps, stats=stats))
        header = file_bytes - (stats.file_bits + stats.side_bits) / 8
        print(f"{name}: {len(images)} images, ideal {stats.ideal_bits:.0f} bits, streams {stats.file_bits} bits "
              f"(+{100 * (stats.file_bits / stats.ideal_bits - 1):.3f}%), constraints "
              f"{stats.side_bits / 8 / len(images):.1f} bytes/image, headers {header / len(images):.1f} bytes/image, "
              f"whole files {8 * file_bytes / stats.subpixels:.4f} bpsp vs ideal {stats.ideal_bits / stats.subpixels:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

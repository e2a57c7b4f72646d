"""Coding overhead: ANS stream bits against the model's cross-entropy, and what a file or an
archive adds around the streams.

    python -m benchmarks.overhead ../shared/data/eval/cifar10_test_partial.npz --limit 100

Per set, prints the payload bits (the entropy-coded ANS words), the ideal bits (sum of -log2 p
of the coded symbols under the exact integer frequencies), the planes' value-constraint bytes
(side information, constraint.py) and the single .ardm files' header bytes; then writes the
same images as one archive (``archive.write_archive``: an .npz archive when they share a
shape, else or with ``--archive-as folder`` a folder of PNGs) and prints its size against the single files and its overhead
per image (everything but the coded streams: header, member CRCs, index, footer), read from
its index.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ardmzip import archive, codec
from ardmzip.imageio import picture_from_array

from .compare import load_sets


def archive_source(images: list[np.ndarray], folder: Path, kind: str = "auto") -> Path:
    """The images as an archive source: one .npz array if they share a shape (``kind`` "auto")
    or ``kind`` is "npz", else a folder of PNGs."""
    if kind == "npz" or (kind == "auto" and len({img.shape for img in images}) == 1):
        np.savez(folder / "images.npz", images=np.stack(images))
        return folder / "images.npz"
    for i, img in enumerate(images):
        Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img).save(folder / f"{i:06d}.png")
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--no-archive", action="store_true", help="single files only")
    p.add_argument("--archive-as", choices=["auto", "npz", "folder"], default="auto",
                   help="the archive's source: an .npz (same-shape images), a folder of PNGs, or auto")
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
        if a.no_archive:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            src = archive_source(images, Path(tmp), a.archive_as)
            ix = archive.write_archive(src, Path(tmp) / "set.ardm", a.steps).index
        print(f"{name}: archive ({ix.kind}, format {ix.version}) {ix.size} bytes, {8 * ix.size / ix.subpixels:.4f} "
              f"bpsp, vs {file_bytes} bytes as single files ({8 * file_bytes / ix.subpixels:.4f} bpsp, "
              f"{100 * (ix.size / file_bytes - 1):+.2f}%); overhead {ix.overhead_per_image:.2f} bytes/image "
              f"({ix.overhead_bytes} in all: everything but the {ix.stream_bytes} bytes of coded streams)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

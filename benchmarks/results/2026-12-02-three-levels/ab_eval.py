"""Format 10 (three pyramid levels) against format 8, alternating picture by picture in one
process: bytes and compress / decompress times at the default level (auto model, K = 16),
every file decoded and compared.

    python benchmarks/results/2026-12-02-three-levels/ab_eval.py ../shared/data/eval/Unsplash30 [more folders]
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ardmzip
from ardmzip import imageio, jit

torch.set_num_threads(2)
jit.start()
ardmzip.decompress(ardmzip.compress(np.zeros((64, 64, 3), np.uint8) + 7))      # warm-up
for folder in map(Path, sys.argv[1:]):
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".bmp", ".tif", ".ppm", ".jpg", ".webp"))
    total = {8: [0, 0.0, 0.0], 10: [0, 0.0, 0.0]}
    subpixels = smaller = 0
    for i, f in enumerate(files):
        px = imageio.read_picture(f).pixels
        px = px[..., :3] if px.shape[2] == 4 else px
        subpixels += px.size
        size = {}
        for v in (8, 10) if i % 2 else (10, 8):         # alternating which goes first
            t = time.perf_counter()
            data = ardmzip.compress(px, version=v)
            t1 = time.perf_counter()
            back = ardmzip.decompress(data)
            t2 = time.perf_counter()
            assert np.array_equal(back.reshape(px.shape), px), f
            total[v][0] += len(data)
            total[v][1] += t1 - t
            total[v][2] += t2 - t1
            size[v] = len(data)
        smaller += size[10] < size[8]
        print(f"{f.name}: v8 {8 * size[8] / px.size:.4f} v10 {8 * size[10] / px.size:.4f}", flush=True)
    mp = subpixels / 3e6
    for v in (8, 10):
        n, c, d = total[v]
        print(f"{folder.name} format {v}: {8 * n / subpixels:.4f} bpsp, {c / mp:.2f} / {d / mp:.2f} s/MP")
    print(f"{folder.name}: format 10 {100 * (total[10][0] / total[8][0] - 1):+.2f}% bytes, "
          f"{total[10][1] / total[8][1]:.3f}x / {total[10][2] / total[8][2]:.3f}x time; "
          f"smaller on {smaller} of {len(files)}", flush=True)

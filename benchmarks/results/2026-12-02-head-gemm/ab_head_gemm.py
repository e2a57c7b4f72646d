"""The head's int8 GEMM (torch._int_mm) against float32 products, alternating in one process:
the 846 CIFAR-10 test images as one archive's pictures, and one Unsplash30 photo. Same bytes
either way (asserted); only the time differs. Run from the repository root:
    python benchmarks/results/2026-12-02-head-gemm/ab_head_gemm.py"""
import statistics
import time

import numpy as np
import torch

from ardmzip import codec, jit, qlayers
from ardmzip.imageio import picture_from_array, read_picture

torch.set_num_threads(2)
jit.start()
print("int8 GEMM timed faster here:", qlayers.int8_gemm_pays())
cifar = np.load("../shared/data/eval/cifar10_test_partial.npz")["images"]
sets = {"cifar846": [picture_from_array(x) for x in cifar],
        "photo": [read_picture("../shared/data/eval/Unsplash30/alfred-schrock-shoE2y51uX0.webp")]}
codec.compress_pictures(sets["cifar846"][:64], model="xic-s48")
rows = {}
for name, pics in sets.items():
    sizes = {}
    for i in range(3):
        for pays in ((True, False) if i % 2 == 0 else (False, True)):
            qlayers.INT8_GEMM_PAYS = pays
            t0 = time.perf_counter()
            files = codec.compress_pictures(pics, model="xic-s48")
            t1 = time.perf_counter()
            codec.decompress_pictures(files)
            t2 = time.perf_counter()
            assert files == sizes.setdefault(pays, files)
            rows.setdefault((name, pays), []).append((t1 - t0, t2 - t1))
            print(name, "int8" if pays else "float32", "compress %.2f s decompress %.2f s" % (t1 - t0, t2 - t1), flush=True)
    assert sizes[True] == sizes[False], "the two products gave different files"
    for pays in (True, False):
        c = statistics.median(r[0] for r in rows[(name, pays)])
        d = statistics.median(r[1] for r in rows[(name, pays)])
        print(f"{name} {'int8   ' if pays else 'float32'} median compress {c:.2f} s decompress {d:.2f} s"
              f" ({len(pics) / c:.1f} / {len(pics) / d:.1f} pictures/s), {sum(map(len, sizes[pays]))} bytes")

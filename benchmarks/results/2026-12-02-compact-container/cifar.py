"""CIFAR-10 one file per picture with the compact container, against the full layout of the
same files (same header and streams) and WebP / JPEG-XL, all in one run; every ardmzip file
decoded and compared.

    PYTHONPATH=. python benchmarks/results/2026-12-02-compact-container/cifar.py
"""
import time

import numpy as np
import torch

import ardmzip
from ardmzip import container, jit
from benchmarks.codecs import make_codec

torch.set_num_threads(2)
jit.start()
images = np.load("../shared/data/eval/cifar10_test_partial.npz")["images"]
subpixels = images.size
compact = full = 0
start = time.perf_counter()
for x in images:
    data = ardmzip.compress(x)
    assert data[4] >= container.COMPACT and np.array_equal(ardmzip.decompress(data).reshape(x.shape), x)
    compact += len(data)
    full += len(container.pack(*container.unpack(data), compact=False))
print(f"ardmzip auto, compact container: {8 * compact / subpixels:.4f} bpsp "
      f"({(compact) / len(images):.1f} bytes a file; {time.perf_counter() - start:.1f} s with decoding)")
print(f"the same files in the full layout: {8 * full / subpixels:.4f} bpsp "
      f"({(full - compact) / len(images):.1f} bytes more a file)")
for key in ("webp", "jxl7", "jxl9"):
    codec = make_codec(key)
    ok, why = codec.available()
    if not ok:
        print(f"{key}: {why}")
        continue
    total = 0
    for x in images:
        data = codec.encode(x)
        assert np.array_equal(codec.decode(data).reshape(x.shape), x)
        total += len(data)
    print(f"{codec.name}: {8 * total / subpixels:.4f} bpsp")

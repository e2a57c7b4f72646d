"""Thumbnails' candidates for --model auto, with and without photo-s48 (format 10, K = 16,
one file per picture). Every picture is coded with each of the three models; a candidate set's
total is that of the files of the models it picks (an auto file is the chosen model's file
byte for byte), and the time is the choice's alone (codec.pictures_models), one thread.

    PYTHONPATH=. python benchmarks/results/2026-12-02-thumb-candidates/thumbs.py
"""
import time
from collections import Counter

import numpy as np
import torch

import ardmzip
from ardmzip import choose, codec, jit
from ardmzip.imageio import picture_from_array

torch.set_num_threads(1)
jit.start()
DATA = "../shared/data"
sets = {"CIFAR-10 test (846)": np.load(f"{DATA}/eval/cifar10_test_partial.npz")["images"],
        "CIFAR-10 train [1000:1400]": next(iter(np.load(f"{DATA}/train/cifar10_train_partial.npz").values()))[1000:1400]}
MODELS = ("xic-s48", "photo-s48", "cifar10-s48")
for title, imgs in sets.items():
    sizes = {m: [len(ardmzip.compress(x, model=m)) for x in imgs] for m in MODELS}
    pics = [picture_from_array(x) for x in imgs]
    print(f"## {title}: alone " + ", ".join(f"{m} {8 * sum(v) / imgs.size:.4f}" for m, v in sizes.items())
          + f"; smallest file every time {8 * sum(min(sizes[m][i] for m in MODELS) for i in range(len(imgs))) / imgs.size:.4f}")
    for cands in (MODELS, ("xic-s48", "cifar10-s48")):
        choose.SMALL_CANDIDATES = cands
        t = time.perf_counter()
        picks = codec.pictures_models(pics)
        dt = time.perf_counter() - t
        total = sum(sizes[m.name][i] for i, m in enumerate(picks))
        print(f"{' + '.join(cands)}: {8 * total / imgs.size:.4f} bpsp, {dict(Counter(m.name for m in picks))}, "
              f"choice {1000 * dt / len(pics):.1f} ms a picture", flush=True)

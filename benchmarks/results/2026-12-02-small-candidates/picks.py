"""What model="auto" picks for the CIFAR-10 test pictures now that cifar10-s48 is a candidate
for pictures within one 48x48 tile, through the codec's own path (codec.pictures_models for
single files, codec.auto_model for an archive's sample), and what that costs. An auto file is
the chosen model's file byte for byte, so totals come from the files of every picture under
each model (sizes_<model>.json of 2026-12-02-auto-model, format 8, K = 16, same code since).

    python benchmarks/results/2026-12-02-small-candidates/picks.py
"""
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ardmzip import choose, codec, jit, sources
from ardmzip.imageio import picture_from_array

SIZES = Path(__file__).resolve().parent.parent / "2026-12-02-auto-model"
torch.set_num_threads(2)
jit.start()
models = choose.CANDIDATES + choose.SMALL_CANDIDATES
sizes = {m: json.loads((SIZES / f"sizes_{m}.json").read_text()) for m in models}
images = np.load("../shared/data/eval/cifar10_test_partial.npz")["images"]
names = [f"cifar[{i}]" for i in range(len(images))]
pictures = [picture_from_array(x) for x in images]
subpixels = sum(sizes[models[0]][k][1] for k in names)
for m in models:
    print(f"{m} alone: {8 * sum(sizes[m][k][0] for k in names) / subpixels:.4f} bpsp")
t0 = time.perf_counter()
picks = [m.name for m in codec.pictures_models(pictures)]
dt = time.perf_counter() - t0
auto = 8 * sum(sizes[p][k][0] for k, p in zip(names, picks)) / subpixels
oracle = 8 * sum(min(sizes[m][k][0] for m in models) for k in names) / subpixels
print(f"auto, one file per picture: {auto:.4f} bpsp; oracle {oracle:.4f}; picks {dict(Counter(picks))}; "
      f"{dt / len(names) * 1e3:.1f} ms a picture for the estimates")
sample = [pictures[i] for i in sources.spread(len(pictures), choose.ARCHIVE_SAMPLE)]
print(f"an archive of the {len(pictures)} pictures chooses {codec.auto_model(sample).name} "
      f"(from {len(sample)} spread over it)")

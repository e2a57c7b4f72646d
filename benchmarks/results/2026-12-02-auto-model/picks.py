"""What model="auto" picks on each eval picture, and what that costs, from sizes_<model>.json:
an auto file is the chosen model's file byte for byte, so the totals are exact.

    python benchmarks/results/2026-12-02-auto-model/picks.py [TILE/TILES/SAMPLE,...]

Without arguments: choose.py's settings. Prints per set: each model alone, auto, the oracle
(the smaller file per picture), how often auto picked the oracle's model, and the estimates' time.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ardmzip import choose, codec, weights
from ardmzip.imageio import picture_from_array

E = Path("../shared/data/eval")
HERE = Path(__file__).resolve().parent


def picture(name, cifar):
    return cifar[int(name[6:-1])] if name.startswith("cifar[") else np.asarray(Image.open(E / name))


def main():
    sizes = {m: json.loads((HERE / f"sizes_{m}.json").read_text()) for m in choose.CANDIDATES}
    cifar = np.load(E / "cifar10_test_partial.npz")["images"]
    configs = sys.argv[1].split(",") if len(sys.argv) > 1 else [f"{choose.TILE}/{choose.TILES}/{choose.SAMPLE}"]
    for cfg in configs:
        choose.TILE, choose.TILES, choose.SAMPLE = (int(v) for v in cfg.split("/"))
        for s in ("Unsplash30", "McMaster", "Set14", "cifar"):
            names = [k for k in sizes[choose.CANDIDATES[0]] if k.split("/")[0].split("[")[0] == s]
            models = [m for m in choose.CANDIDATES if all(k in sizes[m] for k in names)]
            loaded = [weights.load(m) for m in models]
            t0 = time.perf_counter()
            picks = [choose.choose(loaded, [codec.network_plane(picture_from_array(picture(k, cifar)))]).name
                     for k in names]
            dt = time.perf_counter() - t0
            sub = sum(sizes[models[0]][k][1] for k in names)
            alone = {m: 8 * sum(sizes[m][k][0] for k in names) / sub for m in models}
            auto = 8 * sum(sizes[p][k][0] for k, p in zip(names, picks)) / sub
            best = [min(models, key=lambda m: sizes[m][k][0]) for k in names]
            oracle = 8 * sum(sizes[b][k][0] for k, b in zip(names, best)) / sub
            print(f"{cfg} {s} ({len(names)}): " + ", ".join(f"{m} {v:.4f}" for m, v in alone.items())
                  + f"; auto {auto:.4f}, oracle {oracle:.4f}, oracle's model {sum(p == b for p, b in zip(picks, best))}"
                  f"/{len(names)}; picks {dict(zip(*np.unique(picks, return_counts=True)))}; "
                  f"{dt / len(names):.3f} s a picture", flush=True)


if __name__ == "__main__":
    main()

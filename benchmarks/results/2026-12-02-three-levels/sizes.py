"""Three levels against two by picture size, on training pictures only: 150 CIFAR-10 train
pictures (cifar10-s48) and centre crops of 16 training photos (xic-s48), K = 16. Run before
THREE_LEVEL_MIN_SIDE existed, with every pyramid given three levels (the shipped code now
keeps two below a 12x12 1/16 picture, so "v10" here equals "v8" for the small sizes).

    python benchmarks/results/2026-12-02-three-levels/sizes.py
"""
import sys, numpy as np, torch
from pathlib import Path
from PIL import Image
import ardmzip
from ardmzip import jit, codec
torch.set_num_threads(2); jit.start()
cif = np.load("../shared/data/train/cifar10_train_partial.npz")
key = list(cif.keys())[0]; cif = cif[key][:150]
files = sorted(Path("../shared/data/train/imagenet_samples").glob("*.webp"))[5::24][:12] + sorted(Path("../shared/data/train/wikipedia_photos").glob("*.webp"))[3::12][:4]
photos = [np.asarray(Image.open(f).convert("RGB")) for f in files]
def crops(s):
    out = []
    for a in photos:
        h, w = a.shape[:2]
        out.append(np.ascontiguousarray(a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]))
    return out
sets = [("cifar-train", list(cif), "cifar10-s48")] + [(f"crop{s}", crops(s), "xic-s48") for s in (32, 36, 40, 44, 48, 64, 96, 128)]
for name, pics, model in sets:
    tot = {}
    for v in (8, 10):
        tot[v] = sum(len(ardmzip.compress(p, model=model, version=v)) for p in pics)
    sub = sum(p.size for p in pics)
    print(f"{name} ({model}): v8 {8*tot[8]/sub:.4f} v10 {8*tot[10]/sub:.4f} ({100*(tot[10]/tot[8]-1):+.2f}%)", flush=True)

"""Bytes of every eval picture's .ardm file under one model (compress only; format 8, the
default 16 steps), into sizes_<model>.json here: {name: [bytes, subpixels]}. Resumes.

    python benchmarks/results/2026-12-02-auto-model/sizes.py photo-s48 Unsplash30,McMaster,Set14,cifar
"""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import ardmzip

E = Path("../shared/data/eval")
HERE = Path(__file__).resolve().parent


def pictures(s):
    if s == "cifar":
        for i, a in enumerate(np.load(E / "cifar10_test_partial.npz")["images"]):
            yield f"cifar[{i}]", a
    else:
        for p in sorted((E / s).iterdir()):
            if p.suffix.lower() in (".png", ".webp"):
                yield f"{s}/{p.name}", np.asarray(Image.open(p))


def main():
    model, sets = sys.argv[1], sys.argv[2].split(",")
    out = HERE / f"sizes_{model}.json"
    res = json.loads(out.read_text()) if out.exists() else {}
    for s in sets:
        for name, a in pictures(s):
            if name not in res:
                res[name] = [len(ardmzip.compress(a, model=model)), int(a.size)]
        out.write_text(json.dumps(res))
        print(s, "done", flush=True)


if __name__ == "__main__":
    main()

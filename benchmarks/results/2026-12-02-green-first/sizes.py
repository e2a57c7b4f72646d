"""Every picture's file under each model (format 10, default level K = 16, one file per
picture, every file decoded and compared), cached in sizes.json beside this script; then the
totals of each model alone and of `--model auto` with each candidate set (an auto file is the
chosen model's file byte for byte, so its size comes from the table; the picks from
codec.pictures_models, the encoder's own choice).

    PYTHONPATH=. python benchmarks/results/2026-12-02-green-first/sizes.py MODEL [MODEL ...] -- FOLDER [FOLDER ...]
    PYTHONPATH=. python benchmarks/results/2026-12-02-green-first/sizes.py --report FOLDER [FOLDER ...]
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ardmzip
from ardmzip import choose, codec, imageio, jit
from ardmzip.imageio import picture_from_array

HERE = Path(__file__).parent
CACHE = HERE / "sizes.json"
EXT = (".png", ".bmp", ".tif", ".ppm", ".jpg", ".webp")


def pictures(folder: Path):
    for f in sorted(p for p in folder.iterdir() if p.suffix.lower() in EXT):
        px = imageio.read_picture(f).pixels
        yield f, (px[..., :3] if px.ndim == 3 and px.shape[2] == 4 else px)


def load_cache() -> dict:
    return json.loads(CACHE.read_text()) if CACHE.exists() else {}


def measure(models: list[str], folders: list[Path]) -> None:
    torch.set_num_threads(1)
    jit.start()
    for folder in folders:
        for f, px in pictures(folder):
            for m in models:
                cache = load_cache()
                key = f"{m}|{folder.name}/{f.name}"
                if key in cache:
                    continue
                t = time.perf_counter()
                data = ardmzip.compress(px, model=m)
                t1 = time.perf_counter()
                assert np.array_equal(ardmzip.decompress(data), px), f"{key}: decoded pixels differ"
                t2 = time.perf_counter()
                cache = load_cache()            # (another process may have added entries)
                cache[key] = {"bytes": len(data), "subpixels": int(px.size), "compress_s": t1 - t, "decompress_s": t2 - t1}
                CACHE.write_text(json.dumps(cache, indent=0, sort_keys=True))
                print(key, len(data), f"{8 * len(data) / px.size:.4f}", flush=True)


def report(folders: list[Path], sets: list[tuple[str, ...]]) -> None:
    cache = load_cache()
    jit.start()
    for folder in folders:
        items = list(pictures(folder))
        n = sum(px.size for _, px in items)
        size = lambda m, f: cache[f"{m}|{folder.name}/{f.name}"]["bytes"]
        models = sorted({k.split("|")[0] for k in cache if k.endswith(tuple(f"{folder.name}/{f.name}" for f, _ in items))})
        alone = {m: 8 * sum(size(m, f) for f, _ in items) / n for m in models
                 if all(f"{m}|{folder.name}/{f.name}" in cache for f, _ in items)}
        print(f"## {folder.name} ({len(items)} pictures): alone " + ", ".join(f"{m} {b:.4f}" for m, b in alone.items()))
        for cands in sets:
            if not all(m in alone for m in cands):
                continue
            choose.CANDIDATES = cands
            picks = codec.pictures_models([picture_from_array(px) for _, px in items])
            total = 8 * sum(size(p.name, f) for p, (f, _) in zip(picks, items)) / n
            counts = {m: sum(p.name == m for p in picks) for m in cands}
            print(f"auto {' + '.join(cands)}: {total:.4f} {counts}")
        if "photo-s48" in alone and len(alone) > 2:
            for m in alone:
                if m in ("photo-s48", "xic-s48"):
                    continue
                wins = sum(size(m, f) < size("photo-s48", f) for f, _ in items)
                print(f"{m} against photo-s48: {100 * (alone[m] / alone['photo-s48'] - 1):+.2f}%, smaller on {wins} of {len(items)}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--report":
        report([Path(a) for a in args[1:]], [("xic-s48", "photo-s48"), ("xic-s48", "photog-s48"),
                                             ("xic-s48", "photo-s48", "photog-s48"), ("photo-s48", "photog-s48")])
    else:
        cut = args.index("--")
        measure(args[:cut], [Path(a) for a in args[cut + 1:]])

"""16-bit pictures: ardmzip against 16-bit PNG and JPEG-XL lossless, in bits per subpixel.

No 16-bit photo set ships here and nothing can be downloaded, so the pictures are made or
found honestly (an 8-bit picture times 257 would test only the value maps):

  box4/NAME    4x4 box means of an 8-bit photo: a mean of 16 samples carries 12 bits, scaled
               to the full 16-bit range (round(sum * 65535 / 4080)), as a 12-bit raw file
               converted to 16 bits is
  shift4/NAME  the same 12-bit means stored left-shifted (sum << 4), as 12-bit cameras write
  box16/NAME   16x16 box sums: 16 bits of real (averaged) information, values 0..65280
  gradient     a rendered smooth 16-bit RGB picture (192 x 256)
  gnupg        /usr/share/info/gnupg-module-overview.png, a real 16-bit RGBA PNG from GnuPG's
               manual (a diagram: flat colours, anti-aliased edges), when the file exists

bpsp = file bits / (H x W x channels): every channel (alpha too) of every pixel is one 16-bit
subpixel. ardmzip's column splits it into the high-byte planes (the ARDM) and the low-byte
stream (lowbyte.py); every ardmzip file is decoded and compared. PNG is libpng at zlib level
9 (imagecodecs), JPEG-XL lossless at effort 7 and 9. Times are seconds on this machine.

    python -m benchmarks.sixteen_bit --data ../shared/data/train --limit 2 --steps 16
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import ardmzip
from ardmzip import container, lowbyte

GNUPG = Path("/usr/share/info/gnupg-module-overview.png")


def box_sums(path: Path, k: int) -> np.ndarray:
    """(H/k, W/k, C) int64 sums of k x k blocks of an 8-bit picture."""
    with Image.open(path) as im:
        a = np.asarray(im.convert("L" if im.mode in ("L", "I;16") else "RGB")).astype(np.int64)
    a = a[..., None] if a.ndim == 2 else a
    h, w = a.shape[0] // k * k, a.shape[1] // k * k
    return a[:h, :w].reshape(h // k, k, w // k, k, -1).sum((1, 3))


def gradient(h: int = 192, w: int = 256) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 32768 + 30000 * np.sin(x / 41.0 + y / 97.0)
    g = 65535 * (x + y) / (h + w)
    b = 20000 + 15000 * np.cos(np.hypot(x - w / 2, y - h / 3) / 23.0)
    return np.rint(np.stack([r, g, b], -1)).astype(np.uint16)


def pictures(data: Path, limit: int) -> dict[str, np.ndarray]:
    photos = sorted((data / "wikipedia_photos").glob("*.webp"))[:limit]
    photos += sorted((data / "imagecompression_info").glob("gray8_*.png"))[:limit]
    out: dict[str, np.ndarray] = {}
    for p in photos:
        s = box_sums(p, 4)
        out[f"box4/{p.stem}"] = ((s * 65535 + 2040) // 4080).astype(np.uint16)
        out[f"shift4/{p.stem}"] = (s << 4).astype(np.uint16)
    for p in photos[:1]:
        out[f"box16/{p.stem}"] = box_sums(p, 16).astype(np.uint16)
    out["gradient"] = gradient()
    if GNUPG.exists():
        from ardmzip.imageio import read_picture
        out["gnupg"] = read_picture(GNUPG).pixels
    return out


def measure(name: str, a: np.ndarray, steps: int, effort: tuple[int, ...]) -> dict:
    import imagecodecs
    n = a.size
    t0 = time.perf_counter()
    data = ardmzip.compress(a, steps)
    t1 = time.perf_counter()
    back = ardmzip.decompress(data)
    t2 = time.perf_counter()
    if not np.array_equal(back.reshape(a.shape), a):
        raise SystemExit(f"{name}: ardmzip round trip is not exact")
    _, streams = container.unpack(data)
    high, low = lowbyte.split(a)
    t3 = time.perf_counter()
    lowbyte.decode(high, streams[-1])
    low_decode = time.perf_counter() - t3
    row = {"picture": name, "shape": list(a.shape), "ardmzip": 8 * len(data) / n,
           "ardmzip_low": 8 * len(streams[-1]) / n, "ardmzip_high": 8 * (len(data) - len(streams[-1])) / n,
           "encode_s": t1 - t0, "decode_s": t2 - t1, "low_decode_s": low_decode,
           "png": 8 * len(imagecodecs.png_encode(a if a.shape[2] > 1 else a[..., 0], level=9)) / n}
    for e in effort:
        jxl = imagecodecs.jpegxl_encode(a if a.shape[2] > 1 else a[..., 0], lossless=True, effort=e)
        row[f"jxl_e{e}"] = 8 * len(jxl) / n
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/train")
    ap.add_argument("--limit", type=int, default=2, help="photos from each of the two folders")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--only", default="", help="comma-separated name prefixes to run")
    ap.add_argument("--json", type=Path, help="write the rows here too")
    args = ap.parse_args(argv)
    effort = (7, 9)
    rows = []
    header = f"{'picture':34s} {'H x W x C':>14s} {'ardmzip':>8s} {'(high':>7s} {'+ low)':>7s} {'PNG':>7s} " \
             + " ".join(f"{'JXL e' + str(e):>8s}" for e in effort) + f" {'enc s':>6s} {'dec s':>6s} {'low dec s':>9s}"
    print(header)
    for name, a in pictures(args.data, args.limit).items():
        if args.only and not name.startswith(tuple(args.only.split(","))):
            continue
        r = measure(name, a, args.steps, effort)
        rows.append(r)
        print(f"{name:34s} {'x'.join(map(str, a.shape)):>14s} {r['ardmzip']:8.3f} {r['ardmzip_high']:7.3f} "
              f"{r['ardmzip_low']:7.3f} {r['png']:7.3f} " + " ".join(f"{r[f'jxl_e{e}']:8.3f}" for e in effort)
              + f" {r['encode_s']:6.1f} {r['decode_s']:6.1f} {r['low_decode_s']:9.2f}", flush=True)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["picture"].split("/")[0], []).append(r)
    print("\nsubpixel-weighted means (bpsp):")
    for group, rs in groups.items():
        w = np.array([np.prod(r["shape"]) for r in rs], float)
        mean = {k: float(np.dot(w, [r[k] for r in rs]) / w.sum()) for k in ("ardmzip", "png", *(f"jxl_e{e}" for e in effort))}
        print(f"  {group:8s} ({len(rs)}): " + "  ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"steps {args.steps}; ardmzip {ardmzip.__version__ if hasattr(ardmzip, '__version__') else ''}; "
          f"python {sys.version.split()[0]}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Compare ardmzip with standard lossless codecs: bits per subpixel and speed.

``python -m benchmarks.compare PATH... [--codecs ...] [--ardmzip-steps 4,8,16] [--limit N] [--out DIR]``

Every encoded file is decoded in the same run and checked bit-exact against the
input; any mismatch or codec error makes the process exit with status 1.
Tables go to stdout, progress and notes to stderr. The same work is available as
functions (``load_sets``, ``run_benchmark``, ``summarize``, ``markdown_table``)
for tests and CI guards. See benchmarks/README.md for the column definitions.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmarks.codecs import CODEC_KEYS, Codec, make_codecs

IMAGE_SUFFIXES = {".png", ".bmp", ".ppm", ".pgm", ".pbm", ".pnm", ".tif", ".tiff", ".webp"}
ARRAY_SUFFIXES = {".npz", ".npy"}
LOOSE_FILES_SET = "files"


def log(message: str) -> None:
    """Notes go to stderr (through tqdm so they do not tear a progress bar)."""
    tqdm.write(message, file=sys.stderr)


# --------------------------------------------------------------------------- loading


def to_hwc(image: np.ndarray) -> np.ndarray:
    """H x W -> H x W x 1; anything else must already be H x W x C."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"expected an H x W x C image, got shape {image.shape}")
    return image


def load_image(path: str | Path) -> np.ndarray:
    """Read one image file as uint8 H x W x C, C in {1, 3, 4} (gray stays C=1)."""
    from PIL import Image

    with Image.open(path) as im:
        mode = im.mode
        if mode == "1":
            im = im.convert("L")
        elif mode in ("P", "PA"):
            # Palette images become RGB, or RGBA when the palette carries transparency.
            im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        elif mode == "LA":
            im = im.convert("RGBA")  # few codecs take 2 channels; RGBA holds LA exactly
        elif mode not in ("L", "RGB", "RGBA"):
            raise ValueError(f"unsupported image mode {mode!r} (need 8-bit L/RGB/RGBA/P)")
        array = np.asarray(im)
    if array.dtype != np.uint8:
        raise ValueError(f"image is {array.dtype}, not uint8")
    return np.ascontiguousarray(to_hwc(array))


def load_array_file(path: str | Path, limit: int | None = None) -> list[np.ndarray]:
    """Images from an .npz ("images" key, else the first array) or .npy: N x H x W x C uint8."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if not z.files:
                raise ValueError(f"{path}: empty .npz")
            array = z["images"] if "images" in z.files else z[z.files[0]]
    else:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 images, got {array.dtype}")
    if array.ndim == 3:  # N x H x W: a stack of gray images
        array = array[..., None]
    if array.ndim != 4:
        raise ValueError(f"{path}: expected N x H x W x C, got shape {array.shape}")
    if array.shape[3] not in (1, 3, 4) and array.shape[1] in (1, 3, 4):
        log(f"note: {path} looks channel-first {array.shape}; transposing to N x H x W x C")
        array = array.transpose(0, 2, 3, 1)
    if array.shape[3] not in (1, 3, 4):
        raise ValueError(f"{path}: expected 1, 3 or 4 channels, got shape {array.shape}")
    array = array[:limit] if limit is not None else array
    return [np.ascontiguousarray(a) for a in array]


def _unique(name: str, taken: dict[str, Any]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def load_sets(
    paths: Sequence[str | Path], limit: int | None = None
) -> tuple[dict[str, list[np.ndarray]], dict[str, list[str]]]:
    """Group PATHs into named sets: one per folder / array file, loose image files together.

    Returns ``(sets, names)``; ``names[set][i]`` labels ``sets[set][i]`` in the tables.
    Unreadable files are skipped with a note.
    """
    sets: dict[str, list[np.ndarray]] = {}
    names: dict[str, list[str]] = {}

    def add(set_name: str, items: list[tuple[str, np.ndarray]]) -> None:
        if not items:
            log(f"note: no images in {set_name!r}; skipped")
            return
        sets[set_name] = [a for _, a in items]
        names[set_name] = [n for n, _ in items]

    def read_files(files: list[Path], root: Path | None) -> list[tuple[str, np.ndarray]]:
        items = []
        for f in files:
            if limit is not None and len(items) >= limit:
                break
            try:
                items.append((str(f.relative_to(root)) if root else f.name, load_image(f)))
            except Exception as exc:  # a broken file should not end a long run
                log(f"note: skipping {f}: {exc}")
        return items

    loose: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            add(_unique(path.resolve().name, sets), read_files(files, path))
        elif path.suffix.lower() in ARRAY_SUFFIXES:
            images = load_array_file(path, limit)
            add(_unique(path.stem, sets), [(f"{path.stem}[{i}]", a) for i, a in enumerate(images)])
        elif path.is_file():
            loose.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    if loose:
        add(_unique(LOOSE_FILES_SET, sets), read_files(loose, None))
    return sets, names


# --------------------------------------------------------------------------- running


def compare_pixels(original: np.ndarray, decoded: np.ndarray) -> str | None:
    """None when ``decoded`` holds exactly the pixels of ``original``, else what differs.

    Only two representation changes are accepted, both exact: a gray image coming
    back as three equal channels (WebP has no gray mode), and an RGBA image whose
    alpha is all 255 coming back as RGB (WebP drops an opaque alpha plane).
    """
    a, d = to_hwc(original), to_hwc(np.asarray(decoded))
    if d.dtype != np.uint8:
        return f"decoded dtype {d.dtype}, expected uint8"
    if a.shape[:2] != d.shape[:2]:
        return f"decoded shape {d.shape}, expected {a.shape}"
    if a.shape[2] == 1 and d.shape[2] == 3:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4 and d.shape[2] == 3 and bool((a[..., 3] == 255).all()):
        a = a[..., :3]
    if a.shape != d.shape:
        return f"decoded shape {d.shape}, expected {a.shape}"
    if not np.array_equal(a, d):
        return f"decoded pixels differ: {int((a != d).sum())} of {a.size} subpixels"
    return None


def available_codecs(codecs: Sequence[Codec]) -> tuple[list[Codec], list[tuple[str, str]]]:
    """Split into (usable codecs, [(name, reason)] skipped)."""
    usable, skipped = [], []
    for codec in codecs:
        ok, reason = codec.available()
        if ok:
            usable.append(codec)
        else:
            skipped.append((codec.name, reason))
    return usable, skipped


def _measure(codec: Codec, image: np.ndarray) -> dict[str, Any]:
    """Encode, decode and verify one image; times are perf_counter around each call."""
    row: dict[str, Any] = {"bytes": None, "encode_s": None, "decode_s": None, "ok": False, "error": None}
    try:
        t0 = time.perf_counter()
        data = codec.encode(image)
        row["encode_s"] = time.perf_counter() - t0
        row["bytes"] = len(data)
    except Exception as exc:
        row["error"] = f"encode failed: {type(exc).__name__}: {exc}"
        return row
    try:
        t0 = time.perf_counter()
        decoded = codec.decode(data)
        row["decode_s"] = time.perf_counter() - t0
    except Exception as exc:
        row["error"] = f"decode failed: {type(exc).__name__}: {exc}"
        return row
    row["error"] = compare_pixels(image, decoded)
    row["ok"] = row["error"] is None
    return row


def _warm_up(codec: Codec, image: np.ndarray) -> None:
    """One untimed round trip on a small crop, so one-off costs (model loading,
    lazy imports, kernel caches) are not charged to the first image."""
    try:
        if hasattr(codec, "warm_up"):
            codec.warm_up()
        codec.decode(codec.encode(np.ascontiguousarray(image[:32, :32])))
    except Exception:
        pass  # a real failure shows up, and is reported, in the timed run


def run_benchmark(
    sets: dict[str, list[np.ndarray]],
    codecs: list[Codec],
    progress: bool = False,
    names: dict[str, list[str]] | None = None,
    warmup: bool = True,
) -> list[dict[str, Any]]:
    """Code every image of every set with every available codec, one file per image.

    Returns one row per (set, image, codec) with sizes, bpsp, timings and whether
    the round trip was exact (``ok``; ``error`` says what went wrong otherwise).
    Unavailable codecs are skipped with a note on stderr.
    """
    usable, skipped = available_codecs(codecs)
    for name, reason in skipped:
        log(f"note: skipping {name}: {reason}")
    images = {s: [to_hwc(a) for a in imgs] for s, imgs in sets.items()}
    if warmup:
        first = next((imgs[0] for imgs in images.values() if imgs), None)
        if first is not None:
            for codec in usable:
                _warm_up(codec, first)

    rows: list[dict[str, Any]] = []
    total = sum(len(v) for v in images.values()) * len(usable)
    with tqdm(total=total, disable=not progress, file=sys.stderr, unit="img", leave=False) as bar:
        for set_name, imgs in images.items():
            labels = (names or {}).get(set_name) or [f"{set_name}[{i}]" for i in range(len(imgs))]
            for index, (label, image) in enumerate(zip(labels, imgs)):
                h, w, c = image.shape
                for codec in usable:
                    bar.set_description(f"{set_name} {codec.name}")
                    m = _measure(codec, image)
                    row = {
                        "set": set_name,
                        "image": label,
                        "index": index,
                        "codec": codec.name,
                        "key": codec.key,
                        "steps": codec.steps,
                        "height": h,
                        "width": w,
                        "channels": c,
                        "pixels": h * w,
                        "subpixels": h * w * c,
                        "bytes": m["bytes"],
                        "bpsp": None if m["bytes"] is None else 8 * m["bytes"] / (h * w * c),
                        "encode_s": m["encode_s"],
                        "decode_s": m["decode_s"],
                        "encode_mpps": _mpps(h * w, m["encode_s"]),
                        "decode_mpps": _mpps(h * w, m["decode_s"]),
                        "ok": m["ok"],
                        "error": m["error"],
                    }
                    if not m["ok"]:
                        log(f"FAIL {codec.name} on {set_name}/{label}: {m['error']}")
                    rows.append(row)
                    bar.update()
    return rows


def _mpps(pixels: int, seconds: float | None) -> float | None:
    # A zero reading (coarse clock, tiny image) has no meaningful rate.
    return pixels / 1e6 / seconds if seconds else None


# --------------------------------------------------------------------------- reporting


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (set, codec) totals, in first-seen order.

    bpsp = 8 * total bytes / total subpixels over the exact round trips (a
    size-weighted total, not a mean of per-image bpsp); seconds are summed and
    MP/s is total pixels / summed seconds. ``failures`` counts inexact/failed images.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["set"], row["codec"]), []).append(row)
    summary = []
    for (set_name, codec), group in groups.items():
        good = [r for r in group if r["ok"]]
        nbytes = sum(r["bytes"] for r in good)
        subpixels = sum(r["subpixels"] for r in good)
        pixels = sum(r["pixels"] for r in good)
        enc = sum(r["encode_s"] for r in good)
        dec = sum(r["decode_s"] for r in good)
        summary.append(
            {
                "set": set_name,
                "codec": codec,
                "key": group[0]["key"],
                "steps": group[0]["steps"],
                "images": len(group),
                "failures": len(group) - len(good),
                "bytes": nbytes,
                "pixels": pixels,
                "subpixels": subpixels,
                "bpsp": 8 * nbytes / subpixels if subpixels else None,
                "encode_s": enc,
                "decode_s": dec,
                "encode_mpps": _mpps(pixels, enc),
                "decode_mpps": _mpps(pixels, dec),
            }
        )
    return summary


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _fmt_s(seconds: float) -> str:
    # Three decimals hide everything on 32x32 images; keep three significant digits there.
    if seconds >= 0.1:
        return f"{seconds:.3f}"
    return np.format_float_positional(seconds, precision=3, unique=False, fractional=False, trim="-")


def _fmt_px(pixels: int) -> str:
    return f"{pixels / 1e6:.2f} MP" if pixels >= 100_000 else f"{pixels:,} px"


def markdown_table(summary: list[dict[str, Any]]) -> str:
    """One markdown table per set: codecs as rows, totals as columns."""
    out: list[str] = []
    for set_name in dict.fromkeys(s["set"] for s in summary):
        group = [s for s in summary if s["set"] == set_name]
        n, px = group[0]["images"], max(s["pixels"] for s in group)
        out.append(f"### {set_name} ({n} image{'s' if n != 1 else ''}, {_fmt_px(px)})\n")
        out.append("| codec | bpsp | bytes | compress s | decompress s | compress MP/s | decompress MP/s | exact |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for s in group:
            exact = "yes" if not s["failures"] else f"**FAIL {s['failures']}/{s['images']}**"
            out.append(
                f"| {s['codec']} | {_fmt(s['bpsp'], '.3f')} | {s['bytes']} | {_fmt_s(s['encode_s'])} | "
                f"{_fmt_s(s['decode_s'])} | {_fmt(s['encode_mpps'], '.3f')} | {_fmt(s['decode_mpps'], '.3f')} | {exact} |"
            )
        out.append("")
    return "\n".join(out)


def per_image_table(rows: list[dict[str, Any]]) -> str:
    """One markdown table per set: images as rows, bpsp per codec as columns."""
    out: list[str] = []
    for set_name in dict.fromkeys(r["set"] for r in rows):
        group = [r for r in rows if r["set"] == set_name]
        codecs = list(dict.fromkeys(r["codec"] for r in group))
        cells = {(r["image"], r["codec"]): r for r in group}
        out.append(f"### {set_name}: bpsp per image\n")
        out.append("| image | size | " + " | ".join(codecs) + " |")
        out.append("|---|---|" + "---:|" * len(codecs))
        for image in dict.fromkeys(r["image"] for r in group):
            first = cells[(image, codecs[0])]
            vals = []
            for codec in codecs:
                r = cells.get((image, codec))
                vals.append("–" if r is None else _fmt(r["bpsp"], ".3f") + ("" if r["ok"] else " FAIL"))
            size = f"{first['width']}×{first['height']}×{first['channels']}"
            out.append(f"| {image} | {size} | " + " | ".join(vals) + " |")
        out.append("")
    return "\n".join(out)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """What produced the numbers: date, hardware (no hostname), library versions, git revision."""
    env: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("numpy", "pillow", "imagecodecs", "torch", "ardmzip")},
        "git_revision": _git_revision(),
        "timing": "time.perf_counter around each encode/decode call, single process, library-default threading",
    }
    if "torch" in sys.modules:  # only report a GPU if ardmzip already brought torch in
        torch = sys.modules["torch"]
        try:
            env["torch_threads"] = torch.get_num_threads()
            env["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        except Exception:
            pass
    return env


def write_plots(summary: list[dict[str, Any]], out_dir: Path) -> list[str]:
    """bpsp_vs_steps.png and pareto.png; returns notes about what was not drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["matplotlib not installed: plots skipped (pip install matplotlib)"]
    notes = []
    set_names = list(dict.fromkeys(s["set"] for s in summary))
    width = 5 * len(set_names)

    stepped = [s for s in summary if s["key"] == "ardmzip" and s["steps"] is not None and s["bpsp"] is not None]
    if stepped:
        fig, axes = plt.subplots(1, len(set_names), figsize=(width, 4), squeeze=False)
        for ax, set_name in zip(axes[0], set_names):
            pts = sorted((s["steps"], s["bpsp"]) for s in stepped if s["set"] == set_name)
            ax.set_xscale("log", base=2)  # before set_xticks: a scale change resets the ticks
            if pts:
                ax.plot(*zip(*pts), "o-", color="k", label="ardmzip")
                ax.set_xticks([k for k, _ in pts], [str(k) for k, _ in pts])  # K values, not 2^n
                ax.minorticks_off()
            for i, s in enumerate(x for x in summary if x["set"] == set_name and x["key"] != "ardmzip"):
                if s["bpsp"] is not None:
                    ax.axhline(s["bpsp"], ls="--", color=f"C{i}", label=s["codec"])
            ax.set(title=set_name, xlabel="steps K", ylabel="bits per subpixel")
            ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(out_dir / "bpsp_vs_steps.png", dpi=120)
        plt.close(fig)
    else:
        notes.append("bpsp_vs_steps.png skipped: no ardmzip results with an explicit --ardmzip-steps K")

    fig, axes = plt.subplots(1, len(set_names), figsize=(width, 4), squeeze=False)
    for ax, set_name in zip(axes[0], set_names):
        for s in (x for x in summary if x["set"] == set_name and x["encode_mpps"] and x["bpsp"] is not None):
            ax.scatter(1 / s["encode_mpps"], s["bpsp"], color="k" if s["key"] == "ardmzip" else "C0")
            ax.annotate(s["codec"], (1 / s["encode_mpps"], s["bpsp"]), fontsize="small",
                        xytext=(3, 3), textcoords="offset points")
        ax.set(title=set_name, xlabel="compress seconds per megapixel", ylabel="bits per subpixel")
        ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(out_dir / "pareto.png", dpi=120)
    plt.close(fig)
    return notes


def write_outputs(
    out_dir: Path,
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    markdown: str,
    meta: dict[str, Any],
) -> list[str]:
    """results.json / results.csv / summary.csv / results.md (+ plots); returns notes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(
        json.dumps({"environment": meta, "summary": summary, "rows": rows}, indent=1) + "\n"
    )
    for name, table in (("results.csv", rows), ("summary.csv", summary)):
        with open(out_dir / name, "w", newline="") as f:
            if table:
                writer = csv.DictWriter(f, fieldnames=list(table[0]))
                writer.writeheader()
                writer.writerows(table)
    (out_dir / "results.md").write_text(markdown)
    return write_plots(summary, out_dir) if summary else []


# --------------------------------------------------------------------------- CLI


def _parse_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _parse_steps(text: str) -> list[int | None]:
    steps: list[int | None] = []
    for token in _parse_list(text):
        if token.lower() in ("default", "none"):
            steps.append(None)
        elif token.isdigit() and int(token) > 0:
            steps.append(int(token))
        else:
            raise argparse.ArgumentTypeError(f"bad step budget {token!r}: want positive integers or 'default'")
    return steps


def _parse_adapt(text: str) -> list[int]:
    tokens = _parse_list(text)
    if not tokens or not all(t.isdigit() for t in tokens):
        raise argparse.ArgumentTypeError(f"bad adaptation steps {text!r}: want integers >= 0, e.g. 0,30")
    return [int(t) for t in tokens]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="Lossless bits per subpixel and speed of ardmzip against PNG, WebP, JPEG-XL, "
        "JPEG-LS and JPEG 2000. Every file is decoded and checked bit-exact.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files, folders of images (recursive), or .npz/.npy arrays N x H x W x C uint8")
    p.add_argument("--codecs", default=",".join(CODEC_KEYS),
                   help=f"comma-separated subset of {','.join(CODEC_KEYS)} (default: all available)")
    p.add_argument("--ardmzip-steps", type=_parse_steps, default=[None],
                   help="comma-separated step budgets K, e.g. 4,8,16; 'default' = the package default")
    p.add_argument("--ardmzip-device", choices=("cpu", "cuda"), default="cpu",
                   help="where ardmzip's network runs (files are identical on every device; speed is not)")
    p.add_argument("--ardmzip-model", default=None, metavar="MODEL",
                   help="ardmzip's model: a name (`ardmzip models`) or a model file (`ardmzip fit`); default: the default")
    p.add_argument("--ardmzip-adapt", type=_parse_adapt, default=[0], metavar="STEPS",
                   help="comma-separated --adapt tuning steps, 0 = plain: 0,30 gives a plain and an adapted row")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for results.json/csv/md, summary.csv and plots")
    p.add_argument("--per-image", action="store_true", help="also print bpsp per image")
    p.add_argument("--no-warmup", action="store_true",
                   help="do not run each codec once untimed before measuring")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0 when every round trip was exact, 1 otherwise, 2 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    keys = _parse_list(args.codecs)
    unknown = [k for k in keys if k not in CODEC_KEYS]
    if unknown:
        parser.error(f"unknown codec(s) {', '.join(unknown)}; choose from {','.join(CODEC_KEYS)}")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")

    try:
        sets, names = load_sets(args.paths, args.limit)
    except (OSError, ValueError) as exc:
        log(f"error: {exc}")
        return 2
    if not sets:
        log("error: no images found")
        return 2

    # the process settings the ardmzip command runs with, so that its rows time what users run
    from ardmzip.runtime import keep_freed_memory
    keep_freed_memory()
    codecs, skipped = available_codecs(make_codecs(keys, args.ardmzip_steps, args.ardmzip_device, args.ardmzip_model,
                                                          args.ardmzip_adapt))
    for name, reason in skipped:
        log(f"note: skipping {name}: {reason}")
    if not codecs:
        log("error: none of the selected codecs is available")
        return 2
    log(f"coding {sum(map(len, sets.values()))} images in {len(sets)} set(s) with "
        f"{', '.join(c.name for c in codecs)}")

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    started = environment()          # the revision that runs, even if HEAD moves during a long run
    rows = run_benchmark(sets, codecs, progress=progress, names=names, warmup=not args.no_warmup)
    summary = summarize(rows)

    markdown = markdown_table(summary)
    if args.per_image:
        markdown += "\n" + per_image_table(rows)
    if skipped:
        markdown += "\nSkipped (unavailable): " + "; ".join(f"{n} ({r})" for n, r in skipped) + "\n"
    failures = [r for r in rows if not r["ok"]]
    if failures:
        markdown += f"\n**{len(failures)} round trip(s) NOT exact or failed** — see stderr / results.json.\n"
    print(markdown)

    if args.out is not None:
        meta = started | {"argv": list(argv) if argv is not None else sys.argv[1:], "skipped": skipped}
        for note in write_outputs(args.out, rows, summary, markdown, meta):
            log(f"note: {note}")
        log(f"wrote results to {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

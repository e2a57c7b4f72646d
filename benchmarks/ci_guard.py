"""CI guard: ardmzip must stay exact and must not lose compression.

``python -m benchmarks.ci_guard [--steps K] [--record] [--baseline PATH] [--tolerance T]``

(``--images a,b --crop N`` change the input set, for quick checks and tests: a baseline
records its crop set and is only ever compared with a run on the same set.)

Codes a fixed set of small crops of images that ship inside scikit-image (no
download), decodes every file again and checks it bit-exact, and computes
ardmzip's total bpsp = total file bits / total subpixels (headers counted). The
figure is compared with the one recorded in ``benchmarks/ci_baseline.json``:

- any inexact round trip (or a codec error)                     -> exit 1
- bpsp > recorded bpsp * (1 + tolerance)                        -> exit 1
- baseline recorded for another model (sha256), other crops, or
  crop pixels that changed (other scikit-image data)            -> exit 1, "re-record"
- no baseline file                                              -> exit 1, "run --record"

``--record`` runs the same check and (only if every round trip was exact) writes
the baseline file atomically. Re-record whenever the shipped default models, the
crop set or the step budget deliberately changes. ardmzip's network is exact
integer arithmetic, so with the same model, steps and seed the file sizes are
identical on every machine; the tolerance only leaves room for small deliberate
changes (container bytes, schedule tweaks).

Lossless WebP (method 6) and JPEG-XL (effort 7, where imagecodecs has it) are
coded on the same crops for reference only; they never fail the guard.

Tests call :func:`run_guard` with a reduced image set and smaller crops.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ardmzip import DEFAULT_STEPS, ArdmzipError, compress, decompress
from ardmzip import choose
from ardmzip.weights import Model, load as load_model
from benchmarks.codecs import Codec, make_codec
from benchmarks.compare import compare_pixels, to_hwc

#: Where the recorded figure lives (committed with the repository).
BASELINE_PATH = Path(__file__).resolve().with_name("ci_baseline.json")
#: scikit-image's bundled images (shipped in the wheel, nothing is downloaded): 3 RGB, 2 gray.
DEFAULT_IMAGES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "camera", "moon")
#: Side of the square centre crop taken from each image.
DEFAULT_CROP = 96
#: Relative slack on the recorded bpsp written by --record.
DEFAULT_TOLERANCE = 0.005
#: Reference codecs (benchmarks/codecs.py keys): lossless WebP method 6, JPEG-XL effort 7.
REFERENCE_CODECS: tuple[str, ...] = ("webp", "jxl7")

RERECORD = "re-record it with `python -m benchmarks.ci_guard --record` (and commit benchmarks/ci_baseline.json)"


# --------------------------------------------------------------------------- inputs


def crop_spec(images: Sequence[str], crop: int) -> dict[str, Any]:
    """How the inputs are made; part of the baseline so a changed set is never compared."""
    return {
        "source": "skimage.data",
        "images": list(images),
        "size": int(crop),
        "anchor": "centre: rows (H - size) // 2 ..., columns (W - size) // 2 ...",
    }


def load_crops(images: Sequence[str], crop: int) -> list[tuple[str, np.ndarray]]:
    """Centre ``crop`` x ``crop`` crops of scikit-image data images, uint8 H x W x C (gray: C = 1)."""
    import skimage.data

    out = []
    for name in images:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            raise ValueError(f"skimage.data has no image {name!r}")
        a = to_hwc(np.asarray(loader()))
        if a.dtype != np.uint8:
            raise ValueError(f"skimage.data.{name} is {a.dtype}, not uint8")
        h, w = a.shape[:2]
        if crop > min(h, w):
            raise ValueError(f"crop {crop} is larger than skimage.data.{name} ({h} x {w})")
        top, left = (h - crop) // 2, (w - crop) // 2
        out.append((name, np.ascontiguousarray(a[top:top + crop, left:left + crop])))
    return out


def crops_sha256(crops: Sequence[tuple[str, np.ndarray]]) -> str:
    """Hash of the crop pixels and shapes (catches scikit-image shipping different data)."""
    h = hashlib.sha256()
    for name, a in crops:
        h.update(f"{name}:{a.shape}:".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- result


@dataclass
class GuardResult:
    """Everything one guard run found; ``ok`` is what the exit status reports."""

    ok: bool
    bpsp: float                      # ardmzip total file bits / total subpixels (exact round trips only)
    total_bits: int
    subpixels: int
    steps: int
    model: str
    model_sha256: str
    crop: dict[str, Any]
    crops_sha256: str
    rows: list[dict[str, Any]]       # one per image: name, shape, subpixels, ardmzip bytes/seconds/ok/error, refs
    references: dict[str, float | None]   # reference codec name -> total bpsp (None: unavailable/failed)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    baseline: dict[str, Any] | None = None
    limit_bpsp: float | None = None
    recorded_to: Path | None = None
    elapsed_s: float = 0.0

    @property
    def inexact(self) -> list[str]:
        """Images whose ardmzip round trip failed."""
        return [r["image"] for r in self.rows if not r["ok"]]

    def table(self) -> str:
        """Markdown table: bpsp per crop for ardmzip and the reference codecs, then the total."""
        refs = list(self.references)
        head = ["image", "size", "ardmzip bytes", "ardmzip bpsp", *[f"{n} bpsp" for n in refs],
                "encode s", "decode s", "exact"]
        lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 3) + "---|"]
        for r in self.rows:
            h, w, c = r["shape"]
            cells = [r["image"], f"{w}×{h}×{c}", str(r["bytes"]) if r["bytes"] is not None else "–",
                     f"{r['bpsp']:.3f}" if r["bpsp"] is not None else "–"]
            cells += [f"{r['refs'][n]:.3f}" if r["refs"].get(n) is not None else "–" for n in refs]
            cells += [f"{r['encode_s']:.2f}", f"{r['decode_s']:.2f}", "yes" if r["ok"] else "**NO**"]
            lines.append("| " + " | ".join(cells) + " |")
        total = ["**total**", f"{self.subpixels} subpx", str(self.total_bits // 8), f"**{self.bpsp:.4f}**"]
        total += [f"{self.references[n]:.3f}" if self.references[n] is not None else "–" for n in refs]
        total += [f"{sum(r['encode_s'] for r in self.rows):.2f}", f"{sum(r['decode_s'] for r in self.rows):.2f}",
                  "yes" if not self.inexact else f"**NO ({len(self.inexact)})**"]
        lines.append("| " + " | ".join(total) + " |")
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        b = self.baseline
        line = f"ardmzip (model {self.model} {self.model_sha256[:12]}, steps {self.steps}): {self.bpsp:.4f} bpsp"
        if b is not None and self.limit_bpsp is not None:
            rel = self.bpsp / b["bpsp"] - 1
            line += (f"; recorded {b['bpsp']:.4f} ({rel:+.2%}), limit {self.limit_bpsp:.4f} "
                     f"(+{b['tolerance']:.2%})")
        return line + f"; {self.elapsed_s:.1f} s"


# --------------------------------------------------------------------------- baseline file


def _git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "") if rev else "unknown"


def read_baseline(path: str | Path) -> dict[str, Any] | None:
    """The recorded figure, or None when there is no file."""
    path = Path(path)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    missing = [k for k in ("model", "model_sha256", "steps", "crop", "bpsp", "tolerance") if k not in data]
    if missing:
        raise ValueError(f"{path}: baseline lacks {', '.join(missing)}; {RERECORD}")
    return data


def write_baseline(result: GuardResult, path: str | Path, tolerance: float) -> dict[str, Any]:
    """Write ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    import skimage

    record = {
        "_note": ("Recorded by `python -m benchmarks.ci_guard --record`; checked by `python -m benchmarks.ci_guard` "
                  "(see benchmarks/README.md, 'CI guard'). Tied to the model sha256 below: when the shipped "
                  "default model is replaced, re-record (the guard refuses to compare against another model)."),
        "model": result.model,
        "model_sha256": result.model_sha256,
        "steps": result.steps,
        "crop": result.crop,
        "crops_sha256": result.crops_sha256,
        "bpsp": round(result.bpsp, 6),
        "tolerance": tolerance,
        "total_bits": result.total_bits,
        "subpixels": result.subpixels,
        "per_image_bytes": {r["image"]: r["bytes"] for r in result.rows},
        "references_bpsp": {k: (None if v is None else round(v, 6)) for k, v in result.references.items()},
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_revision": _git_revision(),
        "scikit_image": skimage.__version__,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return record


# --------------------------------------------------------------------------- the run


def _reference_codecs(keys: Sequence[str]) -> tuple[list[Codec], list[str]]:
    usable, notes = [], []
    for key in keys:
        codec = make_codec(key)
        ok, reason = codec.available()
        if ok:
            usable.append(codec)
        else:
            notes.append(f"reference {codec.name} skipped: {reason}")
    return usable, notes


def _roundtrip_ardmzip(image: np.ndarray, steps: int) -> tuple[int | None, float, float, str | None]:
    """(file bytes, encode s, decode s, error) with a strict check: same shape, dtype, every value."""
    t0 = time.perf_counter()
    try:
        data = bytes(compress(image, steps=steps))
    except Exception as exc:
        return None, time.perf_counter() - t0, 0.0, f"compress raised {type(exc).__name__}: {exc}"
    t1 = time.perf_counter()
    try:
        decoded = to_hwc(np.asarray(decompress(data)))          # gray comes back (H, W)
    except Exception as exc:
        return len(data), t1 - t0, time.perf_counter() - t1, f"decompress raised {type(exc).__name__}: {exc}"
    t2 = time.perf_counter()
    if decoded.dtype != np.uint8 or decoded.shape != image.shape:
        return len(data), t1 - t0, t2 - t1, f"decoded {decoded.dtype} {decoded.shape}, expected uint8 {image.shape}"
    if not np.array_equal(decoded, image):
        n = int((decoded != image).sum())
        return len(data), t1 - t0, t2 - t1, f"decoded pixels differ: {n} of {image.size} subpixels"
    return len(data), t1 - t0, t2 - t1, None


def default_models() -> tuple[str, str]:
    """What the default compress codes with, as (name, sha256) for the baseline: the one
    model, or with model="auto" choosing among several, "auto(a,b,c)" and the sha256 of their
    sha256s in order (a new candidate, or new weights for one, asks for a re-record). Loading
    checks every file against its registered sha256. (choose.SMALL_CANDIDATES code only
    pictures within one 48x48 tile, never the guard's 96x96 crops.)"""
    models: list[Model] = [load_model(name) for name in choose.CANDIDATES]
    if len(models) == 1:
        return models[0].name, models[0].sha256
    joined = ",".join(m.sha256 for m in models)
    return f"auto({','.join(m.name for m in models)})", hashlib.sha256(joined.encode()).hexdigest()


def run_guard(
    steps: int | None = None,
    baseline_path: str | Path = BASELINE_PATH,
    *,
    images: Sequence[str] = DEFAULT_IMAGES,
    crop: int = DEFAULT_CROP,
    record: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    references: Sequence[str] = REFERENCE_CODECS,
    log=None,
) -> GuardResult:
    """Code the crops, check every round trip, compare (or with ``record``, write) the baseline.

    ``steps=None`` is ardmzip's default budget. ``tolerance`` is only used when recording;
    a check uses the tolerance stored in the baseline. ``log(str)`` gets progress lines.
    """
    start = time.perf_counter()
    say = log or (lambda _msg: None)
    steps = DEFAULT_STEPS if steps is None else int(steps)
    if steps < 1:
        raise ValueError("steps must be at least 1")
    model_name, model_sha256 = default_models()
    crops = load_crops(images, crop)
    spec = crop_spec(images, crop)
    ref_codecs, notes = _reference_codecs(references)

    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    ref_bits: dict[str, int | None] = {c.name: 0 for c in ref_codecs}
    for name, image in crops:
        say(f"{name} {image.shape[1]}x{image.shape[0]}x{image.shape[2]} ...")
        nbytes, enc_s, dec_s, error = _roundtrip_ardmzip(image, steps)
        if error is not None:
            failures.append(f"{name}: ardmzip round trip NOT exact: {error}")
        row = {"image": name, "shape": list(image.shape), "subpixels": int(image.size), "bytes": nbytes,
               "bpsp": None if nbytes is None else 8 * nbytes / image.size, "encode_s": enc_s,
               "decode_s": dec_s, "ok": error is None, "error": error, "refs": {}}
        for codec in ref_codecs:
            try:
                data = codec.encode(image)
                problem = compare_pixels(image, codec.decode(data))
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                row["refs"][codec.name] = 8 * len(data) / image.size
                if ref_bits[codec.name] is not None:
                    ref_bits[codec.name] += 8 * len(data)
            else:  # a reference codec's trouble is reported, never a guard failure
                notes.append(f"reference {codec.name} failed on {name}: {problem}")
                row["refs"][codec.name] = None
                ref_bits[codec.name] = None
        rows.append(row)

    exact = [r for r in rows if r["ok"]]
    total_bits = sum(8 * r["bytes"] for r in exact)
    subpixels = sum(r["subpixels"] for r in exact)
    all_subpixels = sum(r["subpixels"] for r in rows)
    result = GuardResult(
        ok=False, bpsp=total_bits / subpixels if subpixels else float("nan"), total_bits=total_bits,
        subpixels=subpixels, steps=steps, model=model_name, model_sha256=model_sha256, crop=spec,
        crops_sha256=crops_sha256(crops), rows=rows,
        references={n: (None if b is None else b / all_subpixels) for n, b in ref_bits.items()},
        failures=failures, notes=notes,
    )

    if record:
        if failures:
            failures.append("baseline NOT recorded: fix the inexact round trip(s) first")
        else:
            try:
                old = read_baseline(baseline_path)
            except (ValueError, json.JSONDecodeError):
                old = None  # a broken file is simply replaced
            result.baseline = write_baseline(result, baseline_path, tolerance)
            result.limit_bpsp = result.bpsp * (1 + tolerance)
            result.recorded_to = Path(baseline_path)
            if old is not None:
                notes.append(f"previous baseline: {old['bpsp']:.4f} bpsp, model {old['model']} "
                             f"{old['model_sha256'][:12]}, steps {old['steps']}, recorded {old.get('date')}")
    else:
        _check_against_baseline(result, baseline_path)

    result.ok = not result.failures
    result.elapsed_s = time.perf_counter() - start
    return result


def _check_against_baseline(result: GuardResult, baseline_path: str | Path) -> None:
    failures, notes = result.failures, result.notes
    try:
        b = read_baseline(baseline_path)
    except (ValueError, json.JSONDecodeError) as exc:
        failures.append(f"cannot read baseline {baseline_path}: {exc}")
        return
    if b is None:
        failures.append(f"no baseline at {baseline_path}; record one with `python -m benchmarks.ci_guard --record`")
        return
    result.baseline = b
    if b["model_sha256"] != result.model_sha256:
        failures.append(
            f"baseline was recorded for model {b['model']} (sha256 {b['model_sha256'][:16]}…), but the default "
            f"model is now {result.model} (sha256 {result.model_sha256[:16]}…): the figures are not comparable; "
            + RERECORD)
        return
    if b["crop"] != result.crop:
        failures.append(f"baseline was recorded on other crops ({b['crop']}, now {result.crop}); " + RERECORD)
        return
    if b.get("crops_sha256") not in (None, result.crops_sha256):
        failures.append("the crop pixels differ from the recorded ones (different scikit-image data? recorded with "
                        f"scikit-image {b.get('scikit_image')}); " + RERECORD)
        return
    if b["steps"] != result.steps:
        notes.append(f"baseline was recorded at steps {b['steps']}, this run uses steps {result.steps}")
    result.limit_bpsp = b["bpsp"] * (1 + b["tolerance"])
    if not result.subpixels:
        failures.append("no exact round trip: no bpsp to compare")
    elif result.bpsp > result.limit_bpsp:
        failures.append(
            f"compression regressed: {result.bpsp:.4f} bpsp > limit {result.limit_bpsp:.4f} "
            f"(recorded {b['bpsp']:.4f} at steps {b['steps']} + {b['tolerance']:.2%}; this run steps "
            f"{result.steps}, {result.bpsp / b['bpsp'] - 1:+.2%}). If the loss is intended, " + RERECORD)
    elif result.bpsp < b["bpsp"] * (1 - b["tolerance"]):
        notes.append(f"bpsp improved by {1 - result.bpsp / b['bpsp']:.2%}: consider re-recording the baseline")


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ci_guard",
        description="Check that ardmzip round-trips fixed crops of scikit-image data bit-exact and that its "
        "total bpsp is not worse than the recorded baseline.",
    )
    p.add_argument("--steps", type=int, default=None, help=f"step budget K (default: ardmzip's, {DEFAULT_STEPS})")
    p.add_argument("--record", action="store_true", help="write the baseline from this run (atomically)")
    p.add_argument("--baseline", type=Path, default=BASELINE_PATH,
                   help="baseline file (default: benchmarks/ci_baseline.json)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"relative bpsp slack stored by --record (default {DEFAULT_TOLERANCE})")
    p.add_argument("--images", default=",".join(DEFAULT_IMAGES),
                   help="comma-separated skimage.data images (default: %(default)s; quick checks and tests only)")
    p.add_argument("--crop", type=int, default=DEFAULT_CROP,
                   help="side of the centre crop (default: %(default)s; quick checks and tests only)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """0: exact and within tolerance (or recorded); 1: inexact, regressed, or no usable baseline."""
    args = build_parser().parse_args(argv)
    if args.steps is not None and args.steps < 1:
        build_parser().error("--steps must be at least 1")
    if not 0 <= args.tolerance < 1:
        build_parser().error("--tolerance must be in [0, 1)")
    images = [n.strip() for n in args.images.split(",") if n.strip()]
    if not images or args.crop < 1:
        build_parser().error("--images needs at least one name and --crop must be positive")

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        result = run_guard(args.steps, args.baseline, images=images, crop=args.crop, record=args.record,
                           tolerance=args.tolerance, log=say)
    except (ValueError, ArdmzipError) as exc:  # bad image name, crop too large, model file not as registered
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    spec = result.crop
    print(f"ci_guard: {len(result.rows)} centre crops {spec['size']}x{spec['size']} of skimage.data "
          f"{', '.join(spec['images'])}\n")
    print(result.table())
    print(result.summary())
    for note in result.notes:
        print(f"note: {note}")
    if result.recorded_to is not None:
        print(f"recorded baseline {result.bpsp:.4f} bpsp (tolerance {args.tolerance:.2%}) to {result.recorded_to}")
    for failure in result.failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    print("ci_guard: " + ("PASS" if result.ok else "FAIL"))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

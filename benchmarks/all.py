"""Every number in the README, in one command.

    python -m benchmarks.all ../shared/data/eval [--date 2026-11-25]

EVAL is a folder holding McMaster/, Set14/ and cifar10_test_partial.npz. Runs, in order,
writing each output under ``benchmarks/results/DATE-*`` (each with the date, hardware and
git revision):

1. ``compare`` on McMaster, Set14 and all of cifar10_test_partial (every codec, per image)
   -> ``DATE-eval-full``: the results tables;
2. ``compare`` over step budgets 1..64 on the central 128x128 crops of McMaster 1.png and
   Set14 barbara.png -> ``DATE-steps``: bpsp and time against K;
3. ``throughput`` on 200 CIFAR images and on the first 4 McMaster photos, 1 and 2 worker
   processes -> ``DATE-throughput-cifar``, ``DATE-throughput-mcmaster``;
4. ``overhead`` (ANS bits against cross-entropy) on CIFAR and on the crops
   -> ``DATE-overhead/overhead.txt``;
5. ``exact_speed`` at 128 and 256 pixels: the exact network against a plain float32 one
   -> ``DATE-exact-speed/exact_speed.txt``;
6. ``ci_guard`` (the CI regression figure, compared with benchmarks/ci_baseline.json).

About 35 minutes on 2 CPU cores. Keep the machine otherwise idle: the timings are wall
clock.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from . import ci_guard, compare, exact_speed, overhead, throughput

RESULTS = Path(__file__).resolve().with_name("results")
STEP_CROPS = ("McMaster/1.png", "Set14/barbara.png")


def centre_crops(evaluation: Path, out: Path, size: int = 128) -> None:
    """The central size x size of each STEP_CROPS image, as RGB PNGs named set_image.png."""
    for rel in STEP_CROPS:
        im = Image.open(evaluation / rel).convert("RGB")
        w, h = im.size
        box = (w // 2 - size // 2, h // 2 - size // 2, w // 2 + size // 2, h // 2 + size // 2)
        im.crop(box).save(out / rel.replace("/", "_"))


def _captured(folder: str, name: str, run) -> int:
    """Run ``run()`` with its stdout saved to folder/name (and shown); its status."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        status = run()
    Path(folder).mkdir(parents=True, exist_ok=True)
    Path(folder, name).write_text(text.getvalue() + json.dumps(compare.environment()) + "\n")
    print(text.getvalue())
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.all", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("eval", type=Path, help="folder with McMaster/, Set14/, cifar10_test_partial.npz")
    p.add_argument("--date", default=time.strftime("%Y-%m-%d"), help="prefix of the results folders")
    a = p.parse_args(argv)
    ev, out = a.eval, RESULTS / a.date
    sets = [ev / "McMaster", ev / "Set14", ev / "cifar10_test_partial.npz"]
    missing = [str(s) for s in sets if not s.exists()]
    if missing:
        print(f"benchmarks.all: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    status = 0
    status |= compare.main([*map(str, sets), "--per-image", "--no-progress", "--out", f"{out}-eval-full"])
    with tempfile.TemporaryDirectory() as tmp:
        centre_crops(ev, Path(tmp))
        status |= compare.main([tmp, "--codecs", "ardmzip,webp,jxl7", "--ardmzip-steps", "1,2,4,8,16,32,64",
                                "--per-image", "--no-progress", "--out", f"{out}-steps"])
        status |= throughput.main([str(sets[2]), "--limit", "200", "--jobs", "1,2",
                                   "--out", f"{out}-throughput-cifar"])
        status |= throughput.main([str(sets[0]), "--limit", "4", "--jobs", "1,2",
                                   "--out", f"{out}-throughput-mcmaster"])
        status |= _captured(f"{out}-overhead", "overhead.txt",
                            lambda: overhead.main([str(sets[2])]) | overhead.main([tmp]))
    status |= _captured(f"{out}-exact-speed", "exact_speed.txt",
                        lambda: exact_speed.main(["--size", "128"]) | exact_speed.main(["--size", "256"]))
    status |= ci_guard.main([])
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())

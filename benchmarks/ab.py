"""Time two commands as whole processes, in turn (A B A B ...), and report medians and the
A/B ratio pair by pair, so that a comparison holds while the machine's speed drifts.

    python -m benchmarks.ab -n 3 --a "python -m ardmzip compress -q -f x.png -o a.ardm" \\
                               --b "python old_ardmzip.py compress -q -f x.png -o b.ardm"

Wall time from the clock, CPU time (user + system) and peak memory from the kernel's
accounting of each finished child (os.wait4). Quote medians and ratios, not single runs.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time


def run_once(command: list[str]) -> dict[str, float]:
    """One run: wall s, cpu s, peak RSS MiB, exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024,
            "exit": os.waitstatus_to_exitcode(status)}


def compare(a: list[str], b: list[str], runs: int, warmup: int = 0) -> dict[str, list[dict[str, float]]]:
    for _ in range(warmup):
        run_once(a)
        run_once(b)
    out: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
    for _ in range(runs):
        out["a"].append(run_once(a))
        out["b"].append(run_once(b))
    return out


def report(result: dict[str, list[dict[str, float]]]) -> str:
    lines = ["| figure | A median | B median | A/B median (pairwise) | A/B min | A/B max |", "|---|---:|---:|---:|---:|---:|"]
    for key in ("wall", "cpu", "peak_mib"):
        a = [r[key] for r in result["a"]]
        b = [r[key] for r in result["b"]]
        ratios = [x / y for x, y in zip(a, b) if y > 0]
        lines.append(f"| {key} | {statistics.median(a):.2f} | {statistics.median(b):.2f} | "
                     f"{statistics.median(ratios):.3f} | {min(ratios):.3f} | {max(ratios):.3f} |")
    codes = sorted({r["exit"] for side in result.values() for r in side})
    lines.append(f"\n{len(result['a'])} pairs; exit codes seen: {codes}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="command A (split as a shell splits words; no shell)")
    p.add_argument("--b", required=True, help="command B")
    p.add_argument("-n", "--runs", type=int, default=3, help="counted pairs")
    p.add_argument("--warmup", type=int, default=0, help="uncounted pairs first")
    args = p.parse_args(argv)
    result = compare(shlex.split(args.a), shlex.split(args.b), args.runs, args.warmup)
    print(f"A: {args.a}\nB: {args.b}\n")
    print(report(result))
    return 0 if all(r["exit"] == 0 for side in result.values() for r in side) else 1


if __name__ == "__main__":
    sys.exit(main())

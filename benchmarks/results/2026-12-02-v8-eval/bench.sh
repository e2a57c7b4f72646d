#!/bin/bash
# Format version 8 (a pyramid's coarse level gets more of the steps) on every eval set, with
# every codec in the same run and process, one file per image, every file decoded and
# checked; the 2-core Intel Xeon VM with the background training paused (SIGSTOP).
cd /work/main
R=benchmarks/results/2026-12-02-v8-eval
E=../shared/data/eval
uptime
python -m benchmarks.compare $E/Unsplash30 $E/McMaster $E/Set14 $E/cifar10_test_partial.npz \
    --codecs png,webp,jxl7,jxl9,jpegls,j2k,ardmzip --per-image --out $R --no-progress > $R/compare.log 2>&1
uptime

#!/bin/bash
# The thirteenth session's commits (features along rows, the integral as a ring of rows, the
# convolutions without padding of their own, larger bands, zero rows held, steps from
# partitions, the mixture terms, colour copies and the 256-wide rows compiled), measured at
# 6cee5e5 against the session start 35412bf, on the 2-core Intel Xeon VM (AVX-512, AMX), every
# codec of a table timed in the same run. Files are byte-identical to 35412bf's (ab_api checks
# every round; the compare runs give the same bytes as ../2026-12-01-pyramid's).
# /tmp/old: `git worktree add -f /tmp/old 35412bf`; /tmp/cifar64.npz: the first 64 images of
# eval/cifar10_test_partial.npz; /tmp/prof/a.png: alfred-schrock-shoE2y51uX0.webp of
# eval/Unsplash30 as PNG (768x608); /tmp/prof/one/: that photo alone.
cd /work/main
R=benchmarks/results/2026-12-01-rows
P=/tmp/prof/a.png
uptime
python -m benchmarks.ab_api --old /tmp/old $P --rounds 6 > $R/ab-api-photo.txt 2>&1
python -m benchmarks.ab_api --old /tmp/old /tmp/cifar64.npz --limit 64 --rounds 10 > $R/ab-api-cifar64.txt 2>&1
python -m benchmarks.compare ../shared/data/eval/Unsplash30 --ardmzip-steps 16 --per-image --out $R/unsplash30 --no-progress > $R/unsplash30.log 2>&1
python -m benchmarks.compare ../shared/data/eval/McMaster ../shared/data/eval/Set14 --codecs png,webp,jxl7,jxl9,ardmzip --ardmzip-steps 16 --out $R/mcmaster-set14 --no-progress > $R/mcmaster-set14.log 2>&1
python -m benchmarks.compare /tmp/prof/one --codecs webp,jxl9,ardmzip --ardmzip-steps 4,6,10,12,14,16,24,32 --out $R/levels --no-progress > $R/levels.log 2>&1
python -m benchmarks.throughput ../shared/data/eval/cifar10_test_partial.npz --limit 846 --jobs 1 --threads 2 --warm-up --out $R/throughput-warm > $R/throughput-warm.log 2>&1
uptime
echo done

#!/bin/bash
# The fourteenth session's commits (the 256-wide rows of rule-based planes: sigmoid tables
# looked up only where they change, chroma blocks compiled, masking, mixing and the coder's
# float64 rows in one pass; branch-free colour-copy votes; the decoder's information budget
# in one pass per level), measured at HEAD against the session start 3917ae0, on the 2-core
# Intel Xeon VM (AVX-512, AMX), every codec of a table timed in the same run. Files are
# byte-identical to 3917ae0's (ab_api checks every round).
# /tmp/start: `git worktree add -f /tmp/start 3917ae0`; /tmp/cifar64.npz: the first 64 images
# of eval/cifar10_test_partial.npz; /tmp/prof/a.png: alfred-schrock-shoE2y51uX0.webp of
# eval/Unsplash30 as PNG (768x608).
cd /work/main
R=benchmarks/results/2026-12-01-rules
S=../shared/data/eval/Set14
uptime
python -m benchmarks.ab_api --old /tmp/start $S/barbara.png --rounds 4 > $R/ab-api-barbara.txt 2>&1
python -m benchmarks.ab_api --old /tmp/start $S/lenna.png --rounds 4 > $R/ab-api-lenna.txt 2>&1
python -m benchmarks.ab_api --old /tmp/start /tmp/cifar64.npz --limit 64 --rounds 20 > $R/ab-api-cifar64.txt 2>&1
python -m benchmarks.ab_api --old /tmp/start /tmp/prof/a.png --rounds 4 > $R/ab-api-photo.txt 2>&1
python -m benchmarks.compare ../shared/data/eval/McMaster $S --codecs png,webp,jxl7,jxl9,ardmzip --ardmzip-steps 16 --per-image --out $R/mcmaster-set14 --no-progress > $R/mcmaster-set14.log 2>&1
python -m benchmarks.levels /tmp/prof/a.png --cifar ../shared/data/eval/cifar10_test_partial.npz --sizes cifar,128,photo,double --rounds 7 --large-rounds 3 --out $R/levels > $R/levels.log 2>&1
python -m benchmarks.throughput ../shared/data/eval/cifar10_test_partial.npz --limit 846 --jobs 1 --threads 2 --warm-up --out $R/throughput-warm > $R/throughput-warm.log 2>&1
uptime
echo done

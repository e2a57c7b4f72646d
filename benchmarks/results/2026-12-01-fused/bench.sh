#!/bin/bash
# The twelfth session's passes fused or spread over both cores (measured at ff5eae9) against
# the session start ac2526d, on the 2-core Intel Xeon VM (AVX-512, AMX), every codec of a
# table timed in the same run, the background training paused (SIGSTOP). Files are
# byte-identical to ac2526d's (checked below), so sizes and bpsp are those of
# ../2026-12-01-pyramid. /tmp/old: `git worktree add -f /tmp/old ac2526d`;
# /tmp/prof/old_ardmzip.py (from ../2026-11-30-speed-v4) runs its CLI; /tmp/cifar64.npz: the
# first 64 images of eval/cifar10_test_partial.npz; /tmp/prof/one/: the 768x608 photo alone;
# /tmp/prof/small.png: its top-left 96x96 crop.
cd /work/main
R=benchmarks/results/2026-12-01-fused
P=/tmp/prof/a.png      # alfred-schrock-shoE2y51uX0.webp of eval/Unsplash30 as PNG, 768x608
kill -STOP $(pgrep -f "ardmzip.train") 2>/dev/null
sleep 2
uptime
{
for lv in 6 1; do
  echo "== compress -$lv (768x608 photo)"
  python -m benchmarks.ab -n 3 --a "python -m ardmzip compress -q -f -$lv $P -o /tmp/prof/a$lv.ardm" --b "python /tmp/prof/old_ardmzip.py compress -q -f -$lv $P -o /tmp/prof/b$lv.ardm"
  cmp /tmp/prof/a$lv.ardm /tmp/prof/b$lv.ardm && echo "-$lv: same bytes"
done
echo "== decompress -6 (768x608 photo; each its own file)"
python -m benchmarks.ab -n 3 --a "python -m ardmzip decompress -q -f /tmp/prof/a6.ardm -o /tmp/prof/a.out.png" --b "python /tmp/prof/old_ardmzip.py decompress -q -f /tmp/prof/b6.ardm -o /tmp/prof/b.out.png"
cmp /tmp/prof/a.out.png /tmp/prof/b.out.png && echo "same pixels"
echo "== compress a 96x96 crop (a lone small picture: the kernels are not started)"
python -m benchmarks.ab -n 3 --a "python -m ardmzip compress -q -f /tmp/prof/small.png -o /tmp/prof/s_a.ardm" --b "python /tmp/prof/old_ardmzip.py compress -q -f /tmp/prof/small.png -o /tmp/prof/s_b.ardm"
cmp /tmp/prof/s_a.ardm /tmp/prof/s_b.ardm && echo "same bytes"
echo "== compress 64 CIFAR-10 images as an archive"
python -m benchmarks.ab -n 3 --a "python -m ardmzip compress -q -f /tmp/cifar64.npz -o /tmp/prof/ca.ardm" --b "python /tmp/prof/old_ardmzip.py compress -q -f /tmp/cifar64.npz -o /tmp/prof/cb.ardm"
cmp /tmp/prof/ca.ardm /tmp/prof/cb.ardm && echo "same bytes"
echo "== decompress the same archive (each its own)"
python -m benchmarks.ab -n 3 --a "python -m ardmzip decompress -q -f /tmp/prof/ca.ardm -o /tmp/prof/ca.npz" --b "python /tmp/prof/old_ardmzip.py decompress -q -f /tmp/prof/cb.ardm -o /tmp/prof/cb.npz"
} > $R/ab-vs-ac2526d.md 2>&1
python -m benchmarks.compare /tmp/prof/one --codecs webp,jxl9,ardmzip --ardmzip-steps 4,6,10,12,14,16,24,32 --out $R/levels --no-progress > $R/levels.log 2>&1
python -m benchmarks.throughput ../shared/data/eval/cifar10_test_partial.npz --limit 200 --jobs 1 --threads 2 --out $R/throughput-cold > $R/throughput-cold.log 2>&1
python -m benchmarks.throughput ../shared/data/eval/cifar10_test_partial.npz --limit 846 --jobs 1 --threads 2 --warm-up --out $R/throughput-warm > $R/throughput-warm.log 2>&1
python -m benchmarks.compare ../shared/data/eval/Unsplash30 --ardmzip-steps 16 --per-image --out $R/unsplash30 --no-progress > $R/unsplash30.log 2>&1
kill -CONT $(pgrep -f "ardmzip.train") 2>/dev/null
echo done

#!/bin/bash
# The pyramid (format version 6) against the session start, on this session's VM (a 2-core
# Intel Xeon with AMX, not the AMD EPYC of the earlier speed-v* runs: compare ratios, not
# absolute times across folders). The background training run is paused (SIGSTOP).
# /tmp/old: `git worktree add -f /tmp/old dbffde1` (the session start); /tmp/prof/old_ardmzip.py
# (from ../2026-11-30-speed-v4) runs its CLI; /tmp/cifar64.npz: the first 64 images of
# eval/cifar10_test_partial.npz.
cd /work/main
R=benchmarks/results/2026-12-01-pyramid
P=/tmp/prof/a.png      # alfred-schrock-shoE2y51uX0.webp of eval/Unsplash30 as PNG, 768x608
kill -STOP $(pgrep -f "ardmzip.train") 2>/dev/null
sleep 2
uptime
{
for lv in 6 1; do
  echo "== compress -$lv (768x608 photo)"
  python -m benchmarks.ab -n 2 --a "python -m ardmzip compress -q -f -$lv $P -o /tmp/prof/a$lv.ardm" --b "python /tmp/prof/old_ardmzip.py compress -q -f -$lv $P -o /tmp/prof/b$lv.ardm"
  ls -l /tmp/prof/a$lv.ardm /tmp/prof/b$lv.ardm | awk '{print $5, $9}'
done
cmp /tmp/prof/a1.ardm /tmp/prof/b1.ardm && echo "-1 (4 steps, no pyramid): same bytes"
echo "== decompress -6 (768x608 photo; each its own file)"
python -m benchmarks.ab -n 2 --a "python -m ardmzip decompress -q -f /tmp/prof/a6.ardm -o /tmp/prof/a.png" --b "python /tmp/prof/old_ardmzip.py decompress -q -f /tmp/prof/b6.ardm -o /tmp/prof/b.png"
cmp /tmp/prof/a.png /tmp/prof/b.png && echo "same pixels"
echo "== compress 64 CIFAR-10 images as an archive"
python -m benchmarks.ab -n 3 --a "python -m ardmzip compress -q -f /tmp/cifar64.npz -o /tmp/prof/ca.ardm" --b "python /tmp/prof/old_ardmzip.py compress -q -f /tmp/cifar64.npz -o /tmp/prof/cb.ardm"
echo "== decompress the same archive (each its own)"
python -m benchmarks.ab -n 3 --a "python -m ardmzip decompress -q -f /tmp/prof/ca.ardm -o /tmp/prof/ca.npz" --b "python /tmp/prof/old_ardmzip.py decompress -q -f /tmp/prof/cb.ardm -o /tmp/prof/cb.npz"
ls -l /tmp/prof/ca.ardm /tmp/prof/cb.ardm | awk '{print $5, $9}'
} > $R/ab-vs-dbffde1.md 2>&1
python -m benchmarks.compare ../shared/data/eval/Unsplash30 --codecs webp,jxl9,ardmzip --ardmzip-steps 4,16 --limit 4 --out $R/four-photos --no-progress > $R/four-photos.log 2>&1
python -m benchmarks.compare ../shared/data/eval/Unsplash30 --ardmzip-steps 16 --per-image --out $R/unsplash30 --no-progress > $R/unsplash30.log 2>&1
python -m benchmarks.compare ../shared/data/eval/McMaster ../shared/data/eval/Set14 ../shared/data/eval/cifar10_test_partial.npz --codecs ardmzip --ardmzip-steps 16 --out $R/other-sets --no-progress > $R/other-sets.log 2>&1
python -m benchmarks.throughput ../shared/data/eval/cifar10_test_partial.npz --limit 200 --jobs 1 --threads 2 --out $R/throughput > $R/throughput.log 2>&1
kill -CONT $(pgrep -f "ardmzip.train") 2>/dev/null
echo done

import time, numpy as np, torch, statistics
from ardmzip import codec, jit
from ardmzip.imageio import picture_from_array
torch.set_num_threads(2); jit.start()
imgs=np.load('../shared/data/eval/cifar10_test_partial.npz')['images']
pics=[picture_from_array(x) for x in imgs]
codec.compress_pictures(pics[:64], version=6); codec.compress_pictures(pics[:64])
r={6:[],8:[]}
for i in range(3):
    for v in ((6,8) if i%2==0 else (8,6)):
        t0=time.perf_counter(); fs=codec.compress_pictures(pics, version=v); t1=time.perf_counter(); codec.decompress_pictures(fs); t2=time.perf_counter()
        r[v].append((len(pics)/(t1-t0), len(pics)/(t2-t1), sum(map(len,fs))))
        print(v, '%.1f %.1f img/s'%r[v][-1][:2], r[v][-1][2], flush=True)
for v in (6,8): print(v, 'median', statistics.median(x[0] for x in r[v]), statistics.median(x[1] for x in r[v]))

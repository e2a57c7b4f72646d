"""What exactness costs in speed: the exact integer network against a plain float32 forward.

    python -m benchmarks.exact_speed [--size 256] [--repeat 5]

Both run the shipped model's trunk and head over every pixel of a SIZE x SIZE image with
half of its subpixels revealed, on the current torch threads (best of ``--repeat``):

- exact: ``IntegerNet`` as the codec runs it (integer context features, int8-valued
  weights, floor and clamp after every layer, channels-last), then the integer
  frequencies of one subpixel per pixel (``exact_frequencies``);
- float: the same weights as a plain float32 network (conv + bias + ReLU, no rounding or
  clamping, torch's default layout), then float mixture probabilities (softmax, sigmoid)
  for the same subpixels: what a codec that ignored exactness would run.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from ardmzip.dlm import GRID, N_SYMBOLS, exact_frequencies, split_params
from ardmzip.features import context_features
from ardmzip.weights import load


def float_forward(net, feats: torch.Tensor) -> torch.Tensor:
    def conv(layer, x):
        w = layer.weight.contiguous()
        return F.conv2d(x, w * layer.scale.view(-1, 1, 1, 1), layer.bias * layer.scale,
                        padding=layer.padding, dilation=layer.dilation)

    x = conv(net.stem, feats)
    for block in net.blocks:
        x = x + conv(block, F.relu(x))
    x = F.relu(x)
    return conv(net.head_out, F.relu(conv(net.head_hidden, x)))


def float_probabilities(params: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    logit, offset, log_scale = split_params(params / GRID)
    mean = anchor.unsqueeze(-1) + offset
    edges = torch.arange(N_SYMBOLS - 1, dtype=torch.float32) + 0.5
    cdf = torch.sigmoid((edges.view(1, 1, -1) - mean.unsqueeze(-1)) * torch.exp(-log_scale).unsqueeze(-1))
    cdf = (F.softmax(logit, -1).unsqueeze(-1) * cdf).sum(1)
    return torch.diff(cdf, prepend=torch.zeros_like(cdf[:, :1]), append=torch.ones_like(cdf[:, :1]))


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.exact_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(argv)
    net = load(None).net.to(torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    shape = (1, 3, a.size, a.size)
    values = torch.randint(0, 256, shape, generator=g)
    mask = (torch.rand(shape, generator=g) < 0.5).long()
    m = net.config.mixtures

    def exact():
        x, anchor = net.trunk(values, mask)
        params = net.head(x[0].flatten(1).t().contiguous()).view(-1, 3, 3, m)[:, 0]
        return exact_frequencies(params, anchor[0, 0].flatten())

    def plain():
        feats, anchor = context_features(values, mask)
        out = float_forward(net, feats)                                   # (1, 3*3*M, H, W)
        params = out[0].flatten(1).t().reshape(-1, 3, 3, m)[:, 0]
        return float_probabilities(params, anchor[0, 0].flatten().float())

    with torch.no_grad():
        exact(), plain()                                                 # warm-up
        t_exact, t_float = best_of(a.repeat, exact), best_of(a.repeat, plain)
    px = a.size * a.size
    print(f"{a.size}x{a.size}, {torch.get_num_threads()} threads: exact {t_exact:.3f} s "
          f"({1e6 * t_exact / px:.2f} us/px), plain float32 {t_float:.3f} s ({1e6 * t_float / px:.2f} us/px), "
          f"exact/float = {t_exact / t_float:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Validation bpsp of a training run (float) and of its exported model (exact integers).

    python -m ardmzip.evaluate runs/oa-s48 --model models/oa-s48.npz --val ../shared/data/eval/McMaster ...

Both use the same fixed crops and the same random masks (same generator seeds), so the
difference is what exactness costs: float EMA weights vs quantized-aware float vs the
integer network with table-based probabilities (the numbers the coder really pays).
The estimate is the OA-ARDM one (t uniform, D/(D-t+1) x summed NLL), per crop.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .ardm import random_masks
from .dlm import bits_of, exact_frequencies
from .model import IntegerNet, ModelConfig, make_net
from .train import evaluate, val_batches


@torch.no_grad()
def evaluate_exact(inet: IntegerNet, batches: dict, repeats: int = 2) -> dict[str, float]:
    """Like train.evaluate, but with exact integer frequencies."""
    res = {}
    for name, (crops, gray) in batches.items():
        g = torch.Generator().manual_seed(0)
        vals = []
        for _ in range(repeats):
            for i in range(0, len(crops), 64):
                x = torch.as_tensor(crops[i:i + 64]).permute(0, 3, 1, 2).long()
                gr = torch.as_tensor(gray[i:i + 64])
                b, _, h, w = x.shape
                mask, _ = random_masks(b, h, w, gr, g)
                params, anchor = inet.full(x, mask)
                p = params.permute(0, 1, 4, 5, 2, 3)                         # (B, 3, H, W, 3, M)
                for j in range(b):
                    hid = mask[j] == 0
                    if gr[j]:
                        hid[1:] = False
                    freq = exact_frequencies(p[j][hid], anchor[j][hid])
                    bits = bits_of(freq, x[j][hid])
                    vals.append(bits / int(hid.sum()))                     # = D/(D-t+1) x bits / D
        res[name] = float(np.mean(vals))
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ardmzip.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="training run folder (for the float numbers)")
    p.add_argument("--model", required=True, help="exported model file (.npz)")
    p.add_argument("--val", nargs="+", required=True)
    p.add_argument("--val-crops", type=int, default=128)
    p.add_argument("--checkpoint", default="ckpt.pt")
    a = p.parse_args(argv)
    from .weights import from_bytes
    batches = val_batches(a.val, 32, a.val_crops)
    state = torch.load(Path(a.run) / a.checkpoint, map_location="cpu", weights_only=False)
    net = make_net(ModelConfig.from_dict(state["config"]))
    net.load_state_dict(state["ema"])
    net.eval()
    out = {"step": state["step"]}
    for mode in ("float", "qat"):
        net.set_mode(mode)
        out[mode] = evaluate(net, batches, torch.device("cpu"))
    out["exact"] = evaluate_exact(from_bytes(Path(a.model).read_bytes(), Path(a.model).stem).net, batches)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

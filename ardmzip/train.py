"""Training loop for the OA-ARDM (float phase, then quantization-aware phase).

    python -m ardmzip.train ../shared/data/train --out runs/oa-s48 --steps 9000 --qat-from 7000

Fine-tuning a shipped model: ``--init models/NAME.npz`` starts from its integer weights
(``ARDMNet.from_integer``), keeps its architecture, and may switch on the cross-channel
anchor (``--cross-anchor``) or grow it deeper (``--grow 1,4``: residual blocks of those
dilations appended with zero weights, so training starts from exactly the shipped network).
From scratch, ``--trunk s2d`` trains the network whose blocks run on 2x2 cells (s2d.py;
``--channels``, ``--dilations``, ``--fine-channels``, ``--fine-dilations`` size it).

Resumable: the run folder holds ckpt.pt (model, EMA, optimizer, step, RNG state) and
log.jsonl; running the same command again continues. Device-agnostic (--device cpu|cuda).
On a GPU the crops are drawn on the device (data.TensorCropSampler), photo crops may be
larger than the 32x32 small images (--crop 64), and ``--time-limit`` runs the cosine
schedule over a wall-clock budget instead of a step count (for leased machines).
The validation bpsp (OA NLL estimate, EMA weights, fixed crops and t) is computed on
held-out folders (--val) every --eval-every steps. Export to a shipped model is a
separate step (weights.py), which also measures the loss curve L(t/D).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
from dataclasses import replace
import json
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .ardm import oa_loss
from .data import CropSampler, TensorCropSampler, pyramid, scan, subsample_chroma
from .model import TRUNKS, ARDMNet, ModelConfig, make_net, net_class
from .qlayers import set_bf16
from .weights import load


def val_batches(dirs: list[str], crop: int, n: int, seed: int = 1234) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fixed validation crops per folder/array (no augmentation, no gray conversion)."""
    out = {}
    for d in dirs:
        photos, arrays = scan(d)
        sampler = CropSampler(photos, arrays, crop, gray_fraction=0.0, seed=seed)
        sampler.rng = np.random.default_rng(seed)
        crops = []
        for _ in range(n):
            im = sampler._one()
            crops.append(im)
        out[Path(d).stem] = (np.stack(crops), np.zeros(n, dtype=bool))
    return out


@torch.no_grad()
def evaluate(net: torch.nn.Module, batches: dict, device: torch.device, repeats: int = 2) -> dict[str, float]:
    g = torch.Generator(device=device)
    res = {}
    for name, (crops, gray) in batches.items():
        g.manual_seed(0)
        vals = []
        for _ in range(repeats):
            for i in range(0, len(crops), 64):
                x = torch.as_tensor(crops[i:i + 64]).permute(0, 3, 1, 2).long().to(device)
                bpsp, _, _ = oa_loss(net, x, torch.as_tensor(gray[i:i + 64]).to(device), g)
                vals.append(bpsp.cpu())
        res[name] = float(torch.cat(vals).mean())
    return res


def lr_at(step: int, total: int, base: float, warmup: int = 200, progress: float | None = None) -> float:
    """Linear warm-up, then cosine decay to 5% of ``base`` (over ``progress`` in 0..1 when
    given, e.g. the fraction of a time budget spent, else over the steps)."""
    if step < warmup:
        return base * (step + 1) / warmup
    if progress is None:
        progress = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def grow(net: ARDMNet, dilations: tuple[int, ...]) -> ARDMNet:
    """``net`` with residual blocks of these dilations appended after its own, their weights
    zero: each new block adds nothing, so the grown network starts as exactly ``net``
    (its gradients are not zero, so the new blocks learn from the first step)."""
    config = replace(net.config, dilations=net.config.dilations + dilations)
    grown = make_net(config)
    missing, unexpected = grown.load_state_dict(net.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("blocks.") for k in missing), (missing, unexpected)
    with torch.no_grad():
        for block in grown.blocks[len(net.blocks):]:
            block.conv.weight.zero_()
            block.conv.bias.zero_()
    return grown


def _dilations(text: str) -> tuple[int, ...]:
    """'1,2,1,4' -> (1, 2, 1, 4)."""
    return tuple(int(d) for d in text.split(","))


def architecture(args: argparse.Namespace) -> dict:
    """The ModelConfig fields of --trunk, --dilations, --fine-channels and --fine-dilations
    (a network trained from scratch); ModelConfig's defaults where an option is not given."""
    arch = {"trunk": args.trunk, "fine_channels": args.fine_channels}
    if args.dilations:
        arch["dilations"] = _dilations(args.dilations)
    if args.fine_dilations:
        arch["fine_dilations"] = _dilations(args.fine_dilations)
    return arch


def bf16_native(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bfloat16 in hardware, so that ``--bf16`` speeds training
    up (CPUs with AVX512-BF16, GPUs from Ampere on); where it is emulated it slows it down."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return device.type == "cpu" and bool(torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):         # a torch without the probe: assume not
        return False


def group_loss(net: ARDMNet, x: torch.Tensor, gray: torch.Tensor, args: argparse.Namespace
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """oa_loss on one group of crops; with --chroma-fraction, that share of the RGB crops gets
    video-style subsampled chroma whose blocks start at the crop's interlace phase."""
    if args.chroma_fraction <= 0:
        return oa_loss(net, x, gray, None, args.interlace_fraction, green_first=args.green_first)
    b, dev = len(x), x.device
    phase = ((torch.rand(b, device=dev) < 0.5).long(), (torch.rand(b, device=dev) < 0.5).long())
    selected = (torch.rand(b, device=dev) < args.chroma_fraction) & ~gray
    x = subsample_chroma(x, selected, torch.rand(b, device=dev) < 0.6, *phase)
    return oa_loss(net, x, gray, None, args.interlace_fraction, phase, args.green_first)


class TrainingClock:
    """Seconds spent training, for a time budget that survives pauses: a step that took more
    than ``PAUSE_FACTOR`` times the median of the recent ones (the process was stopped, as
    with SIGSTOP while a benchmark runs, or the machine slept; or a validation ran) counts as
    a median step. Otherwise the cosine would decay through time nobody trained in."""

    PAUSE_FACTOR = 10.0

    def __init__(self, spent: float = 0.0, now=time.monotonic):
        self.spent, self._now = spent, now
        self._last = now()
        self._recent: list[float] = []

    def tick(self) -> float:
        """End a step; returns the seconds spent so far."""
        t = self._now()
        dt, self._last = t - self._last, t
        if len(self._recent) >= 5:
            typical = sorted(self._recent)[len(self._recent) // 2]
            if dt > self.PAUSE_FACTOR * typical:
                dt = typical
        self._recent = (self._recent + [dt])[-50:]
        self.spent += dt
        return self.spent


@contextlib.contextmanager
def term_saves():
    """Within: SIGTERM acts as Ctrl-C, so ``kill`` (or a background job, which ignores
    SIGINT) stops a run with its steps saved. A no-op outside the main thread."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:              # not the main thread: signals cannot be set here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def train(args: argparse.Namespace) -> int:
    """Run (or continue) the training ``args`` describe; returns the step it ended at."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    photos, arrays = [], []
    for d in args.data:
        p, a = scan(d)
        photos += p
        arrays += a
    use_tensor_sampler = args.sampler == "torch" or (args.sampler == "auto" and device.type == "cuda")
    if use_tensor_sampler:
        sampler = TensorCropSampler(pyramid(photos), arrays, args.crop, seed=args.seed, device=device)
    else:
        sampler = CropSampler(pyramid(photos), arrays, args.crop, seed=args.seed)
    if args.init:
        init = load(path=args.init).net
        config = replace(init.config, cross_anchor=args.cross_anchor or init.config.cross_anchor)
        net = net_class(config).from_integer(init, config)
        if args.grow:
            net = grow(net, _dilations(args.grow))
        net = net.to(device)
        config = net.config
    else:
        config = ModelConfig(channels=args.channels, mixtures=args.mixtures, cross_anchor=args.cross_anchor,
                             **architecture(args))
        net = make_net(config).to(device)
    if args.interlace_fraction > 0:         # the model is meant to be coded in that order
        net.config = config = replace(config, order="interlace2g" if args.green_first > 0
                                      else "interlace2")
    ema = copy.deepcopy(net)
    set_bf16(net, args.bf16)            # the trained copy only: validation (the EMA) stays float32
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, fused=device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True      # fixed shapes: pick the fastest conv once
    step, spent, ckpt = 0, 0.0, out / "ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, spent = state["step"], state.get("elapsed_s", 0.0)
        if use_tensor_sampler:
            sampler.generator.manual_seed(args.seed * 1_000_003 + step)
        else:
            sampler.rng = np.random.default_rng([args.seed, step])
        print(f"resumed at step {step}")
    val = val_batches(args.val, args.val_crop, args.val_crops) if args.val else {}
    log = open(out / "log.jsonl", "a")
    clock, seen, run_loss, last_ckpt = TrainingClock(spent), 0, [], time.time()
    # loss curve and running loss stay on the device: no host sync per step
    curve_sum, curve_n = torch.zeros(20, device=device), torch.zeros(20, device=device)

    def progress() -> float | None:
        return clock.spent / args.time_limit if args.time_limit else None

    # a time-limited run (the usual case) shows its budget in seconds, else its steps
    show_bar = getattr(args, "progress", None)
    show_bar = sys.stderr.isatty() if show_bar is None else show_bar
    if args.time_limit:
        bar = tqdm(total=round(args.time_limit), initial=min(round(spent), round(args.time_limit)), unit="s",
                   desc="training", disable=not show_bar, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s "
                   "[{elapsed}<{remaining}{postfix}]")
    else:
        bar = tqdm(total=args.steps, initial=step, unit="step", desc="training", disable=not show_bar)

    def save() -> None:
        state = {"model": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                 "elapsed_s": clock.spent, "config": config.to_dict(), "args": vars(args)}
        torch.save(state, out / "ckpt.tmp")
        (out / "ckpt.tmp").replace(ckpt)

    start_step = step
    with term_saves():   # a background job ignores SIGINT: SIGTERM saves the steps too
        try:
            while step < args.steps and (progress() or 0.0) < 1.0:
                mode = "qat" if step >= args.qat_from else "float"
                net.set_mode(mode)
                ema.set_mode(mode)
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, args.steps, args.lr, args.warmup, progress())
                if use_tensor_sampler:
                    groups = sampler.sample(args.batch)
                else:
                    crops, gray = sampler.sample(args.batch)
                    groups = [(torch.as_tensor(crops).permute(0, 3, 1, 2).long().to(device), torch.as_tensor(gray).to(device))]
                bpsp, frac, per_var = (torch.cat(parts) for parts in
                                       zip(*(group_loss(net, x, g, args) for x, g in groups)))
                loss = bpsp.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                with torch.no_grad():
                    decay = min(args.ema, (1 + step) / (10 + step))
                    ema_params, params = list(ema.parameters()), [p.detach() for p in net.parameters()]
                    torch._foreach_mul_(ema_params, decay)
                    torch._foreach_add_(ema_params, params, alpha=1 - decay)
                    bins = (frac * 20).long().clamp(0, 19)
                    curve_sum.index_add_(0, bins, per_var.detach())
                    curve_n.index_add_(0, bins, torch.ones_like(per_var))
                step += 1
                seen += args.batch
                run_loss.append(loss.detach())
                clock.tick()
                bar.update(min(round(clock.spent), round(args.time_limit)) - bar.n if args.time_limit else 1)
                done = step >= args.steps or (progress() or 0.0) >= 1.0
                if step % args.log_every == 0 or done:
                    rec = {"step": step, "mode": mode, "loss_bpsp": float(torch.stack(run_loss).mean()),
                           "lr": lr_at(step, args.steps, args.lr, args.warmup, progress()),
                           "crops_per_s": seen / max(clock.spent - spent, 1e-9), "elapsed_s": clock.spent}
                    bar.set_postfix(step=step, bpsp=f"{rec['loss_bpsp']:.3f}", refresh=False)
                    run_loss = []
                    if step % args.eval_every == 0 or done:
                        ema.eval()
                        rec["val_bpsp"] = evaluate(ema, val, device) if val else {}
                        rec["curve_bits"] = (curve_sum / curve_n.clamp(min=1)).cpu().numpy().round(3).tolist()
                    if not getattr(args, "quiet", False):
                        print(json.dumps(rec), flush=True)
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                if step % args.ckpt_every == 0 or done or (args.time_limit and time.time() - last_ckpt > 60):
                    save()
                    last_ckpt = time.time()
        except KeyboardInterrupt:      # Ctrl-C, or `timeout -s INT` ending a leased machine's share: keep the steps done
            if step > start_step:
                save()
            print(f"interrupted at step {step}; " + ("checkpoint saved" if step > start_step else "nothing new to save"),
                  file=sys.stderr)
    bar.close()
    log.close()
    return step


def slim_checkpoint(src: str | Path, dst: str | Path) -> int:
    """Copy a run's checkpoint with the optimizer's moment estimates in bfloat16: the file to
    commit between sessions (an s2d run: 11.7 -> 8.8 MB). The weights and their EMA stay
    float32; resuming from it (copy it to RUN/ckpt.pt) continues the run, since Adam's
    load_state_dict casts its state back to the parameters' float32. Returns dst's size."""
    state = torch.load(src, map_location="cpu", weights_only=False)
    for slot in state["opt"]["state"].values():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in slot:
                slot[key] = slot[key].to(torch.bfloat16)
    tmp = Path(str(dst) + ".tmp")
    torch.save(state, tmp)
    tmp.replace(dst)
    return Path(dst).stat().st_size


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ardmzip train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", help="folders or .npz files of training images")
    p.add_argument("--out", required=True, help="run folder (checkpoints, log)")
    p.add_argument("--val", nargs="*", default=[], help="held-out folders or .npz for validation bpsp")
    p.add_argument("--steps", type=int, default=9000)
    p.add_argument("--qat-from", type=int, default=7000, help="step at which quantization-aware training starts")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200, help="steps of linear learning-rate warm-up")
    p.add_argument("--init", default=None, help="start from a shipped model file (.npz); its architecture is kept")
    p.add_argument("--grow", default=None, metavar="D1,D2,...",
                   help="with --init: append zero-initialised residual blocks of these dilations")
    p.add_argument("--cross-anchor", action="store_true", help="anchor hidden subpixels on revealed sibling channels")
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--channels", type=int, default=48)
    p.add_argument("--trunk", choices=TRUNKS, default="full",
                   help="without --init: 'full' (the blocks at full resolution, ARDMNet) or 's2d' (the blocks "
                        "on 2x2 cells, s2d.S2DNet)")
    p.add_argument("--dilations", default=None, metavar="D1,D2,...",
                   help="without --init: the residual blocks' dilations (default 1,2,1,4,1,8,1,2)")
    p.add_argument("--fine-channels", type=int, default=48, help="s2d: channels of the full-resolution stream")
    p.add_argument("--fine-dilations", default=None, metavar="D1,...",
                   help="s2d: dilations of the full-resolution residual blocks (default 1)")
    p.add_argument("--mixtures", type=int, default=4)
    p.add_argument("--val-crops", type=int, default=128)
    p.add_argument("--val-crop", type=int, default=32,
                   help="side of the fixed validation crops (independent of --crop, so runs compare)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--bf16", action="store_true",
                   help="3x3 convolutions multiply in bfloat16 (training only): 1.4x the crops/s on CPUs "
                        "with AVX512-BF16; slower where bfloat16 is emulated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interlace-fraction", type=float, default=0.0,
                   help="share of training masks drawn from the 2x2-interlaced order; > 0 makes the model "
                        "declare that order, which files made with it then use")
    p.add_argument("--green-first", type=float, default=0.0, metavar="FRACTION",
                   help="share of the interlaced RGB masks that reveal each level's green subpixels before "
                        "its red and blue ones; > 0 (with --interlace-fraction) makes the model declare the "
                        "interlace2g order")
    p.add_argument("--chroma-fraction", type=float, default=0.0,
                   help="share of RGB crops given video-style subsampled chroma (60%% 4:2:0, 40%% 4:2:2), "
                        "blocks aligned with the interlaced order's coarse pixels")
    p.add_argument("--sampler", choices=("auto", "numpy", "torch"), default="auto",
                   help="crop sampler: numpy (CPU, per crop) or torch (on the device); auto: torch on CUDA")
    p.add_argument("--quiet", action="store_true", help="log records to log.jsonl only, not to stdout")
    p.add_argument("--time-limit", type=float, default=0.0, metavar="SECONDS",
                   help="stop after this much training time (summed over resumes); the cosine follows it")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--slim"]:          # python -m ardmzip.train --slim RUN/ckpt.pt FILE
        if len(argv) != 3:
            sys.exit("usage: python -m ardmzip.train --slim RUN/ckpt.pt FILE")
        print(f"{argv[2]}: {slim_checkpoint(argv[1], argv[2]):,} bytes")
        return
    p = parser()
    args = p.parse_args(argv)
    if args.grow and not args.init:
        p.error("--grow needs --init (it grows a shipped model)")
    train(args)


if __name__ == "__main__":
    main()

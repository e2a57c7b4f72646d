"""Fit a model to your own kind of pictures: fine-tune a shipped model, then export it.

    ardmzip fit thumbnails.npz -o thumbs.npz --minutes 30
    ardmzip compress more_thumbnails.npz -o set.ardm --model thumbs.npz

A dataset of one kind (CIFAR-like thumbnails, medical slices, satellite tiles) is cheaper to
code with a network that has seen that kind. ``fit`` starts from a shipped model's integer
weights (its architecture and coding order are kept), trains it on random 32x32 crops of the
given folders / .npz arrays (``train.train``: OA-ARDM objective, quantization-aware from the
first step, so the exported integer network is what was trained), and writes a model file
(``weights.run_to_bytes``) whose loss curve -- which the step schedule is cut from -- is
measured on the same pictures.

The run folder (default ``OUTPUT.run/``) holds the checkpoint and log: running the same
command again continues an interrupted run, and a finished one is only exported again. The
budget is training time (``--minutes``, summed over resumes; the learning rate follows a
cosine over it) or ``--steps``. Works on CPU or CUDA; the exported integer network codes
bit-identically on either.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import train, weights
from .codec import resolve_device
from .data import CropSampler, pyramid, scan
from .errors import InputError
from .imageio import write_file_atomic

CROP = 32                 # training crops (the shipped models were trained on 32x32)
CURVE_CROPS = 64          # crops the exported loss curve is measured on
DEFAULT_MINUTES = 30.0


@dataclass
class FitResult:
    path: Path
    sha256: str
    steps: int
    seconds: float
    curve_bits: list[float]


def _base_file(base: str | os.PathLike | None) -> Path:
    """A registered model's file, or a model file given by path."""
    if base is None or str(base) in weights.REGISTRY:
        name = weights.DEFAULT_MODEL if base is None else str(base)
        fname = Path(weights.REGISTRY[name][0])
        return fname if fname.is_absolute() else weights.MODEL_DIR / fname
    path = Path(base)
    if not path.is_file():
        raise InputError(f"--from {base}: neither a model of this ardmzip ({', '.join(sorted(weights.REGISTRY))}) "
                         "nor a model file")
    return path


def _curve_crops(data: list[str], n: int, seed: int = 99) -> np.ndarray:
    """Crops to measure the loss curve on: 64x64 where the pictures allow, else 32x32."""
    photos, arrays = [], []
    for d in data:
        p, a = scan(d)
        photos += p
        arrays += a
    side = 64 if any(min(p.shape[:2]) >= 64 for p in photos) or any(min(a.shape[1:3]) >= 64 for a in arrays) else CROP
    return CropSampler(pyramid(photos), arrays, side, gray_fraction=0.0, seed=seed).sample(n)[0]


def fit(data: list[str | os.PathLike], output: str | os.PathLike, *, base: str | os.PathLike | None = None,
        minutes: float | None = None, steps: int | None = None, run_dir: str | os.PathLike | None = None,
        lr: float = 2e-4, batch: int = 32, device: str = "auto", threads: int = 0, seed: int = 0,
        val: list[str | os.PathLike] = (), force: bool = False, progress: bool | None = None,
        curve_crops: int = CURVE_CROPS, bf16: bool | None = None) -> FitResult:
    """Fine-tune ``base`` (default: the default model) on ``data`` and write the model file
    ``output`` (its name is the file's stem). Resumes from ``run_dir`` if it holds a run.
    The budget is ``minutes`` of training (default DEFAULT_MINUTES) or ``steps``.
    ``val``: held-out folders / arrays whose bpsp (OA estimate) is logged as training goes.
    ``bf16``: multiply the 3x3 blocks in bfloat16 while training (train --bf16: 1.3x the steps
    per second of the default network on a CPU with AVX512-BF16); None: where the device does
    it in hardware. The model written is exact either way."""
    output = Path(output)
    name = output.stem
    if output.suffix != ".npz":
        raise InputError(f"{output}: a model file is an .npz (e.g. {name}.npz)")
    if name in weights.REGISTRY:
        raise InputError(f"{output}: {name!r} is the name of a shipped model; choose another file name")
    if output.exists() and not force:
        raise InputError(f"{output} exists; use -f to overwrite")
    if minutes is not None and steps is not None:
        raise InputError("give one training budget: minutes or steps, not both")
    if steps is None:
        minutes = DEFAULT_MINUTES if minutes is None else minutes
    if minutes is not None and not (minutes > 0 and math.isfinite(minutes)):
        raise InputError(f"--minutes must be a positive number, not {minutes}")
    for d in list(data) + list(val):
        if not Path(d).exists():
            raise InputError(f"{d}: no such file or folder")
    base_file = _base_file(base)
    base_model = weights.from_bytes(base_file.read_bytes(), base_file.stem)
    order = base_model.net.config.order
    run = Path(run_dir) if run_dir is not None else output.with_name(output.name + ".run")
    argv = [*map(str, data), "--out", str(run), "--init", str(base_file), "--qat-from", "0",
            "--lr", str(lr), "--warmup", "100", "--batch", str(batch), "--crop", str(CROP),
            "--device", device, "--threads", str(threads), "--seed", str(seed), "--quiet",
            "--log-every", "100", "--ckpt-every", "300", "--eval-every", "1000",
            "--interlace-fraction", "0.9" if order.startswith("interlace") else "0",
            "--green-first", "1" if order.startswith("interlace2g") else "0"]
    argv += ["--steps", str(steps)] if steps is not None else ["--steps", str(2**62), "--time-limit", str(minutes * 60)]
    if val:
        argv += ["--val", *map(str, val)]
    if bf16 is None:
        bf16 = train.bf16_native(resolve_device(device))
    if bf16:
        argv += ["--bf16"]
    args = train.parser().parse_args(argv)
    args.progress = progress
    try:
        train.train(args)
    except ValueError as e:                       # the crop sampler: nothing of at least 32x32
        raise InputError(str(e)) from None
    blob = weights.run_to_bytes(run, name, _curve_crops([str(d) for d in data], curve_crops), order=order,
                                meta={"base": f"{base_model.name} {base_model.sha256}",
                                      "data": [Path(d).name for d in data]})
    write_file_atomic(output, blob, force=force)
    model = weights.from_bytes(blob, name)
    state = train_state(run)
    return FitResult(output, model.sha256, state["step"], state["elapsed_s"], (model.curve / 1000).tolist())


def train_state(run: str | os.PathLike) -> dict:
    """The step and training time a run folder's checkpoint has reached."""
    import torch
    state = torch.load(Path(run) / "ckpt.pt", map_location="cpu", weights_only=False)
    return {"step": int(state["step"]), "elapsed_s": float(state.get("elapsed_s", 0.0))}

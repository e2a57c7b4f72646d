"""Shipped models: export from a training run, registry with hashes, loading.

A model file (models/NAME.npz) holds the *integer* network (int8 weights, int32 biases,
per-channel shifts), its config, the loss curve L(f) in millibits and a JSON metadata
record. Shipping integers rather than float weights means no float rounding ever happens
between the file and the coder. Files are registered by name with their full sha256,
which is checked on load; an .ardm file names its model and the first 8 bytes of that
hash, so a file is never decoded by the wrong model. A model file that is not registered
(from ``export`` or ``ardmzip fit``) is used by path (``load("thumbs.npz")``) or from its
bytes (``remember``: an archive that carries its model); it is then known by its hash.

    python -m ardmzip.weights export runs/oa-s48 --name oa-s48 --data ../shared/data/train
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .ardm import ORDERS
from .dlm import TABLES_HASH
from .errors import ModelMismatch
from .model import TRUNKS, IntegerNet, ModelConfig, integer_from_layers, make_net
from .qlayers import IntConv

MODEL_DIR = Path(__file__).resolve().parent.parent / "models"
FILE_VERSION = 1
CURVE_POINTS = 33          # L at f = 0, 1/32, ..., 1
# name -> (file name, sha256 of the file). Add a line when shipping a model.
REGISTRY: dict[str, tuple[str, str]] = {
    "oa-s48": ("oa-s48.npz", "26dd96a7a5e5ea0d9f09e83e0e20f75cf7aab675ee8645707082d14bbd4e0261"),
    "xa-s48": ("xa-s48.npz", "e77ee6b2310c40900bef8caf4459dc7f12af491d55b65a19f1343e50a8825cb5"),
    "xa2-s48": ("xa2-s48.npz", "ee2fcd04c357da951e75b9750455280a8422f8423477b17372290882413494f4"),
    "xa3-s48": ("xa3-s48.npz", "15514cd71b1f0216d01953a86ccb6352644a4c74e1feb470ff820bf2f14a9d7a"),
    "xa4-s48": ("xa4-s48.npz", "1b5913bb63951f0e0ae59e756840a5b006352ea4f3f7e4d62080c9f6e31c84ee"),
    "xi-s48": ("xi-s48.npz", "c28893b5d1ca38927c293d5c9f5898c2fca5713435a19676029219a2fd8d403f"),
    "xic-s48": ("xic-s48.npz", "fa17e80ca2be2fd2fc32730a8d34669a12bed3342c148a20b7d05e2279c92ab0"),
    "cifar10-s48": ("cifar10-s48.npz", "e562fe1d027c7250559bf9ca07fac0b9ae1755891825d34155903ffb8423fabc"),
    "photo-s48": ("photo-s48.npz", "474f5d1de6f4d60e9630e24334da978f1de6d616930f70fca6cd1303e62d18ef"),
    "photog-s48": ("photog-s48.npz", "3abc39aec0b51db8cff3a1847bbf65e1006534c503174610283de55bda639a4e"),
}
DEFAULT_MODEL = "xic-s48"     # where one model must be named (fit's start); compress picks per image (choose.py)


@dataclass
class Model:
    """A loaded model: the exact network plus what the codec needs to know about it."""
    name: str
    sha256: str
    net: IntegerNet
    curve: np.ndarray          # (CURVE_POINTS,) int64 millibits per hidden variable
    meta: dict
    data: bytes = b""          # the model file itself (what an archive carries)

    @property
    def hash8(self) -> bytes:
        return bytes.fromhex(self.sha256)[:8]

    def net_on(self, device: torch.device | str) -> IntegerNet:
        """The network on ``device``, made once per device and kept: its layers keep the CPU
        int8 path they chose and checked on first use (the probes cost ~0.08 s a network,
        which every batch of an archive paid again with a fresh copy)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        nets = self.__dict__.setdefault("_nets", {})
        if str(device) not in nets:
            nets[str(device)] = self.net.to(device)
        return nets[str(device)]

    def __getstate__(self) -> dict:          # pickled / copied without the per-device copies
        state = self.__dict__.copy()
        state.pop("_nets", None)
        return state


def to_bytes(inet: IntegerNet, curve: np.ndarray, meta: dict) -> bytes:
    arrays = {}
    specs = []
    for name, layer in inet.named_layers():      # either architecture (IntegerNet, s2d.IntegerS2DNet)
        w = layer.weight.cpu()
        arrays[f"{name}.w"] = w.numpy().astype(np.int8)
        arrays[f"{name}.b"] = layer.bias.cpu().numpy().astype(np.int32)
        arrays[f"{name}.shift"] = layer.shift().numpy().astype(np.int8)
        specs.append({"name": name, "padding": layer.padding, "dilation": layer.dilation,
                      "lo": layer.lo, "hi": layer.hi})
    meta = dict(meta, file_version=FILE_VERSION, config=inet.config.to_dict(), layers=specs,
                tables_sha256=TABLES_HASH)
    arrays["curve"] = np.asarray(curve, dtype=np.int32)
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def from_bytes(data: bytes, name: str) -> Model:
    """A model from its file's bytes; ModelMismatch if they are not a model file."""
    try:
        return _from_bytes(bytes(data), name)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as e:
        raise ModelMismatch(f"model {name}: not an ardmzip model file ({type(e).__name__})") from None


def _from_bytes(data: bytes, name: str) -> Model:
    sha = hashlib.sha256(data).hexdigest()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        if meta.get("file_version") != FILE_VERSION:
            raise ModelMismatch(f"model {name}: unsupported model file version {meta.get('file_version')}")
        if meta["tables_sha256"] != TABLES_HASH:
            raise ModelMismatch(f"model {name} was made with other probability tables")
        layers = {}
        for spec in meta["layers"]:
            n = spec["name"]
            shift = torch.as_tensor(z[f"{n}.shift"].astype(np.float32))
            layers[n] = IntConv(torch.as_tensor(z[f"{n}.w"].astype(np.float32)),
                                torch.as_tensor(z[f"{n}.b"].astype(np.float32)),
                                torch.pow(2.0, -shift), spec["padding"], spec["dilation"], spec["lo"], spec["hi"])
        curve = z["curve"].astype(np.int64)
    config = ModelConfig.from_dict(meta["config"])
    if config.order not in ORDERS:
        raise ModelMismatch(f"model {name} declares a coding order this ardmzip does not know ({config.order!r})")
    if config.trunk not in TRUNKS:
        raise ModelMismatch(f"model {name} has a network this ardmzip does not know (trunk {config.trunk!r})")
    net = integer_from_layers(config, layers)
    return Model(name, sha, net, curve, meta, data)


_CACHE: dict[str, Model] = {}
_KNOWN: dict[str, Model] = {}          # sha256 -> unregistered models loaded by path or from bytes


def load(name: str | os.PathLike | Model | None = None, path: str | os.PathLike | None = None) -> Model:
    """A registered model by name (hash-checked), or any model file by path (``path``, or a
    ``name`` that is not registered but names a file). A model file whose sha256 is a
    registered model's is that model, under its registered name."""
    if isinstance(name, Model):
        return name
    if path is None and name is not None and str(name) not in REGISTRY and \
            (os.path.isfile(name) or str(name).endswith(".npz")):
        path = name
    if path is not None:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ModelMismatch(f"cannot read model file {os.fsdecode(path)}: {e.strerror or e}") from None
        return remember(data, Path(path).stem)
    name = name or DEFAULT_MODEL
    if name in _CACHE:
        return _CACHE[name]
    if name not in REGISTRY:
        raise ModelMismatch(f"unknown model {name!r}; this ardmzip has: {', '.join(sorted(REGISTRY)) or 'none'} "
                            "(or give a model file's path)")
    fname, sha = REGISTRY[name]
    data = (MODEL_DIR / fname).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise ModelMismatch(f"model file {fname} does not match its registered sha256")
    _CACHE[name] = from_bytes(data, name)
    return _CACHE[name]


def registered_name(sha256: str) -> str | None:
    """The registered name of the model whose file has this sha256 (hex), or None."""
    return next((n for n, (_, sha) in REGISTRY.items() if sha == sha256), None)


def remember(data: bytes, name: str) -> Model:
    """The model in a model file's bytes, known by its hash from now on in this process
    (``find_by_hash`` finds it); a registered model's bytes give the registered model."""
    sha = hashlib.sha256(data).hexdigest()
    if (registered := registered_name(sha)) is not None:
        return load(registered)
    if sha not in _KNOWN:
        _KNOWN[sha] = from_bytes(data, name)
    return _KNOWN[sha]


def register(path: str | Path, name: str | None = None) -> Model:
    """Make a model file usable by name in this process (experiments, tests)."""
    p = Path(path).resolve()
    name = name or p.stem
    REGISTRY[name] = (str(p), hashlib.sha256(p.read_bytes()).hexdigest())
    _CACHE.pop(name, None)
    return load(name)


def find_by_hash(name: str, hash8: bytes) -> Model:
    """The model a file names: the registered one of that name and hash, else a model file
    loaded in this process (by path or from an archive) with that hash; a clear error if none."""
    if name in REGISTRY:
        model = load(name)
        if model.hash8 == hash8:
            return model
    for model in _KNOWN.values():
        if model.hash8 == hash8:
            return model
    raise ModelMismatch(f"this file was made by model {name!r} ({hash8.hex()}), which this ardmzip does not have "
                        "(give its model file: --model PATH)")


@torch.no_grad()
def measure_curve(inet: IntegerNet, crops: np.ndarray, points: int = CURVE_POINTS, seed: int = 0) -> np.ndarray:
    """Mean exact cost (millibits) of a hidden subpixel at revealed fractions i/(points-1)."""
    from .dlm import exact_frequencies, bits_of
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(crops).permute(0, 3, 1, 2).long()
    b, _, h, w = x.shape
    d = 3 * h * w
    out = []
    for i in range(points):
        n_rev = min(d - 1, round(i * d / (points - 1)))
        ranks = torch.rand(b, d, generator=g).argsort(1).argsort(1).view(b, h, w, 3).permute(0, 3, 1, 2)
        mask = (ranks < n_rev).int()
        params, anchor = inet.full(x, mask)                            # (B,3,3,M,H,W)
        hid = mask == 0
        p = params.permute(0, 1, 4, 5, 2, 3)[hid]                       # (N, 3, M)
        a, target = anchor[hid], x[hid]
        bits = sum(bits_of(exact_frequencies(p[j:j + 16384], a[j:j + 16384]), target[j:j + 16384])
                   for j in range(0, len(p), 16384))
        out.append(round(1000 * bits / len(p)))
    return np.array(out, dtype=np.int64)


def run_to_bytes(run: str | Path, name: str, crops: np.ndarray, checkpoint: str = "ckpt.pt",
                 order: str | None = None, meta: dict | None = None) -> bytes:
    """A model file's bytes from a run's EMA weights, its loss curve measured on ``crops``
    (B, H, W, 3) uint8; ``order`` overrides the coding order the run's config declares (e.g.
    "interlace2/palette-random" for a run trained interlaced)."""
    state = torch.load(Path(run) / checkpoint, map_location="cpu", weights_only=False)
    net = make_net(ModelConfig.from_dict(state["config"]))
    net.load_state_dict(state["ema"])
    inet = net.export()
    if order is not None:
        if order not in ORDERS:
            raise ValueError(f"unknown coding order {order!r} (one of {', '.join(ORDERS)})")
        inet.config = replace(inet.config, order=order)
    meta = dict(meta or {}, name=name, step=state["step"], train_args=state.get("args", {}))
    return to_bytes(inet, measure_curve(inet, crops), meta)


def export(run: str, name: str, data: list[str], out_dir: Path = MODEL_DIR, curve_crops: int = 32,
           checkpoint: str = "ckpt.pt", order: str | None = None) -> Path:
    """Write models/NAME.npz from a run's EMA weights (``run_to_bytes``), the loss curve
    measured on 64x64 crops of the photos in ``data``."""
    from .data import CropSampler, pyramid, scan
    photos, arrays = [], []
    for d in data:
        p, a = scan(d)
        photos += p
        arrays += a
    crops, _ = CropSampler(pyramid(photos), [], 64, gray_fraction=0.0, seed=99).sample(curve_crops)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.npz"
    path.write_bytes(run_to_bytes(run, name, crops, checkpoint, order))
    curve = from_bytes(path.read_bytes(), name).curve
    print(f"{path}: sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}; curve (bits) {(curve / 1000).round(2).tolist()}")
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="ardmzip", description="Export a training run to a shipped integer model.")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("run")
    e.add_argument("--name", required=True)
    e.add_argument("--data", nargs="+", required=True, help="training folders (for the loss curve)")
    e.add_argument("--checkpoint", default="ckpt.pt")
    e.add_argument("--out-dir", default=str(MODEL_DIR))
    e.add_argument("--order", choices=ORDERS, default=None, help="coding order to declare (default: the run's)")
    a = p.parse_args(argv)
    export(a.run, a.name, a.data, Path(a.out_dir), checkpoint=a.checkpoint, order=a.order)


if __name__ == "__main__":
    main()

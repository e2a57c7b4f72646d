"""Helpers shared by several test files (imported as ``helpers``: pytest puts tests/ on the path)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ardmzip import container
from ardmzip.qlayers import IntConv


def full_layout(ardm: bytes) -> bytes:
    """An .ardm file in the container's full layout, the same header and streams: what the
    fixtures written before the compact layout (which files of shipped models now get) hold."""
    return container.pack(*container.unpack(ardm), compact=False)


def random_inputs(b: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random values and a random mask, revealed at a random density per picture."""
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 256, (b, 3, h, w), generator=g)
    mask = (torch.rand(b, 3, h, w, generator=g) < torch.rand(b, 1, 1, 1, generator=g)).int()
    return values, mask


def reference_layer(layer: IntConv, x: torch.Tensor) -> torch.Tensor:
    """The integer layer in float64, where every sum here is exact by a wide margin."""
    acc = F.conv2d(x.double(), layer.weight.double(), padding=layer.padding, dilation=layer.dilation)
    acc = acc + layer.bias.double().view(1, -1, 1, 1)
    return torch.floor(acc * layer.scale.double().view(1, -1, 1, 1)).clamp(layer.lo, layer.hi)


def photos(folder: Path, n: int = 3, size: int = 70) -> Path:
    """A folder of n smooth, slightly noisy size x size RGB PNGs (training data for smoke runs)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = 120 + 50 * np.sin(x / (4 + i)) + 30 * np.cos(y / 6)
        rgb = np.stack([base + 15 * c + rng.normal(0, 4, base.shape) for c in range(3)], -1)
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def assert_masks_in_the_mixing_pass(mix, freq: torch.Tensor, args: tuple, rng, monkeypatch) -> None:
    """chroma.mix / copies.mix with ``mask`` (Constraint.probabilities' fused pass) give the
    numpy path's mix of dlm.apply_mask's rows, as integers and as probabilities, on both paths;
    a mask row allowing nothing keeps freq's row."""
    from ardmzip.dlm import apply_mask, frequencies_to_probabilities
    table = torch.from_numpy((rng.random((4, 256)) < 0.6).astype(np.int32))
    table[3] = 0
    row = rng.integers(0, 4, len(freq)).astype(np.int64)
    monkeypatch.setenv("ARDMZIP_JIT", "0")
    want = mix(apply_mask(freq, table, row), *args)
    assert torch.equal(mix(freq, *args, mask=(table, row)), want)
    monkeypatch.setenv("ARDMZIP_JIT", "1")
    assert torch.equal(mix(freq, *args, mask=(table, row)), want)
    assert np.array_equal(mix(freq, *args, probabilities=True, mask=(table, row)), frequencies_to_probabilities(want))


def green_first_model(name: str = "xic-s48"):
    """A shipped model's network declaring the "interlace2g" order (not trained for it: files
    made with it are larger, but code and decode like any model's). Not registered: files name
    it in the full layout, and it decodes in this process, which loaded it."""
    import dataclasses
    from ardmzip import weights
    m = weights.load(name)
    net = dataclasses.replace(m.net.config, order="interlace2g/palette-random")
    inet = type(m.net).__new__(type(m.net))
    inet.__dict__.update(m.net.__dict__)
    inet.config = net
    return weights.remember(weights.to_bytes(inet, m.curve, dict(m.meta, note="green first, for tests")),
                            f"{name}-g")

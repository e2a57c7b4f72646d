"""The CUDA path gives the CPU's results bit for bit: network outputs, frequencies, files.

Skipped without a CUDA device (CI has none). On a machine with one: ``pytest tests/test_gpu.py``.
``ARDMZIP_TEST_DEVICE=cpu`` runs the same checks CPU-against-CPU, which proves only that the
tests themselves work where no GPU is.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import ardmzip
from ardmzip import weights
from ardmzip.dlm import exact_frequencies
from ardmzip.qlayers import exact_conv2d

DEVICE = os.environ.get("ARDMZIP_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")


def random_image(h: int, w: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 5.0 + seed) + 40 * np.cos(y / 7.0)
    planes = [base + 20 * c + rng.normal(0, 6, base.shape) for c in range(channels)]
    return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8).squeeze()


@pytest.mark.parametrize("shape", [(1, 3, 37, 41), (3, 3, 64, 29)])
def test_integer_network_and_frequencies_equal_the_cpu(shape):
    net = weights.load().net
    g = torch.Generator().manual_seed(sum(shape))
    values = torch.randint(0, 256, shape, generator=g)
    mask = (torch.rand(shape, generator=g) < 0.4).int()
    cpu_params, cpu_anchor = net.full(values, mask)
    dev_params, dev_anchor = net.to(DEVICE).full(values.to(DEVICE), mask.to(DEVICE))
    assert torch.equal(cpu_params, dev_params.cpu()) and torch.equal(cpu_anchor, dev_anchor.cpu())
    p = cpu_params.permute(0, 1, 4, 5, 2, 3).reshape(-1, 3, net.config.mixtures)
    a = cpu_anchor.reshape(-1)
    assert torch.equal(exact_frequencies(p, a), exact_frequencies(p.to(DEVICE), a.to(DEVICE)).cpu())


def test_exact_conv_equals_a_float64_reference_at_the_bound():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-127, 128, (2, 48, 33, 35), generator=g).float()
    w = torch.randint(-127, 128, (48, 48, 3, 3), generator=g).float()
    w = w * (2 ** 24 - 1) // (127 * w.abs().flatten(1).sum(1).max())        # partial sums just below 2^24
    ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=2, dilation=2)
    out = exact_conv2d(x.to(DEVICE), w.to(DEVICE), 2, 2).cpu()
    assert torch.equal(out.double(), ref)


@pytest.mark.parametrize("channels,size", [(3, (45, 52)), (1, (40, 33)), (4, (21, 30))])
def test_files_are_identical_across_devices(channels, size):
    image = random_image(*size, channels, seed=channels)
    on_cpu = ardmzip.compress(image, steps=6)
    assert ardmzip.compress(image, steps=6, device=DEVICE) == on_cpu
    decoded = ardmzip.decompress(on_cpu, device=DEVICE)                # gray comes back as (H, W)
    assert np.array_equal(decoded.reshape(image.shape), image)


def test_shipped_fixture_files_decode_on_the_device():
    from test_codec import SHIPPED_FILES, legacy_image
    for path in SHIPPED_FILES:
        assert np.array_equal(ardmzip.decompress(path.read_bytes(), device=DEVICE), legacy_image()), path.name


def test_mixture_files_are_identical_across_devices(monkeypatch):
    """Chroma blocks and colour copies (format version 3) mix on the device too."""
    from ardmzip import codec, container
    from test_chroma import video_frame
    from test_constraint import palette_image
    from test_codec import V3_FILES, legacy_image
    monkeypatch.setattr(codec, "TRY_ALL_CONSTRAINTS", 100)           # large-plane rule: copies for palettes
    for image, kind in [(video_frame(34, 40, 1), 5), (palette_image(36, 30, 3, seed=2), 6)]:
        on_cpu = ardmzip.compress(image, steps=6)
        assert container.unpack(on_cpu)[1][0][0] == kind
        assert ardmzip.compress(image, steps=6, device=DEVICE) == on_cpu
        assert np.array_equal(ardmzip.decompress(on_cpu, device=DEVICE), image)
    for path in V3_FILES:
        assert np.array_equal(ardmzip.decompress(path.read_bytes(), device=DEVICE), legacy_image()), path.name


@pytest.mark.parametrize("shape", [(1, 3, 37, 41), (2, 3, 64, 30)])
def test_s2d_network_equals_the_cpu(shape):
    """The s2d network (cells, int8 GEMMs on CPU; im2col + float32 GEMMs on CUDA) gives the
    same integers on the device, whole and band by band, odd sizes included."""
    from ardmzip.model import ModelConfig, make_net
    torch.manual_seed(1)
    config = ModelConfig(channels=24, dilations=(1, 2, 4), head_hidden=16, mixtures=2, trunk="s2d",
                         fine_channels=16, fine_dilations=(1, 2), cross_anchor=True)
    net = make_net(config)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    inet = net.export()
    g = torch.Generator().manual_seed(sum(shape))
    values = torch.randint(0, 256, shape, generator=g)
    mask = (torch.rand(shape, generator=g) < 0.4).int()
    cpu_params, cpu_anchor = inet.full(values, mask)
    dev = inet.to(DEVICE)
    dev_params, dev_anchor = dev.full(values.to(DEVICE), mask.to(DEVICE))
    assert torch.equal(cpu_params, dev_params.cpu()) and torch.equal(cpu_anchor, dev_anchor.cpu())
    banded, _ = dev.trunk_banded(values.to(DEVICE), mask.to(DEVICE), 64)
    assert torch.equal(banded.cpu(), inet.trunk(values, mask)[0])

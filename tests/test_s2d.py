"""The s2d network (s2d.py): exact integers on crops, batches and threads, the same as its
float64 reference and its fake-quant forward; model files; the codec with strips and the
empty-step canvas; training from scratch."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import ardmzip
from ardmzip import codec, constraint, container, train, weights
from ardmzip.errors import ModelMismatch
from ardmzip.features import HALO, context_features
from ardmzip.model import ARDMNet, IntegerNet, ModelConfig, integer_from_layers, make_net
from ardmzip.s2d import IntegerS2DNet, S2DNet
from helpers import photos, random_inputs, reference_layer

SMALL = ModelConfig(channels=16, dilations=(1, 2), head_hidden=16, mixtures=2, trunk="s2d", fine_channels=8,
                    fine_dilations=(1,))
SMALL_CROSS = replace(SMALL, cross_anchor=True, fine_dilations=(1, 2))


def random_s2d(seed: int = 0, config: ModelConfig = SMALL) -> S2DNet:
    """A float s2d net with weights scaled to its inputs (features ~60, activations ~2), so
    that its streams are spread over [-127, 127] rather than stuck at the clamps."""
    torch.manual_seed(seed)
    net = S2DNet(config)
    with torch.no_grad():
        for _, q in net.named_layers():
            in_scale = 60.0 if q.a_in == 0 else 2.0
            q.conv.weight.normal_(0, 4 / math.sqrt(q.conv.weight[0].numel()) / in_scale)
            q.conv.bias.normal_(0, 0.5)
    return net




@pytest.fixture(scope="module")
def inet() -> IntegerS2DNet:
    return random_s2d(0).export()




def reference_full(net: IntegerS2DNet, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The s2d arithmetic written out in float64, cells by reshaping (not pixel_unshuffle)."""
    feats, _ = context_features(values, mask, net.config.cross_anchor)
    feats = feats.double()
    b, n, h, w = feats.shape
    hc, wc = (h + 1) // 2, (w + 1) // 2
    padded = torch.zeros(b, n, 2 * hc, 2 * wc, dtype=torch.float64)
    padded[:, :, :h, :w] = feats
    # channel (c, i, j) of a cell = feature c of its pixel (2 y + i, 2 x + j)
    cells = padded.view(b, n, hc, 2, wc, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * n, hc, wc)
    x = reference_layer(net.stem, cells)
    for block in net.blocks:
        x = (x + reference_layer(block, x.clamp(min=0))).clamp(-127, 127)
    up = reference_layer(net.up, x.clamp(min=0))
    f = up.shape[1] // 4
    up = up.view(b, f, 2, 2, hc, wc).permute(0, 1, 4, 2, 5, 3).reshape(b, f, 2 * hc, 2 * wc)[:, :, :h, :w]
    y = (up + reference_layer(net.skip, feats)).clamp(-127, 127)
    for block in net.fine:
        y = (y + reference_layer(block, y.clamp(min=0))).clamp(-127, 127)
    out = reference_layer(net.head_out, reference_layer(net.head_hidden, y.clamp(min=0)))
    return out.view(b, 3, 3, net.config.mixtures, h, w)


def test_config_halo_grid_and_record():
    assert SMALL.halo == 24 and SMALL.grid == 2            # 15 + 2 * 3 + 2 + 1 = 24
    assert replace(SMALL, fine_dilations=(2,)).halo == 26  # 25, rounded up to even
    default = ModelConfig()
    assert default.trunk == "full" and default.grid == 1 and default.halo == HALO + sum(default.dilations)
    # today's network writes today's record; an s2d record comes back equal (tuples included)
    assert set(default.to_dict()) == {"channels", "dilations", "head_hidden", "mixtures", "cross_anchor", "order"}
    assert ModelConfig.from_dict(json.loads(json.dumps(SMALL_CROSS.to_dict()))) == SMALL_CROSS
    assert isinstance(make_net(SMALL), S2DNet) and isinstance(make_net(default), ARDMNet)
    with pytest.raises(ValueError, match="unknown trunk"):
        make_net(replace(SMALL, trunk="zigzag"))


@pytest.mark.parametrize("config", [SMALL, SMALL_CROSS], ids=["spatial", "cross"])
@pytest.mark.parametrize("shape", [(2, 37, 45), (1, 30, 41), (1, 1, 1), (1, 3, 2)])
def test_integer_s2d_equals_float64_reference(config, shape):
    net = random_s2d(1, config).export()
    values, mask = random_inputs(*shape, seed=sum(shape))
    params, anchor = net.full(values, mask)
    assert params.shape == (shape[0], 3, 3, config.mixtures, *shape[1:]) and anchor.shape == (shape[0], 3, *shape[1:])
    assert torch.equal(params.double(), reference_full(net, values, mask))
    if shape[1] > 10:
        # the test exercises large integers, and streams that are not stuck at their clamps
        assert params.abs().max() > 100
        x, _ = net.trunk(values, mask)
        assert x.shape == (shape[0], config.fine_channels, *shape[1:])
        assert float(((x > 0) & (x < 127)).float().mean()) > 0.2


def test_qat_forward_is_what_the_export_computes():
    net = random_s2d(2, SMALL_CROSS)
    values, mask = random_inputs(2, 33, 26, seed=3)
    params, anchor = net.export().full(values, mask)
    net.set_mode("qat")
    fake, fake_anchor = net(values, mask)
    assert torch.equal(fake * 16, params) and torch.equal(fake_anchor, anchor)
    net.set_mode("float")                                   # float mode: close, and trainable
    real, _ = net(values, mask)
    assert real.shape == fake.shape and float((real - fake).detach().abs().mean()) < 1.0
    real.square().mean().backward()
    assert all(q.conv.weight.grad is not None and bool(q.conv.weight.grad.abs().sum() > 0)
               for _, q in net.named_layers())


def test_from_integer_inverts_export():
    inet = random_s2d(3, SMALL_CROSS).export()
    again = S2DNet.from_integer(inet).export()
    assert [n for n, _ in inet.named_layers()] == [n for n, _ in again.named_layers()] == [
        "stem", "block0", "block1", "up", "skip", "fine0", "fine1", "head_hidden", "head_out"]
    for (_, a), (_, b) in zip(inet.named_layers(), again.named_layers()):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) and torch.equal(a.scale, b.scale)


def test_crops_starting_at_even_rows_give_the_pictures_values(inet):
    halo = inet.config.halo
    values, mask = random_inputs(1, 120, 110, seed=6)
    full, full_anchor = inet.full(values, mask)
    for y0, y1, x0, x1 in ((10, 118, 4, 105), (0, 75, 0, 110), (46, 120, 0, 110), (2, 101, 8, 109)):
        crop, crop_anchor = inet.full(values[..., y0:y1, x0:x1], mask[..., y0:y1, x0:x1])
        # rows/cols at least `halo` from a crop edge that is not the picture's see the same context
        iy0, ix0 = (0 if y0 == 0 else halo), (0 if x0 == 0 else halo)
        iy1, ix1 = (y1 - y0) - (0 if y1 == 120 else halo), (x1 - x0) - (0 if x1 == 110 else halo)
        assert iy1 > iy0 and ix1 > ix0
        assert torch.equal(crop[..., iy0:iy1, ix0:ix1], full[..., y0 + iy0:y0 + iy1, x0 + ix0:x0 + ix1])
        assert torch.equal(crop_anchor[..., iy0:iy1, ix0:ix1], full_anchor[..., y0 + iy0:y0 + iy1, x0 + ix0:x0 + ix1])
    # a crop off the grid (odd first row) sees other cells: why strips start at even rows
    odd, _ = inet.full(values[..., 11:118, :], mask[..., 11:118, :])
    assert not torch.equal(odd[..., halo:-halo, :], full[..., 11 + halo:118 - halo, :])


def test_same_result_alone_in_a_batch_and_with_one_or_two_threads(inet):
    values, mask = random_inputs(4, 36, 43, seed=4)
    batch, _ = inet.full(values, mask)
    for i in range(4):
        alone, _ = inet.full(values[i:i + 1], mask[i:i + 1])
        assert torch.equal(alone[0], batch[i])
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(inet.full(values, mask)[0])
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0], batch) and torch.equal(results[1], batch)


def test_trunk_banded_and_head_rows_match_full(inet):
    values, mask = random_inputs(1, 31, 29, seed=8)
    x, anchor = inet.trunk(values, mask)
    y, anchor_y = inet.trunk_banded(values, mask, band_pixels=64)
    assert torch.equal(x, y) and torch.equal(anchor, anchor_y)
    rows = inet.head(x[0].permute(1, 2, 0).reshape(-1, x.shape[1]))
    full, _ = inet.full(values, mask)
    assert torch.equal(rows.view(31, 29, 3, 3, -1).permute(2, 3, 4, 0, 1), full[0])


def test_model_file_round_trip_and_old_files_load_as_full(inet, tmp_path):
    curve = np.linspace(7000, 2000, weights.CURVE_POINTS).astype(np.int64)
    data = weights.to_bytes(inet, curve, {"name": "tiny-s2d"})
    model = weights.from_bytes(data, "tiny-s2d")
    assert isinstance(model.net, IntegerS2DNet) and model.net.config == inet.config
    assert [s["name"] for s in model.meta["layers"]] == [n for n, _ in inet.named_layers()]
    assert model.meta["config"]["trunk"] == "s2d" and np.array_equal(model.curve, curve)
    values, mask = random_inputs(1, 25, 34, seed=9)
    assert torch.equal(model.net.full(values, mask)[0], inet.full(values, mask)[0])
    assert torch.equal(model.net.to("cpu").full(values, mask)[0], inet.full(values, mask)[0])
    # a network this ardmzip does not know is refused by name, not misread
    strange = weights.to_bytes(IntegerS2DNet.from_layers(replace(inet.config, trunk="hexagons"),
                                                         dict(inet.named_layers())), curve, {})
    with pytest.raises(ModelMismatch, match="does not know"):
        weights.from_bytes(strange, "strange")
    # the shipped (older) files: no s2d keys, "full"; the default one writes the same record again
    for name in ("oa-s48", weights.DEFAULT_MODEL):
        old = weights.load(name)
        assert isinstance(old.net, IntegerNet) and old.net.config.trunk == "full"
        assert "trunk" not in old.meta["config"]
        assert old.net.config.halo == HALO + sum(old.net.config.dilations)
        if name == weights.DEFAULT_MODEL:
            again = weights.from_bytes(weights.to_bytes(old.net, old.curve, old.meta), name)
            assert again.meta == old.meta and again.net.config == old.net.config
        layers = dict(old.net.named_layers())
        rebuilt = integer_from_layers(old.net.config, layers)
        assert isinstance(rebuilt, IntegerNet) and [n for n, _ in rebuilt.named_layers()] == list(layers)


def codable_s2d(seed: int = 5) -> IntegerS2DNet:
    """A random s2d net whose head predicts near the anchor (log-scale ~1.5, small weights),
    so that a smooth picture codes below 8 bits a subpixel through the network (not stored)."""
    net = random_s2d(seed)
    m = SMALL.mixtures
    with torch.no_grad():
        net.head_out.conv.weight.mul_(0.02)
        bias = net.head_out.conv.bias.view(3, 3, m)
        bias[:, 0], bias[:, 1], bias[:, 2] = 0.0, 0.0, 1.5
    return net.export()


def smooth_image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 7.0 + seed) + 40 * np.cos(y / 5.0)
    return np.clip(np.stack([base + 20 * k + rng.normal(0, 3, (h, w)) for k in range(c)], -1), 0, 255
                   ).astype(np.uint8)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("s2d") / "tiny-s2d.npz"
    curve = np.linspace(7000, 2000, weights.CURVE_POINTS).astype(np.int64)
    path.write_bytes(weights.to_bytes(codable_s2d(), curve, {"name": "tiny-s2d"}))
    return str(path)


@pytest.mark.parametrize("steps", [4, 16])          # 16: a pyramid (its smaller pictures have 2x2 cells too)
@pytest.mark.parametrize("image", [smooth_image(70, 90, 3), smooth_image(71, 53, 1)[..., 0]], ids=["rgb", "gray"])
def test_codec_round_trip_with_strips(model_file, image, steps, monkeypatch):
    data = ardmzip.compress(image, steps=steps, model=model_file)
    assert container.unpack(data)[0].version == (10 if steps == 16 else 4)
    header, streams = container.unpack(data)
    assert streams[0][0] not in (constraint.STORED, constraint.CONSTANT)      # coded through the network
    assert 8 * len(data) / image.size < 8
    assert np.array_equal(ardmzip.decompress(data), image)
    # small strips (several per picture, every one starting at an even row): the same pixels,
    # and an encoder with them writes the same file
    monkeypatch.setattr(codec, "MIN_STRIP_ROWS", 1)
    small = image.shape[1] * 60
    m = weights.load(model_file)
    pc = codec.PlaneCoder(m.net, m.curve, image.shape[0], image.shape[1], image.ndim == 2, steps, 0, small,
                          pyramid=True)
    assert len(pc.strips) > 2 and all(max(0, r0 - m.net.config.halo) % 2 == 0 for r0, _ in pc.strips)
    for strip_pixels, chunk in [(small, 77), (1 << 20, 1000)]:
        pic = codec.decompress_picture(data, strip_pixels=strip_pixels, chunk=chunk)
        assert np.array_equal(pic.pixels.reshape(image.shape), image)
    monkeypatch.setattr(codec.PlaneCoder.__init__, "__defaults__", (small, 33))
    assert ardmzip.compress(image, steps=steps, model=model_file) == data


@pytest.mark.parametrize("shape", [(70, 90), (71, 91), (51, 50), (50, 49), (60, 51)])
@pytest.mark.parametrize("gray", [False, True])
def test_first_step_canvas_gives_the_full_pictures_outputs(model_file, shape, gray):
    """With nothing revealed, the small canvas of head_outputs(empty=True) stands in for the
    picture; for s2d its sides have the picture's parity and interior pixels keep theirs."""
    h, w = shape
    model = weights.load(model_file)
    pc = codec.PlaneCoder(model.net, model.curve, h, w, gray, 4, 0)
    values = torch.from_numpy(np.random.default_rng(h * w).integers(0, 256, (2, 3, h, w))).long()
    mask = pc.mask(0)
    assert int(mask.sum()) == 0
    variables = np.arange(h * pc.per_row)
    chunks = [variables[i:i + 2999] for i in range(0, len(variables), 2999)]
    full = list(pc.head_outputs(values, mask, (0, h), chunks, empty=False))
    fast = list(pc.head_outputs(values, mask, (0, h), chunks, empty=True))
    halo = model.net.config.halo
    took_canvas = h >= 2 * halo + 2 + h % 2 and w >= 2 * halo + 2 + w % 2
    assert (pc.stages[1].empty_trunk is not None) == took_canvas
    for (p0, a0), (p1, a1) in zip(full, fast):
        assert torch.equal(p0, p1) and torch.equal(a0, a1)




def test_train_s2d_from_scratch_exports_and_codes(tmp_path):
    data, run = photos(tmp_path / "photos", size=40), tmp_path / "run"
    train.main([str(data), "--out", str(run), "--trunk", "s2d", "--channels", "16", "--dilations", "1,2",
                "--fine-channels", "8", "--fine-dilations", "1", "--mixtures", "2", "--steps", "3", "--batch", "2",
                "--crop", "16", "--qat-from", "2", "--threads", "1", "--log-every", "1", "--eval-every", "100",
                "--ckpt-every", "100", "--warmup", "1"])
    state = torch.load(run / "ckpt.pt", weights_only=False)
    trained = replace(SMALL, head_hidden=64)                 # no option for the head: its default
    assert state["step"] == 3 and ModelConfig.from_dict(state["config"]) == trained
    crops = np.stack([np.asarray(Image.open(data / f"{i}.png"))[:16, :16] for i in range(2)])
    blob = weights.run_to_bytes(run, "trained-s2d", crops)
    model = weights.from_bytes(blob, "trained-s2d")
    assert isinstance(model.net, IntegerS2DNet) and model.net.config == trained and len(model.curve) == 33
    path = tmp_path / "trained-s2d.npz"
    path.write_bytes(blob)
    a = np.asarray(Image.open(data / "0.png"))[:21, :18]
    assert np.array_equal(ardmzip.decompress(ardmzip.compress(a, steps=3, model=str(path))), a)
    # fine-tuning that file keeps its architecture; growing it appends coarse blocks that start at zero
    train.main([str(data), "--out", str(tmp_path / "tune"), "--init", str(path), "--steps", "1", "--batch", "2",
                "--crop", "16", "--qat-from", "0", "--threads", "1", "--log-every", "1", "--ckpt-every", "100"])
    assert ModelConfig.from_dict(torch.load(tmp_path / "tune" / "ckpt.pt", weights_only=False)["config"]) == trained
    net = S2DNet.from_integer(model.net)
    grown = train.grow(net, (4,))
    values, mask = random_inputs(1, 20, 22)
    assert grown.config.dilations == (1, 2, 4) and torch.equal(net(values, mask)[0], grown(values, mask)[0])


WIDE = ModelConfig(channels=16, dilations=(1, 4, 2), head_hidden=16, mixtures=2, trunk="s2d", fine_channels=8,
                   fine_dilations=(1, 3), cross_anchor=True)


@pytest.mark.parametrize("shape,band", [((1, 31, 29), 1), ((1, 31, 29), 40), ((2, 40, 17), 7), ((1, 9, 50), 1),
                                        ((1, 3, 45), 1), ((1, 64, 33), 300), ((2, 57, 64), 1000), ((1, 2, 2), 1)])
@pytest.mark.parametrize("config", [SMALL, WIDE], ids=["small", "wide"])
def test_banded_trunk_equals_the_plain_one(config, shape, band):
    """The s2d wavefront (cell rows, stages of different reach, the skip held for up, fine
    blocks on pixel rows) gives trunk's values exactly: bands of one cell row, of a few, odd
    heights and widths, pictures shorter than a dilation, batches."""
    net = random_s2d(3, config).export()
    b, h, w = shape
    values, mask = random_inputs(b, h, w, seed=h * w + band)
    x, anchor = net.trunk(values, mask)
    y, anchor_y = net.trunk_banded(values, mask, band)
    assert torch.equal(x, y) and torch.equal(anchor, anchor_y)
    assert y.is_contiguous(memory_format=torch.channels_last)

"""Exact inference: the integer network computes the same integers everywhere.

The decoder must reproduce the encoder's probabilities bit for bit. These tests check the
integer network against a float64 reference of the same arithmetic, and check that the
result does not depend on the torch thread count, the batch it is computed in, or whether
it runs on a crop or the full image.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ardmzip import weights
from ardmzip.dlm import exact_frequencies
from ardmzip.features import context_features
from ardmzip.model import ARDMNet, IntegerNet, ModelConfig
from ardmzip.qlayers import IntConv
from helpers import random_inputs, reference_layer

SMALL = ModelConfig(channels=16, dilations=(1, 2, 4), head_hidden=24, mixtures=3)
SMALL_CROSS = ModelConfig(channels=16, dilations=(1, 2, 4), head_hidden=24, mixtures=3, cross_anchor=True)


def random_integer_net(seed: int = 0, config: ModelConfig = SMALL) -> IntegerNet:
    """An exported net with weights spread over the whole int8 range."""
    torch.manual_seed(seed)
    net = ARDMNet(config)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net.export()






def reference_full(net: IntegerNet, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    feats, _ = context_features(values, mask, net.config.cross_anchor)
    x = reference_layer(net.stem, feats.double())
    for block in net.blocks:
        x = (x + reference_layer(block, x.clamp(min=0))).clamp(-127, 127)
    out = reference_layer(net.head_out, reference_layer(net.head_hidden, x.clamp(min=0)))
    b, _, h, w = out.shape
    return out.view(b, 3, 3, net.config.mixtures, h, w)


@pytest.fixture(scope="module", params=sorted(weights.REGISTRY))
def shipped(request) -> IntegerNet:
    """Every shipped model (the default and the older ones whose files must still decode)."""
    return weights.load(request.param).net


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("h,w", [(70, 65), (130, 97)])      # a padded-after integral, one summed padded
def test_context_features_integral_box_sums_equal_a_float64_window_sum(monkeypatch, cross, h, w):
    import ardmzip.features as features
    monkeypatch.setenv("ARDMZIP_JIT", "0")       # the torch path's window sums (test_features checks the other)
    values, mask = random_inputs(2, h, w)
    feats, anchor = context_features(values, mask, cross)

    def reference(state, r0, r1, channels=slice(None), radii=features.RADII):   # direct window sums, float64
        return [F.avg_pool2d(state.both[:, channels].double(), 2 * r + 1, stride=1, padding=r,
                             divisor_override=1).long()[:, :, r0:r1] for r in radii]

    state = features.FeatureState(values, mask, cross)
    for r0, r1 in ((0, h), (0, 1), (13, 41), (h - 1, h)):          # whole picture and bands
        for a, b in zip(state.window_sums(r0, r1), reference(state, r0, r1)):
            assert torch.equal(a, b)
    monkeypatch.setattr(features.FeatureState, "window_sums", reference)
    feats64, anchor64 = features.context_features(values, mask, cross)
    assert torch.equal(feats, feats64) and torch.equal(anchor, anchor64)
    assert bool((feats == feats.round()).all()) and feats.abs().max() <= 255
    assert 0 <= int(anchor.min()) and int(anchor.max()) <= 255


def test_hidden_values_do_not_leak(shipped):
    """What hides under the mask must not change any output (the decoder does not have it)."""
    values, mask = random_inputs(1, 40, 40, seed=2)
    scrambled = torch.where(mask.bool(), values, torch.randint(0, 256, values.shape))
    a, anchor_a = shipped.full(values, mask)
    b, anchor_b = shipped.full(scrambled, mask)
    assert torch.equal(a, b) and torch.equal(anchor_a, anchor_b)


def test_cross_anchor_predicts_a_hidden_channel_from_its_revealed_sibling():
    """G = R + 17: where R is revealed at a pixel, G's anchor is exactly the true G (and R's
    from G); where no sibling is revealed, the anchor is the spatial one."""
    g = torch.Generator().manual_seed(7)
    red = torch.randint(0, 200, (1, 1, 30, 30), generator=g)
    values = torch.cat([red, red + 17, torch.randint(0, 256, (1, 1, 30, 30), generator=g)], 1)
    mask = (torch.rand(1, 3, 30, 30, generator=g) < 0.5).int()
    mask[:, 2] = 0                                               # blue tells nothing
    _, spatial = context_features(values, mask)
    _, anchor = context_features(values, mask, cross_anchor=True)
    red_shown, green_shown = mask[0, 0].bool(), mask[0, 1].bool()
    assert torch.equal(anchor[0, 1][red_shown], red[0, 0][red_shown] + 17)
    assert torch.equal(anchor[0, 0][green_shown], red[0, 0][green_shown])
    assert torch.equal(anchor[0, 1][~red_shown], spatial[0, 1][~red_shown])
    assert not torch.equal(anchor[0, 1], spatial[0, 1])
    assert torch.equal(anchor[0, 2], spatial[0, 2])


def test_cross_anchor_fits_the_local_slope():
    """G = R/2 + 50 (R even, varying between neighbours): the local least-squares slope is
    exactly 1/2, so G's anchor is the true G, which neither the spatial mean nor a fixed
    slope of 1 (R + local mean of G - R) gives."""
    y, x = torch.meshgrid(torch.arange(30), torch.arange(30), indexing="ij")
    red = 2 * ((x * 7 + y * 13) % 100)
    green = red // 2 + 50
    values = torch.stack([red, green, torch.zeros_like(red)]).unsqueeze(0)
    mask = torch.stack([torch.ones_like(red), (x + y) % 2, torch.zeros_like(red)]).unsqueeze(0).int()
    _, anchor = context_features(values, mask, cross_anchor=True)
    hidden = mask[0, 1] == 0                                     # each has 2-4 revealed G/R neighbours
    assert torch.equal(anchor[0, 1][hidden], green[hidden])
    _, spatial = context_features(values, mask)
    assert (spatial[0, 1][hidden] - green[hidden]).abs().float().mean() > 10
    shown = mask[0, 1].float().view(1, 1, 30, 30)
    diff = ((values[:, 1:2] - values[:, 0:1]).float() * shown)
    window = lambda t: F.avg_pool2d(t, 3, stride=1, padding=1, divisor_override=1)
    slope_one = red + (window(diff) / window(shown).clamp(min=1))[0, 0]
    assert (slope_one[hidden] - green[hidden]).abs().mean() > 10


@pytest.mark.parametrize("config", [SMALL, SMALL_CROSS], ids=["spatial", "cross"])
def test_from_integer_inverts_export(config):
    inet = random_integer_net(3, config)
    again = ARDMNet.from_integer(inet).export()
    for a, b in zip([inet.stem, *inet.blocks, inet.head_hidden, inet.head_out],
                    [again.stem, *again.blocks, again.head_hidden, again.head_out]):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) and torch.equal(a.scale, b.scale)


@pytest.mark.parametrize("config", [SMALL, SMALL_CROSS], ids=["spatial", "cross"])
@pytest.mark.parametrize("seed", [0, 1])
def test_integer_net_equals_float64_reference(seed, config):
    net = random_integer_net(seed, config)
    values, mask = random_inputs(3, 29, 41, seed)
    params, _ = net.full(values, mask)
    ref = reference_full(net, values, mask)
    assert torch.equal(params.double(), ref)
    assert params.abs().max() > 100          # the test exercises large integers, not zeros


def test_shipped_model_equals_float64_reference(shipped):
    values, mask = random_inputs(2, 48, 40, seed=5)
    params, _ = shipped.full(values, mask)
    assert torch.equal(params.double(), reference_full(shipped, values, mask))


def test_same_result_with_one_and_two_threads(shipped):
    values, mask = random_inputs(2, 64, 64, seed=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = shipped.full(values, mask)
        torch.set_num_threads(2)
        two, _ = shipped.full(values, mask)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_same_result_alone_and_in_a_batch(shipped):
    values, mask = random_inputs(5, 36, 44, seed=4)
    batch, _ = shipped.full(values, mask)
    for i in range(5):
        alone, _ = shipped.full(values[i:i + 1], mask[i:i + 1])
        assert torch.equal(alone[0], batch[i])


def test_crop_interior_equals_full_image(shipped):
    halo = shipped.config.halo
    values, mask = random_inputs(1, 120, 110, seed=6)
    full, full_anchor = shipped.full(values, mask)
    y0, y1, x0, x1 = 10, 118, 3, 105
    crop, crop_anchor = shipped.full(values[..., y0:y1, x0:x1], mask[..., y0:y1, x0:x1])
    # rows/cols at least `halo` from a crop edge that is not an image edge see the same context
    iy0, iy1, ix0, ix1 = halo, (y1 - y0) - halo, halo, (x1 - x0) - halo
    assert iy1 > iy0 and ix1 > ix0
    assert torch.equal(crop[..., iy0:iy1, ix0:ix1], full[..., y0 + iy0:y0 + iy1, x0 + ix0:x0 + ix1])
    assert torch.equal(crop_anchor[..., iy0:iy1, ix0:ix1], full_anchor[..., y0 + iy0:y0 + iy1, x0 + ix0:x0 + ix1])
    # and the halo is needed: the crop differs from the full image right at its cut edges
    assert not torch.equal(crop[..., :, :halo], full[..., y0:y1, x0:x0 + halo])


def test_head_on_rows_equals_head_on_image(shipped):
    values, mask = random_inputs(1, 30, 30, seed=8)
    x, _ = shipped.trunk(values, mask)
    rows = shipped.head(x[0].permute(1, 2, 0).reshape(-1, x.shape[1]))
    full, _ = shipped.full(values, mask)
    assert torch.equal(rows.view(30, 30, 3, 3, -1).permute(2, 3, 4, 0, 1), full[0])


def test_exact_frequencies_valid_and_batch_independent():
    g = torch.Generator().manual_seed(0)
    n, m = 3000, 4
    params = torch.stack([torch.randint(-400, 400, (n, m), generator=g),
                          torch.randint(-4095, 4096, (n, m), generator=g),
                          torch.randint(-60, 110, (n, m), generator=g)], dim=1)
    anchor = torch.randint(0, 256, (n,), generator=g)
    freq = exact_frequencies(params, anchor)
    assert freq.dtype == torch.int32 and freq.shape == (n, 256)
    assert int(freq.min()) >= 1
    assert int(freq.double().sum(1).max()) < 2 ** 31
    parts = torch.cat([exact_frequencies(params[i:i + 7], anchor[i:i + 7]) for i in range(0, n, 7)])
    assert torch.equal(parts, freq)


def test_export_refuses_layers_that_could_round():
    net = ARDMNet(SMALL)
    with torch.no_grad():
        net.blocks[0].conv.weight.fill_(1e-6)    # tiny weights get a large shift...
        net.blocks[0].conv.bias.fill_(1.0)       # ...which makes the integer bias exceed 2^24
    with pytest.raises(ValueError, match="not exact"):
        net.export()


@pytest.mark.parametrize("shape,band", [((1, 1, 1), 1), ((1, 2, 3), 1), ((1, 6, 11), 7), ((2, 41, 29), 64),
                                        ((1, 90, 33), 2000), ((1, 90, 33), 5000), ((3, 57, 64), 1 << 14)])
def test_banded_trunk_equals_the_whole_strip(shipped, shape, band):
    """trunk_banded (every layer advancing over bands of rows, edges padded with zero rows)
    gives trunk's values exactly: pictures shorter than a dilation, bands of one row, of a
    few rows and of the whole picture (which takes the plain call), batches."""
    b, h, w = shape
    values, mask = random_inputs(b, h, w, seed=h * w + band)
    x, anchor = shipped.trunk(values, mask)
    y, anchor_y = shipped.trunk_banded(values, mask, band)
    assert torch.equal(x, y) and torch.equal(anchor, anchor_y)


@pytest.mark.parametrize("k,dilation,padding,shape", [(3, 1, 1, (1, 16, 9, 13)), (3, 2, (0, 2), (2, 16, 11, 7)),
                                                      (3, 8, 8, (1, 48, 5, 30)), (1, 1, 0, (3, 24, 6, 5)),
                                                      (3, 4, (4, 0), (1, 8, 3, 12))])
@pytest.mark.parametrize("path", ["im2col-1", "im2col-32768", "onednn", "none"])
def test_int8_gemm_layer_equals_float64_and_the_float32_convolution(monkeypatch, k, dilation, padding, shape, path):
    """The CPU int8 paths (oneDNN's int8 convolution; im2col + torch._int_mm in blocks of
    output rows) give the float32 convolution's integers and the float64 reference's, for
    inputs over all of [0, 127] (im2col: [-128, 127]), weights over the whole range, scales
    2^0..2^-10, large biases, any padding, batch and blocking."""
    from ardmzip import qlayers
    if path == "onednn":
        if not qlayers.ONEDNN_QCONV:
            pytest.skip("this torch has no oneDNN int8 convolution")
    else:
        monkeypatch.setattr(qlayers, "ONEDNN_QCONV", False)
        if path == "none":                      # neither: the float32 convolution, chosen once
            monkeypatch.setattr(qlayers, "INT8_GEMM", False)
        else:       # (timed slower than float32 on some CPUs: run here all the same)
            monkeypatch.setattr(qlayers, "INT8_GEMM_PAYS", True)
            monkeypatch.setattr(qlayers, "GEMM_ROWS", int(path.split("-")[1]))
    b, cin, h, w = shape
    g = torch.Generator().manual_seed(k * 100 + dilation + h)
    cout = 24
    weight = torch.randint(-127, 128, (cout, cin, k, k), generator=g).float()
    bias = torch.randint(-50000, 50000, (cout,), generator=g).float()
    scale = 2.0 ** -torch.randint(0, 11, (cout,), generator=g).float()
    layer = IntConv(weight, bias, scale, padding if isinstance(padding, int) else 0, dilation, -127, 127)
    x = torch.randint(0 if path == "onednn" else -128, 128, (b, cin, h, w), generator=g).float()
    pad = padding if isinstance(padding, int) else padding
    plain = layer(x, pad)
    fast = layer.with_small_input()
    got = fast(x, pad)
    # the int8 path ran (on this project's CPUs oneDNN's passes its check against float64)
    if path == "none":
        assert fast._gemm is False                      # remembered: not looked for again
        assert not fast.int8_output()
    else:
        assert isinstance(fast._gemm, qlayers.OneDNNConv if path == "onednn" else qlayers.Int8Weights)
    pr, pc = (pad, pad) if isinstance(pad, int) else pad
    acc = F.conv2d(F.pad(x.double(), (pc, pc, pr, pr)), weight.double(), dilation=dilation) + bias.double().view(1, -1, 1, 1)
    want = torch.floor(acc * scale.double().view(1, -1, 1, 1)).clamp(-127, 127).float()
    assert torch.equal(got, want) and torch.equal(plain, want)
    if path == "onednn":        # the int8 output the int8 residual stream uses: the floor, saturated
        assert fast.int8_output()                      # these layers' sums stay within its bound
        floor8 = fast.int8_floor(x, pad)
        assert floor8.dtype == torch.int8
        assert torch.equal(floor8.double(), torch.floor(acc * scale.double().view(1, -1, 1, 1)).clamp(-128, 127))


def test_int8_floor_is_refused_where_float32_could_round():
    """oneDNN's int8 output is used only where its float32 sums are exact and never ties:
    not for a layer whose sums could reach 2^23 units, nor for a scale above 1."""
    from ardmzip import qlayers
    if not qlayers.ONEDNN_QCONV:
        pytest.skip("this torch has no oneDNN int8 convolution")
    weight = torch.full((4, 48, 3, 3), 127.0)
    ok = IntConv(weight, torch.zeros(4), torch.full((4,), 2.0 ** -8), 1, 1, -127, 127)
    assert qlayers.OneDNNConv._floor_bias(ok) is not None          # 2 * 127 * 127 * 432 < 2^24
    wide = IntConv(torch.full((4, 64, 3, 3), 127.0), torch.zeros(4), torch.full((4,), 2.0 ** -8), 1, 1, -127, 127)
    assert qlayers.OneDNNConv._floor_bias(wide) is None            # 2 * 127 * 127 * 576 > 2^24
    up = IntConv(torch.ones(4, 8, 3, 3), torch.zeros(4), torch.tensor([1.0, 1.0, 2.0, 1.0]), 1, 1, -127, 127)
    assert qlayers.OneDNNConv._floor_bias(up) is None
    conv = qlayers.OneDNNConv.of(up.with_small_input())
    assert conv is not None and conv.floor_bias is None            # the float32 output still serves


@pytest.mark.parametrize("fault", ["raises", "rounds up"])
def test_an_int8_output_that_fails_its_check_leaves_the_float32_output(monkeypatch, fault):
    """Where oneDNN's int8 output errs (an older torch without it, or other rounding), the
    layer keeps oneDNN's float32 output and the network its float32 stream."""
    from ardmzip import qlayers
    if not qlayers.ONEDNN_QCONV:
        pytest.skip("this torch has no oneDNN int8 convolution")
    good = qlayers.OneDNNConv.int8_floor

    def broken(self, x, padding):
        if fault == "raises":
            raise RuntimeError("no int8 output here")
        return good(self, x, padding).add_(1)
    monkeypatch.setattr(qlayers.OneDNNConv, "int8_floor", broken)
    layer = IntConv(torch.ones(4, 8, 3, 3), torch.zeros(4), torch.full((4,), 2.0 ** -4), 1, 1, -127, 127).with_small_input()
    x = torch.randint(0, 128, (1, 8, 5, 6)).float()
    assert not layer.int8_output() and isinstance(layer._gemm, qlayers.OneDNNConv)
    want = torch.floor(F.conv2d(x.double(), layer.weight.double(), padding=1) * 2.0 ** -4).clamp(-127, 127)
    assert torch.equal(layer(x).double(), want)                     # through the float32 output


@pytest.mark.parametrize("jit", ["0", "1"])
@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("pad", [0, 3])
def test_int8_residual_addition_over_every_pair(jit, keep, pad, monkeypatch):
    """model._add_clamped_relu, the int8 stream's clamp(x + clamp(c, -127, 127), -127, 127)
    and its ReLU, over every x in [-127, 127] and every int8 c (oneDNN saturates to -128),
    against int32; the torch path and the compiled one (jit.add_clamped_relu_int8, where numba
    is installed), with the stream kept and without (the ReLU alone), the ReLU into a plain
    tensor and into the inside of rows with ``pad`` columns either side (RowBuffer), which
    stay as they were."""
    from ardmzip.model import _add_clamped_relu
    monkeypatch.setenv("ARDMZIP_JIT", jit)
    x, c = torch.meshgrid(torch.arange(-127, 128), torch.arange(-128, 128), indexing="ij")
    x, c = (t.to(torch.int8).reshape(1, 255, 16, 16).contiguous(memory_format=torch.channels_last) for t in (x, c))
    want = (x.int() + c.int().clamp(-127, 127)).clamp(-127, 127)
    out = torch.full_like(x, 99)
    rows = torch.full((1, 255, 16, 16 + 2 * pad), 99, dtype=torch.int8).contiguous(memory_format=torch.channels_last)
    relu = rows[..., pad:pad + 16]
    _add_clamped_relu(x, c.clone(), x.clamp(min=0), out=out if keep else None, relu_out=relu)
    assert relu.dtype == torch.int8 and torch.equal(relu.int(), want.clamp(min=0))
    assert torch.equal(out.int(), want) if keep else (out == 99).all()
    assert (rows[..., :pad] == 99).all() and (rows[..., 16 + pad:] == 99).all()


def test_pitched_views_of_padded_rows():
    """jit.pitched: the flat memory of a channels-last int8 view whose rows lie a fixed
    distance apart (contiguous, the inside of padded rows, one picture of a batch), and None
    where they do not (rows of a batch with rows left out between pictures, not channels last)."""
    from ardmzip import jit
    buf = torch.arange(2 * 4 * 7 * 10, dtype=torch.int8).reshape(2, 4, 7, 10).contiguous(memory_format=torch.channels_last)
    for view, want in [(buf, 40), (buf[..., 2:8], 40), (buf[:1, :, 3:6, 1:9], 40), (buf[1:, :, 2:3, 3:5], 8)]:
        flat, n, pitch = jit.pitched(view)
        b, c, rows, w = view.shape
        assert (n, pitch) == (w * c, want)
        got = np.stack([flat[r * pitch:r * pitch + n] for r in range(b * rows)]).reshape(b, rows, w, c)
        assert np.array_equal(got, view.permute(0, 2, 3, 1).numpy())
    assert jit.pitched(buf[:, :, 1:3]) is None
    assert jit.pitched(buf.contiguous()) is None
    assert jit.pitched(buf[:1, :, :7:2]) is not None and jit.pitched(buf[:, :, :, ::2]) is None


def test_zero_padded_reads_held_zero_rows_in_place():
    """model._zero_padded: rows above and below the picture read as zeros, from a copy when the
    layer below does not hold them, and as a view of its rows when it does (first < 0)."""
    from ardmzip.model import _zero_padded
    g = torch.Generator().manual_seed(1)
    rows = torch.randint(-127, 128, (1, 4, 6, 5), generator=g, dtype=torch.int8)       # picture rows 0..5
    copy = _zero_padded(rows, 0, 0, 3, 2, 6)
    assert copy.shape[2] == 7 and (copy[:, :, :2] == 0).all() and torch.equal(copy[:, :, 2:], rows[:, :, :5])
    held = torch.cat([torch.zeros(1, 4, 2, 5, dtype=torch.int8), rows, torch.zeros(1, 4, 2, 5, dtype=torch.int8)], 2)
    for s, e in [(0, 3), (4, 6), (0, 6)]:
        view = _zero_padded(held, -2, s, e, 2, 6)
        assert view.data_ptr() == held[:, :, s:].data_ptr()
        assert torch.equal(view, _zero_padded(rows, 0, s, e, 2, 6))


def test_row_buffer_keeps_its_zero_columns():
    """RowBuffer(pad): claimed rows are the inside of rows with ``pad`` zero columns either
    side; writing every claimed view, dropping rows, moving them to the front (no room), and
    growing keeps the kept rows and their zero columns."""
    from ardmzip.model import RowBuffer
    rb = RowBuffer()
    kept = {}
    g = torch.Generator().manual_seed(2)
    for count in [5, 3, 4, 4, 9, 2, 6, 1]:
        view = rb.claim(count, 1, 3, 7, torch.device("cpu"), torch.int8, pad=2)
        assert view.shape == (1, 3, count, 7)
        for i in range(count):
            row = torch.randint(-127, 128, (1, 3, 7), generator=g, dtype=torch.int8)
            view[:, :, i] = row
            kept[rb.first + rb.n - count + i] = row
        rows, padded = rb.rows(), rb.padded_rows()
        assert padded.shape[3] == 11 and (padded[..., :2] == 0).all() and (padded[..., 9:] == 0).all()
        for i in range(rb.n):
            assert torch.equal(rows[:, :, i], kept[rb.first + i])
        rb.drop_before(rb.first + rb.n - 3)


@pytest.mark.parametrize("jit", ["0", "1"])
def test_stem_into_int8_is_the_layer_and_its_relu(jit, shipped, monkeypatch):
    """IntConv.into_int8 (the int8 stream's first layer: one compiled pass over the
    accumulators where numba is) against the layer's own float32 output, on features over
    their whole range [-255, 255] and at the extremes, in a channels-last band and a plain one."""
    monkeypatch.setenv("ARDMZIP_JIT", jit)
    stem = shipped.stem
    g = torch.Generator().manual_seed(4)
    x = torch.randint(-255, 256, (2, stem.weight.shape[1], 9, 13), generator=g).float()
    x[0, :, 0] = 255
    x[0, :, 1] = -255
    want = stem(x)
    for layout, pad in ((torch.channels_last, 0), (torch.contiguous_format, 0), (torch.channels_last, 2)):
        xs = x.contiguous(memory_format=layout)
        out = torch.empty(want.shape, dtype=torch.int8, memory_format=layout)
        b, c, h, w = want.shape     # the ReLU into the inside of rows with zero columns (RowBuffer)
        rows = torch.full((b, c, h, w + 2 * pad), 99, dtype=torch.int8).contiguous(memory_format=layout)
        relu = rows[..., pad:pad + w]
        stem.into_int8(xs, out, relu)
        assert torch.equal(out.float(), want) and torch.equal(relu.float(), want.clamp(min=0))
        assert (rows[..., :pad] == 99).all() and (rows[..., w + pad:] == 99).all()
    assert (want < 0).any() and (want > 0).any()


def test_int8_residual_addition_with_overlapping_arrays():
    """jit.add_clamped_relu_int8 where the ReLU goes over the input stream: inputs that overlap
    an output are read before it is written (copied first), the same values."""
    from ardmzip import jit
    if not jit.installed():
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(3)
    x = rng.integers(-127, 128, 1000).astype(np.int8)
    c = rng.integers(-128, 128, 1000).astype(np.int8)
    want = np.clip(x.astype(np.int32) + np.clip(c, -127, 127), 0, 127)
    jit.add_clamped_relu_int8(x, c, None, x)
    assert np.array_equal(x, want)


def test_a_used_network_deep_copies_without_its_cached_int8_path(shipped):
    """copy.deepcopy of a network that has run on CPU (its layers hold oneDNN's prepacked
    weights, which cannot be copied) gives an equal network that picks its own path."""
    import copy
    values, mask = random_inputs(1, 20, 23, seed=9)
    x, _ = shipped.trunk(values, mask)
    twin = copy.deepcopy(shipped)
    assert all(b._gemm is None for b in twin.blocks)
    assert torch.equal(twin.trunk(values, mask)[0], x)


def test_int8_gemm_same_with_one_and_two_threads_and_off(shipped, monkeypatch):
    """The shipped trunk gives the same integers through oneDNN's int8 convolutions on 1 and
    2 threads as through im2col int8 GEMMs and float32 convolutions (both paths off)."""
    from ardmzip import qlayers
    values, mask = random_inputs(2, 37, 45, seed=5)
    onednn = qlayers.ONEDNN_QCONV
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = shipped.trunk_banded(values, mask, 300)
        torch.set_num_threads(2)
        two = shipped.trunk(values, mask)
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(qlayers, "ONEDNN_QCONV", False)
    monkeypatch.setattr(qlayers, "INT8_GEMM_PAYS", True)
    im2col = shipped.to("cpu").trunk(values, mask)          # fresh layers: the im2col path
    monkeypatch.setattr(qlayers, "INT8_GEMM", False)
    off = shipped.to("cpu").trunk(values, mask)
    for a, b_, c, d in zip(one, two, off, im2col):
        assert torch.equal(a, b_) and torch.equal(a, c) and torch.equal(a, d)
    # on this project's CPUs the int8 stream ran (torch.equal compares values across dtypes)
    assert one[0].dtype == (torch.int8 if onednn else torch.float32)
    assert off[0].dtype == torch.float32


@pytest.mark.parametrize("pays", [True, False])
@pytest.mark.parametrize("n", [1, 16, 17, 300])
def test_int8_head_equals_the_float32_head(shipped, monkeypatch, n, pays):
    """The head on int8 activations (int8 GEMMs where torch has them and they beat float32's,
    from 17 rows on) gives the float32 head's integers, for rows across [0, 127] and at its
    ends; whichever product the timing picks."""
    from ardmzip import qlayers
    monkeypatch.setattr(qlayers, "INT8_GEMM_PAYS", pays)
    g = torch.Generator().manual_seed(n)
    c = shipped.head_hidden.weight.shape[1]
    x = torch.randint(0, 128, (n, c), generator=g, dtype=torch.int8)
    x[: n // 3] = 127
    want = shipped.head(x.to(torch.float32))
    got = shipped.head(x)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    ran = shipped.head_hidden.linear_int8(x) is not None
    assert ran == (qlayers.INT8_GEMM and pays and n > 16)   # (on this project's CPUs it runs)


def test_int8_gemm_pays_is_timed_once(monkeypatch):
    """The int8-or-float32 choice is a timing, made once per process (then kept), and never
    the int8 GEMM where torch has none."""
    from ardmzip import qlayers
    monkeypatch.setattr(qlayers, "INT8_GEMM_PAYS", None)
    first = qlayers.int8_gemm_pays()
    assert isinstance(first, bool) and qlayers.INT8_GEMM_PAYS is first
    assert qlayers.int8_gemm_pays() is first
    monkeypatch.setattr(qlayers, "INT8_GEMM_PAYS", None)
    monkeypatch.setattr(qlayers, "INT8_GEMM", False)
    assert qlayers.int8_gemm_pays() is False


def test_compiled_kernels_give_the_torch_paths_trunk(shipped, monkeypatch):
    """The trunk with the compiled kernels (features, int8 ReLU and residual additions, where
    numba is installed) equals the torch path's, whole and band by band."""
    values, mask = random_inputs(2, 61, 45, seed=12)
    monkeypatch.setenv("ARDMZIP_JIT", "0")
    want = shipped.trunk(values, mask)
    monkeypatch.setenv("ARDMZIP_JIT", "1")
    for got in (shipped.trunk(values, mask), shipped.trunk_banded(values[:1], mask[:1], 300)):
        n = len(got[0])
        assert torch.equal(got[0], want[0][:n]) and torch.equal(got[1], want[1][:n])

"""The binary coding path: F at points (dlm.mixture_cdf) and 8 binary decisions per symbol
(coder.encode_binary / decode_binary).

F must equal the cumulative sums of exact_frequencies' rows bit for bit, and the stream is a
file format: a slow per-symbol reference built here from those rows pins down the decisions,
their masses, which ones are skipped and the pop order, byte for byte. Every test runs on
both paths of the coder: torch, and the compiled kernels (coder_jit.py), by ARDMZIP_JIT.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ardmzip import dlm, jit
from ardmzip.coder import (Decoder, Encoder, binary_bits, decisions_batch, decode_binary, decode_binary_batch,
                           encode_binary, push_decisions)
from ardmzip.errors import FormatError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True, params=["torch", pytest.param("jit", marks=pytest.mark.skipif(
    not jit.installed(), reason="numba is not installed"))])
def coder_path(request, monkeypatch):
    monkeypatch.setenv("ARDMZIP_JIT", "1" if request.param == "jit" else "0")
    return request.param


def random_params(n: int, m: int, seed: int, wide: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Head outputs in 1/16 units. wide: logits past EXP_SPAN, offsets over the head's whole
    +-4095, log-scales past both clamps, anchors piled on 0 and 255; else a realistic mix."""
    g = torch.Generator().manual_seed(seed)
    if wide:
        logit = torch.randint(-400, 400, (n, m), generator=g)
        offset = torch.randint(-4095, 4096, (n, m), generator=g)
        offset[: n // 2] //= 64                                   # half of them near the anchor
        log_scale = torch.randint(dlm.LOG_SCALE_MIN - 40, dlm.LOG_SCALE_MAX + 40, (n, m), generator=g)
    else:
        logit = torch.randint(-48, 48, (n, m), generator=g)
        offset = torch.randint(-64, 64, (n, m), generator=g)      # +-4 levels
        log_scale = torch.randint(16, 49, (n, m), generator=g)   # 1..3 ln levels
    anchor = torch.randint(0, 256, (n,), generator=g)
    if wide:
        anchor[::5], anchor[1::5] = 0, 255
    return torch.stack([logit, offset, log_scale], 1).to(torch.int32), anchor


def cumulative(params: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """F(0..256) from the full rows: int64 (N, 257)."""
    freq = dlm.exact_frequencies(params, anchor).long()
    return torch.cat([torch.zeros(len(freq), 1, dtype=torch.int64), freq.cumsum(1)], 1)


def sample(params, anchor, seed: int, allowed=None, channel=None, ends: bool = True) -> np.ndarray:
    """Symbols drawn from the model (restricted to the allowed sets); ends: force 0 and 255
    in every 7th row."""
    g = torch.Generator().manual_seed(seed)
    w = dlm.exact_frequencies(params, anchor).double()
    if ends:
        w[::7, 1:], w[1::7, :-1] = 0, 0
    if allowed is not None:
        ok = torch.as_tensor(allowed)[torch.as_tensor(channel)]
        ok |= ~ok.any(1, keepdim=True)                            # an empty set restricts nothing
        w = w * ok
        w[w.sum(1) == 0] = ok[w.sum(1) == 0].double()
    return torch.multinomial(w, 1, generator=g)[:, 0].numpy().astype(np.int32)


def value_sets(seed: int) -> np.ndarray:
    """(C, 256) allowed tables covering the odd cases: one value, the ends, everything, nothing."""
    rng = np.random.default_rng(seed)
    sets = [rng.random(256) < d for d in (0.02, 0.1, 0.5)]
    for values in ([0], [255], [17], [0, 255], [127, 128], list(range(40, 90))):
        s = np.zeros(256, bool)
        s[values] = True
        sets.append(s)
    sets += [np.ones(256, bool), np.zeros(256, bool)]
    return np.stack(sets)


def reference_stream(params, anchor, symbols, allowed=None, channel=None) -> bytes:
    """The format, written out slowly: per symbol, MSB first, decision bit = v >= mid in node
    [lo, hi), masses [F(mid) - F(lo), F(hi) - F(mid)] of the full rows, or with a value set
    the masses of each half's tightest span of allowed values [F(end) - F(first)]; skipped
    when one half holds no allowed value; popped level 0 of every symbol first, then level 1, ..."""
    f = cumulative(params, anchor).numpy()
    levels = [[] for _ in range(8)]
    for i, v in enumerate(symbols):
        ok = np.ones(256, bool) if allowed is None else allowed[channel[i]]
        ok = ok if ok.any() else np.ones(256, bool)
        lo, hi = 0, 256
        for level in range(8):
            mid = (lo + hi) // 2
            bit = int(v >= mid)
            if ok[lo:mid].any() and ok[mid:hi].any():
                left, right = np.flatnonzero(ok[lo:mid]) + lo, np.flatnonzero(ok[mid:hi]) + mid
                levels[level].append((bit, f[i, left[-1] + 1] - f[i, left[0]], f[i, right[-1] + 1] - f[i, right[0]]))
            lo, hi = (mid, hi) if bit else (lo, mid)
    rows = np.array([r for level in levels for r in level], dtype=np.int64).reshape(-1, 3)
    masses = rows[:, 1:].astype(np.float64)
    enc = Encoder()
    enc.push(rows[:, 0].astype(np.int32), masses / (masses[:, :1] + masses[:, 1:]))
    return enc.finish()


def encoded(params, anchor, symbols, allowed=None, channel=None) -> bytes:
    enc = Encoder()
    encode_binary(enc, params, anchor, symbols, allowed, channel)
    return enc.finish()


@pytest.mark.parametrize("m", [1, 3, 5])
def test_mixture_cdf_is_the_cumulative_row(m):
    params, anchor = random_params(3000, m, seed=m)
    full = cumulative(params, anchor)
    points = torch.arange(257).expand(len(params), 257)
    assert torch.equal(dlm.mixture_cdf(params, anchor, points), full)
    assert torch.equal(dlm.mixture_cdf(params.long(), anchor.int(), points), full)   # any dtype
    some = torch.randint(0, 257, (len(params), 7), generator=torch.Generator().manual_seed(m))
    out = dlm.mixture_cdf(params, anchor, some)
    assert out.dtype == torch.int64 and torch.equal(out, full.gather(1, some))


def test_mixture_cdf_with_offsets_past_the_head_range():
    """int32 inside: means far beyond the head's range still give the exact cdf, checked
    against the module docstring's formula in numpy int64."""
    params, anchor = random_params(400, 3, seed=9)
    params = params.long()
    params[::2, 1] *= 2 ** 24
    params[1::4, 1] = params[1::4, 1].sign() * (4096 + torch.arange(len(params[1::4])).unsqueeze(1) * 97)
    logit, offset, log_scale = (t.numpy() for t in params.unbind(1))
    mu16 = anchor.numpy()[:, None] * dlm.GRID + offset
    inv = dlm.INV_SCALE[np.clip(log_scale, dlm.LOG_SCALE_MIN, dlm.LOG_SCALE_MAX) - dlm.LOG_SCALE_MIN].astype(np.int64)
    w = dlm.EXP[np.minimum(logit.max(1, keepdims=True) - logit, dlm.EXP_SPAN)].astype(np.int64)
    x = np.arange(1, 256)
    idx = ((x[None, None] * 16 - 8 - mu16[..., None]) * inv[..., None]) >> 10
    cdf = dlm.SIGMOID[np.clip(idx, -dlm.IDX_MAX, dlm.IDX_MAX - 1) + dlm.IDX_MAX]
    inner = (cdf * w[..., None]).sum(1) + x
    out = dlm.mixture_cdf(params, anchor, torch.arange(257).expand(len(params), 257)).numpy()
    assert np.array_equal(out[:, 1:256], inner)
    assert (out[:, 0] == 0).all() and np.array_equal(out[:, 256], (w.sum(1) << dlm.SIG_BITS) + 256)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int32, torch.int64])
def test_compiled_mixture_terms_are_dlms(dtype, coder_path):
    """coder_jit.terms (what the compiled coder starts from) gives dlm.mixture_terms'
    integers: logits past EXP_SPAN, log-scales past both clamps, offsets far past the head's
    range (the base clamp), anchors at 0 and 255; from float32 head outputs and integers."""
    if coder_path != "jit":
        pytest.skip("the compiled kernels' own test")
    from ardmzip import coder_jit
    params, anchor = random_params(3000, 4, seed=21)
    params = params.long()
    params[::3, 1] *= 2 ** 12                     # |offset| up to 2^24: float32 still holds it
    params = params.to(dtype)
    got = coder_jit.terms(params.numpy(), anchor.numpy())
    want = dlm.mixture_terms(params, anchor)
    for g, w in zip(got, want):
        assert g.dtype == np.int32 and np.array_equal(g, w.numpy())
    assert (want[1] == 2 ** 30).any() and (want[1] == -2 ** 30).any()      # the base clamp was reached


@pytest.mark.parametrize("wide", [True, False])
def test_compiled_frequencies_are_the_torch_rows(wide, coder_path, monkeypatch):
    """dlm.exact_frequencies on the compiled kernel (coder_jit.frequencies, the 256-wide rows
    of palette, copy and chroma planes) gives the torch path's integers, whatever the head
    outputs' dtype; offsets over the head's whole range."""
    if coder_path != "jit":
        pytest.skip("the compiled kernels' own test")
    params, anchor = random_params(2000, 4, seed=23, wide=wide)
    monkeypatch.setenv("ARDMZIP_JIT", "0")
    want = dlm.exact_frequencies(params, anchor)
    monkeypatch.setenv("ARDMZIP_JIT", "1")
    for dtype in (torch.float32, torch.int32, torch.int64, torch.int16):
        got = dlm.exact_frequencies(params.to(dtype), anchor)
        assert got.dtype == torch.int32 and torch.equal(got, want)
    assert torch.equal(dlm.exact_frequencies(params, anchor, block=100), want)      # (blocks: the torch path)


def test_compiled_frequencies_at_every_scale_and_edge(coder_path, monkeypatch):
    """The compiled rows look each component's table up only between its first value past
    the sigmoid's run of 0 and its first value at 2^15 (coder_jit._frequencies): every
    log-scale from below to above the clamps, means on and beside every value's edge from
    far below 0 to far above 255, one component or four: the torch path's integers."""
    if coder_path != "jit":
        pytest.skip("the compiled kernels' own test")
    scales = torch.arange(dlm.LOG_SCALE_MIN - 4, dlm.LOG_SCALE_MAX + 5)
    offsets = torch.arange(-300 * 16, 300 * 16 + 1, 7)
    s, o = torch.meshgrid(scales, offsets, indexing="ij")
    n = s.numel()
    params = torch.zeros(n, 3, 4, dtype=torch.int64)
    params[:, 0, 0] = 0
    params[:, 0, 1:] = -10 ** 4                    # one component: the others weigh EXP[EXP_SPAN]
    params[:, 1, :] = o.reshape(-1, 1)
    params[:, 2, :] = s.reshape(-1, 1)
    anchor = torch.full((n,), 128, dtype=torch.int64)
    mixed = params.clone()                         # four: equal weights, spread means and scales
    mixed[:, 0, :] = 0
    mixed[:, 1, :] += torch.tensor([0, 37, -520, 2900])
    mixed[:, 2, :] = (mixed[:, 2, :] + torch.tensor([0, 16, -32, 48])).clamp(-60, 110)
    for p in (params, mixed):
        monkeypatch.setenv("ARDMZIP_JIT", "0")
        want = dlm.exact_frequencies(p, anchor)
        monkeypatch.setenv("ARDMZIP_JIT", "1")
        assert torch.equal(dlm.exact_frequencies(p, anchor), want)
    from ardmzip import coder_jit
    assert (dlm.SIGMOID[:coder_jit.SIG_ZERO_TOP + 1] == 0).all() and dlm.SIGMOID[coder_jit.SIG_ZERO_TOP + 1] > 0
    assert (dlm.SIGMOID[coder_jit.SIG_FULL_FROM:] == 1 << dlm.SIG_BITS).all()
    assert dlm.SIGMOID[coder_jit.SIG_FULL_FROM - 1] < 1 << dlm.SIG_BITS


@pytest.mark.parametrize("with_sets", [False, True])
def test_stream_matches_the_reference_and_round_trips(with_sets):
    params, anchor = random_params(1500, 4, seed=11)
    allowed = channel = None
    if with_sets:
        allowed = value_sets(3)
        channel = np.arange(len(params)) % len(allowed)          # every channel, interleaved
    symbols = sample(params, anchor, seed=12, allowed=allowed, channel=channel)
    data = encoded(params, anchor, symbols, allowed, channel)
    assert data == reference_stream(params, anchor, symbols, allowed, channel)
    assert data == encoded(params, anchor, symbols, allowed, channel)           # deterministic
    dec = Decoder(data)
    out = decode_binary(dec, params, anchor, allowed, channel)
    assert out.dtype == np.int32 and np.array_equal(out, symbols)
    assert dec.finished_cleanly()
    if with_sets:                                                 # skipped decisions cost nothing
        ones = value_sets(3)[channel].sum(1) == 1
        assert binary_bits(params[ones], anchor[ones], symbols[ones], allowed, channel[ones]) == 0


def test_chunks_follow_one_another_on_the_stack():
    """Two chunks pushed in reverse pop in order, with a 256-way chunk in between."""
    p1, a1 = random_params(400, 2, seed=21, wide=False)
    p2, a2 = random_params(300, 4, seed=22)
    s1, s2 = sample(p1, a1, seed=23), sample(p2, a2, seed=24)
    s_mid = np.arange(50, dtype=np.int32) * 5
    rows = np.full((50, 256), 1 / 256)
    enc = Encoder()
    encode_binary(enc, p2, a2, s2)
    enc.push(s_mid, rows)
    encode_binary(enc, p1, a1, s1, np.ones((1, 256), bool))
    encode_binary(enc, p1[:0], a1[:0], s1[:0])                    # an empty chunk is nothing
    dec = Decoder(enc.finish())
    assert len(decode_binary(dec, p1[:0], a1[:0])) == 0
    assert np.array_equal(decode_binary(dec, p1, a1, np.ones((1, 256), bool)), s1)
    assert np.array_equal(dec.pop(rows), s_mid)
    assert np.array_equal(decode_binary(dec, p2, a2), s2)
    assert dec.finished_cleanly()


def test_ideal_bits_equal_the_categorical_bits():
    params, anchor = random_params(4000, 4, seed=31)
    symbols = sample(params, anchor, seed=32)
    categorical = dlm.bits_of(dlm.exact_frequencies(params, anchor), torch.from_numpy(symbols))
    assert binary_bits(params, anchor, symbols) == pytest.approx(categorical, rel=1e-10)


def test_bad_symbols_raise():
    params, anchor = random_params(10, 2, seed=41)
    with pytest.raises(ValueError):
        encode_binary(Encoder(), params, anchor, np.full(10, 256))
    with pytest.raises(ValueError):
        encode_binary(Encoder(), params, anchor, np.full(10, -1))
    sets = value_sets(0)
    with pytest.raises(ValueError):                               # 16 is not in {17}
        encode_binary(Encoder(), params, anchor, np.full(10, 16), sets, np.full(10, 5))
    with pytest.raises(ValueError):                               # which set?
        encode_binary(Encoder(), params, anchor, np.full(10, 17), sets)


def test_damaged_streams_decode_or_raise_cleanly():
    params, anchor = random_params(600, 3, seed=51)
    sets = value_sets(5)
    channel = np.arange(600) % len(sets)
    symbols = sample(params, anchor, seed=52, allowed=sets, channel=channel)
    data = encoded(params, anchor, symbols, sets, channel)
    rng = np.random.default_rng(53)
    damaged = [b"", data[:4], data[: len(data) // 2 // 4 * 4], data[:-4], data[:-1], data + b"\0\0\0\0",
               rng.bytes(len(data) // 4 * 4)]
    for _ in range(8):
        b = bytearray(data)
        b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        damaged.append(bytes(b))
    ok = sets | ~sets.any(1, keepdims=True)
    for bad in damaged:
        for allowed, ch in ((None, None), (sets, channel)):
            try:
                out = decode_binary(Decoder(bad), params, anchor, allowed, ch)
            except (ValueError, RuntimeError, FormatError):
                continue
            assert out.shape == (600,) and out.min() >= 0 and out.max() <= 255
            if allowed is not None:
                assert ok[ch, out].all()


def test_cost_over_ideal_on_a_realistic_mix():
    params, anchor = random_params(16384, 4, seed=61, wide=False)
    symbols = sample(params, anchor, seed=62, ends=False)
    ideal = dlm.bits_of(dlm.exact_frequencies(params, anchor), torch.from_numpy(symbols))
    actual = 8 * len(encoded(params, anchor, symbols))
    print(f"\nbinary path, realistic mix: {actual / len(symbols):.4f} bits/subpixel against the 256-way "
          f"ideal {ideal / len(symbols):.4f}, "
          f"overhead {100 * (actual / ideal - 1):.4f}%")
    assert actual < 1.01 * ideal


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_same_cdf_and_bytes():
    params, anchor = random_params(3000, 4, seed=71)
    sets = value_sets(7)
    channel = np.arange(3000) % len(sets)
    points = torch.arange(257).expand(3000, 257)
    assert torch.equal(dlm.mixture_cdf(params.cuda(), anchor.cuda(), points.cuda()).cpu(),
                       dlm.mixture_cdf(params, anchor, points))
    symbols = sample(params, anchor, seed=72, allowed=sets, channel=channel)
    data = encoded(params, anchor, symbols, sets, channel)
    assert encoded(params.cuda(), anchor.cuda(), symbols, sets, channel) == data
    out = decode_binary(Decoder(data), params.cuda(), anchor.cuda(), sets, torch.from_numpy(channel).cuda())
    assert np.array_equal(out, symbols)


def test_a_contiguous_value_set_costs_what_the_restricted_row_costs():
    """Spans of allowed values renormalise exactly when the set has no holes (the common case:
    photos that miss a few values at the ends), and never cost more than no set at all."""
    params, anchor = random_params(2048, 4, seed=81, wide=False)
    allowed = np.zeros((1, 256), bool)
    allowed[0, 23:241] = True
    symbols = sample(params, anchor, seed=82, allowed=allowed, channel=np.zeros(2048, np.int64), ends=False)
    freq = dlm.exact_frequencies(params, anchor) * torch.from_numpy(allowed[0].astype(np.int32))
    restricted = dlm.bits_of(freq, torch.from_numpy(symbols.astype(np.int64)))
    with_set = binary_bits(params, anchor, symbols, allowed)
    assert abs(with_set - restricted) < 1e-6 * restricted
    holes = allowed.copy()
    holes[0, 100:140:3] = False
    holes[0, symbols] = True
    assert binary_bits(params, anchor, symbols, holes) <= binary_bits(params, anchor, symbols) + 1e-6


@pytest.mark.parametrize("with_sets", [False, True])
def test_batches_of_runs_decode_as_each_run_alone(with_sets):
    """decisions_batch / decode_binary_batch on 4 runs at once (one without a decoder, one
    damaged): each live run's stream is what encode_binary writes for it alone, and decodes."""
    b, n = 4, 300
    params, anchor = random_params(b * n, 3, seed=41)
    allowed = channel = None
    if with_sets:
        allowed = value_sets(5)
        channel = np.arange(b * n) % len(allowed)
    symbols = sample(params, anchor, seed=42, allowed=allowed, channel=channel)
    shape = (b, n)
    runs = decisions_batch(params.view(b, n, 3, -1), anchor.view(shape), symbols.reshape(shape), allowed,
                           None if channel is None else channel.reshape(shape))
    streams = []
    for i, run in enumerate(runs):
        enc = Encoder()
        push_decisions(enc, *run)
        streams.append(enc.finish())
        rows = slice(i * n, (i + 1) * n)
        assert streams[i] == encoded(params[rows], anchor[rows], symbols[rows], allowed,
                                     None if channel is None else channel[rows])
    decoders = [Decoder(streams[0]), None, Decoder(streams[2]), Decoder(b"\xff\xff\xff\xff" * 3)]
    infos = [[100.0] for _ in range(b)]
    out = decode_binary_batch(decoders, params.view(b, n, 3, -1), anchor.view(shape), allowed,
                              None if channel is None else channel.reshape(shape), infos)
    assert np.array_equal(out[0], symbols[:n]) and out[1] is None and np.array_equal(out[2], symbols[2 * n:3 * n])
    assert decoders[0].finished_cleanly() and decoders[2].finished_cleanly()
    assert isinstance(out[3], (Exception, np.ndarray))          # damaged: an error or some values
    # the information read (the decoder's budget): each live run's own decisions, none for the others
    from ardmzip.coder import decision_bits
    for i in (0, 2):
        assert infos[i][0] == pytest.approx(100.0 + decision_bits(*runs[i]), rel=1e-12)
    assert infos[1][0] == 100.0


def test_decision_bits_batch_gives_each_runs_own_floats():
    """The encoder compares candidates by these sums, so the batched form must give exactly
    decision_bits' floats for every run (empty runs and runs of one decision included)."""
    from ardmzip.coder import decision_bits, decision_bits_batch
    rng = np.random.default_rng(7)
    for _ in range(20):
        runs = []
        for n in rng.integers(0, 2000, rng.integers(1, 6)):
            runs.append((rng.integers(1, 1 << 20, (int(n), 2)).astype(np.int32),
                         rng.integers(0, 2, int(n)).astype(np.int32)))
        runs.append((np.array([[3, 5]], np.int32), np.array([1], np.int32)))
        assert decision_bits_batch(runs) == [decision_bits(*r) for r in runs]
    assert decision_bits_batch([]) == []


@pytest.mark.parametrize("dtype,top", [(np.int32, 1 << 23), (np.int64, 1 << 42)])
def test_256_wide_probability_rows_are_the_same_bits_on_both_paths(dtype, top, coder_path):
    """dlm.frequencies_to_probabilities (the 256-wide rows of palette, copy and chroma planes;
    a compiled pass where numba is) gives numpy's f / sum(f) bit for bit: int32 rows and the
    int64 rows of colour copies (sums up to ~2^50)."""
    rng = np.random.default_rng(top)
    freq = rng.integers(1, top, (3000, 256)).astype(dtype)
    freq[::7, 5:200] = 1
    f = freq.astype(np.float64)
    want = f / f.sum(axis=1, keepdims=True)
    got = dlm.frequencies_to_probabilities(torch.from_numpy(freq))
    assert got.flags["C_CONTIGUOUS"] and np.array_equal(got.view(np.uint64), want.view(np.uint64))


@pytest.mark.parametrize("mode", ["0", "1"])
def test_probability_rows_are_the_same_bits_on_both_paths(mode, monkeypatch):
    """coder._probabilities on a photo-sized chunk (the compiled pass where numba is) gives
    the IEEE bits of numpy's m / (m0 + m1), strided input included."""
    from ardmzip.coder import _probabilities
    monkeypatch.setenv("ARDMZIP_JIT", mode)
    rng = np.random.default_rng(11)
    masses = rng.integers(1, 1 << 30, (1 << 16, 4)).astype(np.int32)[:, 1:3]     # not contiguous
    f = masses.astype(np.float64)
    want = f / (f[:, 0] + f[:, 1])[:, None]
    got = _probabilities(masses)
    assert got.flags["C_CONTIGUOUS"] and np.array_equal(got.view(np.uint64), want.view(np.uint64))

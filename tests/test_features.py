"""The context features against an independent reference: numpy int64 arithmetic (exact
floor divisions, window sums from a numpy integral image), so that features.py's floating
point carriers of integers are checked against plain integers, at the ranges' extremes too.
Both paths: the torch one and the compiled kernels (features_jit.py), chosen by ARDMZIP_JIT."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ardmzip import jit
from ardmzip.features import CHANNEL_PAIRS, MASK_SCALE, RADII, FeatureState, context_features

needs_numba = pytest.mark.skipif(not jit.installed(), reason="numba is not installed")
PATHS = ["torch", pytest.param("jit", marks=needs_numba)]


def use_path(monkeypatch, path: str) -> None:
    monkeypatch.setenv("ARDMZIP_JIT", "1" if path == "jit" else "0")


def _windows(x: np.ndarray, r: int) -> np.ndarray:
    """Sums over the (2r+1)^2 window of every pixel, zero outside: (..., H, W) int64."""
    h, w = x.shape[-2:]
    pad = np.zeros(x.shape[:-2] + (h + 2 * r + 1, w + 2 * r + 1), dtype=np.int64)
    pad[..., r + 1:r + 1 + h, r + 1:r + 1 + w] = x
    c = pad.cumsum(-2).cumsum(-1)
    k = 2 * r + 1
    return c[..., k:k + h, k:k + w] - c[..., :h, k:k + w] - c[..., k:k + h, :w] + c[..., :h, :w]


def _round_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return (2 * num + den) // (2 * den)


def reference(values: np.ndarray, mask: np.ndarray, cross: bool) -> tuple[np.ndarray, np.ndarray]:
    """values, mask: (B, 3, H, W). Returns features (B, 45, H, W) and anchors (B, 3, H, W) int64."""
    m = mask.astype(np.int64)
    vm = values.astype(np.int64) * m
    sums = [_windows(vm, r) - vm for r in RADII]
    counts = [_windows(m, r) - m for r in RADII]
    anchor = np.full_like(vm, 128)
    for s, n in zip(reversed(sums), reversed(counts)):
        anchor = np.where(n > 0, _round_div(s, np.maximum(n, 1)), anchor)
    if cross:
        stats = None
        for r in RADII:
            window = []
            for a, b in CHANNEL_PAIRS:
                pm = m[:, a] * m[:, b]
                va, vb = vm[:, a] * pm, vm[:, b] * pm
                window.append([_windows(x, r) - x for x in (pm, va, vb, va * va, vb * vb, va * vb)])
            window = np.array(window)                     # (pair, stat, B, H, W)
            stats = window if stats is None else np.where(stats[:, :1] == 0, window, stats)
        total, count = np.zeros_like(vm), np.zeros_like(vm)
        for i, (a, b) in enumerate(CHANNEL_PAIRS):
            n, sa, sb, saa, sbb, sab = stats[i]
            cov = n * sab - sa * sb
            k = np.maximum(n, 1)
            for target, source, st, ss, sss in ((a, b, sa, sb, sbb), (b, a, sb, sa, saa)):
                var = k * sss - ss ** 2
                slope = np.where(var > 0, np.clip((16 * cov) // np.maximum(var, 1), 0, 16), 16)
                pred = np.clip(_round_div(16 * st + slope * (k * vm[:, source] - ss), 16 * k), 0, 255)
                ok = m[:, source] * (n > 0)
                total[:, target] += pred * ok
                count[:, target] += ok
        anchor = np.where(count > 0, _round_div(total, np.maximum(count, 1)), anchor)
    feats = [m * MASK_SCALE, (vm - anchor) * m, anchor - 128]
    for r, s, c in zip(RADII, sums, counts):
        has = (c > 0).astype(np.int64)
        feats += [has * MASK_SCALE, (_round_div(s, np.maximum(c, 1)) - anchor) * has,
                  (c * MASK_SCALE) // ((2 * r + 1) ** 2 - 1)]
    return np.clip(np.concatenate(feats, 1), -255, 255), anchor


CASES = [("random", 2, 37, 45), ("random", 1, 1, 1), ("random", 1, 5, 40), ("full-255", 1, 40, 40),
         ("full-random", 1, 33, 34), ("empty", 1, 20, 21), ("sparse", 2, 50, 47), ("two-level", 1, 40, 36),
         ("two-level-full", 1, 38, 41)]      # every 3x3 window has pairs: the float32 fit at its extremes


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("kind,b,h,w", CASES)
def test_features_equal_integer_reference(kind, b, h, w, cross, path, monkeypatch):
    use_path(monkeypatch, path)
    g = np.random.default_rng(h * 100 + w)
    values = g.integers(0, 256, (b, 3, h, w))
    if kind == "full-255":
        values[:] = 255
    if kind.startswith("two-level"):   # extreme variances and covariances: values 0 or 255 only
        values = g.choice([0, 255], (b, 3, h, w))
    density = {"empty": 0.0, "sparse": 0.03, "random": g.random(), "full-255": 1.0, "full-random": 1.0,
               "two-level-full": 1.0}.get(kind, 0.6)
    mask = (g.random((b, 3, h, w)) < density).astype(np.int64)
    feats, anchor = context_features(torch.from_numpy(values), torch.from_numpy(mask), cross)
    want_feats, want_anchor = reference(values, mask, cross)
    assert feats.dtype == torch.float32 and anchor.dtype == torch.int32
    np.testing.assert_array_equal(anchor.numpy(), want_anchor)
    np.testing.assert_array_equal(feats.numpy().astype(np.int64), want_feats)


def test_a_reused_integral_buffer_gives_fresh_features(monkeypatch):
    """FeatureState(reuse=True) builds a large picture's integral in this thread's buffer from
    the last call, whatever that held: pictures of other sizes (smaller, then larger, which
    grows it) and contents give exactly the features of fresh buffers."""
    monkeypatch.setenv("ARDMZIP_JIT", "0")         # the torch path's buffer
    g = np.random.default_rng(7)
    for b, h, w in [(1, 90, 120), (2, 70, 80), (1, 90, 120), (1, 130, 150)]:
        values = torch.from_numpy(g.integers(0, 256, (b, 3, h, w)))
        mask = torch.from_numpy((g.random((b, 3, h, w)) < g.random()).astype(np.int64))
        fresh = FeatureState(values, mask, True).rows(0, h)
        reused = FeatureState(values, mask, True, reuse=True)
        assert reused.integral.shape[2:] == (h + 31, w + 31)          # the large-picture branch
        for got, want in zip(reused.rows(0, h), fresh):
            assert torch.equal(got, want)


@needs_numba
@pytest.mark.parametrize("cross", [False, True])
def test_jit_integral_wraps_exactly_on_a_large_bright_picture(cross, monkeypatch):
    """The compiled kernels keep the integral image in int32, which wraps around (a sum of
    squares reaches 65025 x 300 x 290 > 2^32 here); each window's sum is still exact."""
    use_path(monkeypatch, "jit")
    g = np.random.default_rng(3)
    values = np.full((1, 3, 300, 290), 255)
    values[0, 1, ::2] = 254
    mask = np.ones_like(values)
    mask[0, :, 5::7, 3::5] = 0
    mask[0, 0, 100:140, 20:60] = g.random((40, 40)) < 0.1
    feats, anchor = context_features(torch.from_numpy(values), torch.from_numpy(mask), cross)
    want_feats, want_anchor = reference(values, mask, cross)
    np.testing.assert_array_equal(anchor.numpy(), want_anchor)
    np.testing.assert_array_equal(feats.numpy().astype(np.int64), want_feats)


@needs_numba
@pytest.mark.parametrize("threads", [1, 2])
def test_jit_bands_layouts_and_threads_give_the_whole_pictures_features(threads, monkeypatch):
    """Any band of rows, in either layout and on 1 or 2 threads, equals those rows of the
    torch path's whole-picture features."""
    g = np.random.default_rng(11)
    values = torch.from_numpy(g.integers(0, 256, (2, 3, 41, 37)))
    mask = torch.from_numpy((g.random((2, 3, 41, 37)) < 0.4).astype(np.int64))
    use_path(monkeypatch, "torch")
    want_feats, want_anchor = context_features(values, mask, True)
    use_path(monkeypatch, "jit")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        state = FeatureState(values, mask, True)
        assert state.jit
        for r0, r1, layout in [(0, 41, torch.contiguous_format), (3, 4, torch.channels_last),
                               (17, 41, torch.channels_last), (0, 9, torch.contiguous_format)]:
            feats, anchor = state.rows(r0, r1, layout)
            assert feats.is_contiguous(memory_format=layout)
            assert torch.equal(feats, want_feats[:, :, r0:r1]) and torch.equal(anchor, want_anchor[:, :, r0:r1])
    finally:
        torch.set_num_threads(before)


@needs_numba
def test_jit_integral_ring_gives_every_band_in_any_order(monkeypatch):
    """The kernels keep only the integral's rows near the bands asked for (a ring of slots,
    grown for a taller band, started again for a band above what it holds, and with
    reuse=True in this thread's buffer, whatever the last state left there): bands forwards,
    taller, backwards and repeated, on two pictures in turn, equal the torch path's features."""
    from ardmzip import features_jit
    g = np.random.default_rng(5)
    bands = [(0, 5), (5, 12), (12, 40), (40, 100), (100, 150), (3, 8), (120, 121), (0, 150), (149, 150)]
    for b, h, w, reuse in [(2, 150, 23, True), (1, 90, 40, True), (1, 150, 23, False)]:
        values = torch.from_numpy(g.integers(0, 256, (b, 3, h, w)))
        mask = torch.from_numpy((g.random((b, 3, h, w)) < g.random()).astype(np.int64))
        use_path(monkeypatch, "torch")
        want_feats, want_anchor = context_features(values, mask, True)
        use_path(monkeypatch, "jit")
        state = FeatureState(values, mask, True, reuse=reuse)
        slots = []
        for r0, r1 in bands:
            r1 = min(r1, h)
            if r0 >= r1:
                continue
            feats, anchor = state.rows(r0, r1, torch.channels_last)
            slots.append(state.jit_integral.ring.shape[1])
            assert torch.equal(feats, want_feats[:, :, r0:r1]) and torch.equal(anchor, want_anchor[:, :, r0:r1])
        assert min(slots) < h + 1                      # the ring did wrap
        assert features_jit.PAD == max(RADII)


@needs_numba
def test_a_process_switches_to_the_kernels_after_enough_work(monkeypatch):
    """By default (ARDMZIP_JIT unset) features take the torch path until the codec has
    announced WARM_AFTER pixel-steps (jit.expect), then the kernels for good; 0 never, 1
    always. A lone small picture does not switch; a 0.47 MP photo does, before its first step."""
    import ardmzip
    monkeypatch.delenv("ARDMZIP_JIT", raising=False)
    monkeypatch.setattr(jit, "_state", {"seen": 0, "warm": False})
    values = torch.zeros(1, 3, 16, 16, dtype=torch.int64)
    mask = torch.ones_like(values)
    assert not FeatureState(values, mask).jit
    ardmzip.compress(np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8))
    assert not jit.available() and 0 < jit._state["seen"] < jit.WARM_AFTER
    jit.expect(768 * 608 * 16)
    assert jit.available() and FeatureState(values, mask).jit
    monkeypatch.setenv("ARDMZIP_JIT", "0")
    assert not FeatureState(values, mask).jit
    monkeypatch.setattr(jit, "_state", {"seen": 0, "warm": False})
    monkeypatch.setenv("ARDMZIP_JIT", "1")
    assert FeatureState(values, mask).jit


@needs_numba
def test_an_array_archive_announces_its_whole_work_first(tmp_path, monkeypatch):
    """archive.write_archive of an array, and extract_all of its archive, switch the process to
    the kernels before the first batch when the whole array is enough work (130 thumbnails of
    32x32 at 16 steps: 2.1M pixel-steps, a first batch of 42 only 0.7M); 8 of them do not."""
    from ardmzip import archive
    monkeypatch.delenv("ARDMZIP_JIT", raising=False)
    first_batch = []
    real_compress = archive.compress_pictures

    def spy(*args, **kwargs):
        first_batch.append(jit.available())
        return real_compress(*args, **kwargs)
    monkeypatch.setattr(archive, "compress_pictures", spy)
    images = np.random.default_rng(3).integers(0, 256, (130, 32, 32, 3), dtype=np.uint8)
    for n, warm in ((8, False), (130, True)):
        monkeypatch.setattr(jit, "_state", {"seen": 0, "warm": False})
        first_batch.clear()
        np.savez(tmp_path / f"a{n}.npz", images=images[:n])
        archive.write_archive(tmp_path / f"a{n}.npz", tmp_path / f"a{n}.ardm", steps=16)
        assert first_batch[0] is warm
    real_decompress = archive.decompress_pictures

    def spy_back(*args, **kwargs):
        first_batch.append(jit.available())
        return real_decompress(*args, **kwargs)
    monkeypatch.setattr(archive, "decompress_pictures", spy_back)
    for n, warm in ((8, False), (130, True)):          # and extracting them, in a fresh process state
        monkeypatch.setattr(jit, "_state", {"seen": 0, "warm": False})
        first_batch.clear()
        assert all(e is None for _, e in archive.extract_all(tmp_path / f"a{n}.ardm", tmp_path / f"b{n}.npz"))
        assert first_batch[0] is warm

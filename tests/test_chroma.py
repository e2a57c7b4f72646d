"""Chroma blocks (video frames with half-resolution colour): detection, the prediction, exact
round trips, format version 3 and the bytes of the CHROMA constraint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ardmzip
from ardmzip import archive, chroma, codec, constraint, container
from ardmzip.dlm import frequencies_to_probabilities
from ardmzip.constraint import CHROMA, PALETTE, PLAIN, VALUES, Constraint
from ardmzip.data import subsample_chroma
from ardmzip.errors import FormatError
from helpers import assert_masks_in_the_mixing_pass

from test_codec import smooth_image


def video_frame(h: int, w: int, seed: int = 0, vertical: bool = True, phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A photo-like picture with its chroma averaged over 2x2 (``vertical``) or 1x2 blocks
    starting at ``phase``, as decoded from 4:2:0 / 4:2:2 video."""
    rng = np.random.default_rng(seed)
    base = smooth_image(h, w, 3, seed).astype(np.int64)
    base[..., 2] = np.clip(base[..., 2] + rng.integers(-40, 40, (h, w)) // 8 * 8, 0, 255)   # colour detail
    t = torch.from_numpy(base).permute(2, 0, 1)[None]
    out = subsample_chroma(t, torch.tensor([True]), torch.tensor([vertical]), torch.tensor([phase[0]]),
                           torch.tensor([phase[1]]))
    return out[0].permute(1, 2, 0).numpy().astype(np.uint8)


def kind_and_version(data: bytes) -> tuple[int, int]:
    header, streams = container.unpack(data)
    return streams[0][0], header.version


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize("vertical, phase, blocks", [
    (True, (0, 0), (2, 2, 0, 0)), (True, (1, 1), (2, 2, 1, 1)), (True, (0, 1), (2, 2, 0, 1)),
    (False, (0, 0), (1, 2, 0, 0)), (False, (0, 1), (1, 2, 0, 1)),
])
def test_detect_finds_the_block_shape_and_phase(vertical, phase, blocks):
    assert chroma.detect(video_frame(24, 30, 1, vertical, phase)) == blocks


def test_detect_passes_over_ordinary_pictures():
    assert chroma.detect(smooth_image(24, 30, 3, 2)) is None
    assert chroma.detect(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)) is None
    assert chroma.detect(np.zeros((1, 1, 3), np.uint8)) is None                 # no whole block at all


def test_block_share_counts_non_anchor_pixels_within_one():
    a = np.zeros((2, 2, 3), np.uint8)
    a[0, 1, 0] = 1                       # R-G off by 1: still close
    a[1, 0, 2] = 2                       # B-G off by 2: not
    assert chroma.block_share(a, 2, 2, 0, 0) == pytest.approx(2 / 3)


def brute_force_share(plane, by, bx, oy, ox):
    """block_share read off its definition: every non-anchor pixel of every whole block."""
    d = plane.astype(np.int64)
    diff = np.stack([d[..., 0] - d[..., 1], d[..., 2] - d[..., 1]], -1)
    h, w = plane.shape[:2]
    close = total = 0
    for y0 in range(oy, h - by + 1, by):
        for x0 in range(ox, w - bx + 1, bx):
            for dy in range(by):
                for dx in range(bx):
                    if dy or dx:
                        total += 1
                        close += int(np.abs(diff[y0 + dy, x0 + dx] - diff[y0, x0]).max() <= 1)
    return close / total if total else 0.0


@pytest.mark.parametrize("h, w", [(1, 1), (1, 5), (5, 1), (7, 9), (8, 6)])
def test_block_share_is_the_brute_force_count(h, w):
    rng = np.random.default_rng(h * 10 + w)
    base = rng.integers(0, 250, (h, w, 1))
    plane = np.clip(base + rng.integers(-2, 3, (h, w, 3)), 0, 255).astype(np.uint8)   # a mix of near and far
    for by, bx in chroma.SHAPES:
        for oy in range(by):
            for ox in range(bx):
                assert chroma.block_share(plane, by, bx, oy, ox) == brute_force_share(plane, by, bx, oy, ox)


# ---------------------------------------------------------------- the prediction


def brute_force_prediction(flat, step_of, step, w, blocks, u, s):
    """pred_s of variable u read off the definition, or None."""
    by, bx, oy, ox = blocks
    h = len(flat) // (3 * w)
    p, c = divmod(u, 3)
    y, x = divmod(p, w)
    if s == c or step_of[3 * p + s] >= step:
        return None
    y0, x0 = y - (y - oy) % by, x - (x - ox) % bx
    for qy in range(y0, y0 + by):
        for qx in range(x0, x0 + bx):
            q = qy * w + qx
            if 0 <= qy < h and 0 <= qx < w and q != p and step_of[3 * q + c] < step and step_of[3 * q + s] < step:
                return int(flat[3 * p + s]) + int(flat[3 * q + c]) - int(flat[3 * q + s])
    return None


def brute_force_mix(freq, flat, step_of, step, w, blocks, tables, u):
    """One row of chroma.mix over all 256 values, straight from its docstring."""
    c = u % 3
    t = tables.astype(np.int64)
    preds = {s: brute_force_prediction(flat, step_of, step, w, blocks, u, s) for s in (1, 0, 2)}
    known = [s for s in (1, 0, 2) if preds[s] is not None]
    if not known:
        return freq
    best = max(known, key=lambda s: (t[c, s, 2] * (1 << 20) // t[c, s].sum(), -(1, 0, 2).index(s)))
    product = np.ones(256, np.int64)
    for s in known:
        r = np.arange(256) - preds[s]
        product *= np.where(np.abs(r) <= 2, t[c, s][np.clip(r + 2, 0, 4)], 0)
    if product.sum() == 0:
        return freq
    component = product * 1024 // product.sum()
    return freq * t[c, best, -1] * 1024 + component * t[c, best, :-1].sum() * freq.sum()


@pytest.mark.parametrize("path", ["numpy", "jit"])
@pytest.mark.parametrize("blocks", [(2, 2, 0, 0), (2, 2, 1, 1), (1, 2, 0, 1), (2, 1, 1, 0)])
def test_mix_equals_a_brute_force_reading_of_its_definition(blocks, path, monkeypatch):
    """chroma.mix on the numpy path and on the compiled kernel (chroma_jit.py)."""
    from ardmzip import jit
    if path == "jit" and not jit.installed():
        pytest.skip("numba is not installed")
    monkeypatch.setenv("ARDMZIP_JIT", "1" if path == "jit" else "0")
    rng = np.random.default_rng(sum(blocks))
    h, w = 7, 9
    flat = rng.integers(0, 256, 3 * h * w).astype(np.uint8)
    flat[rng.random(flat.size) < 0.2] = rng.choice([0, 1, 254, 255])         # windows at the edges
    step_of = rng.integers(0, 4, flat.size).astype(np.int64)
    var = np.flatnonzero(step_of == 2)
    tables = rng.integers(0, 256, (3, 3, chroma.TABLE_WIDTH)).astype(np.uint8)
    tables[..., 1:4] = rng.integers(0, 3, (3, 3, 3)) * 120                 # ties and empty windows
    tables[..., -1] |= 1
    freq = torch.from_numpy(rng.integers(1, 1 << 31, (len(var), 256)).astype(np.int64) // 256)
    out = chroma.mix(freq.to(torch.int32), var, flat, step_of, 2, w, blocks, tables)
    assert out.dtype == torch.int64 and int(out.sum(1).max()) < 2 ** 53
    changed = 0
    for row, f, u in zip(out.numpy(), freq.numpy(), var):
        want = brute_force_mix(f, flat, step_of, 2, w, blocks, tables, int(u))
        assert np.array_equal(row, want)
        changed += not np.array_equal(row, f)
    assert 0 < changed < len(var)


@pytest.mark.parametrize("blocks", [(2, 2, 1, 0), (1, 2, 0, 0), (2, 1, 0, 1)])
def test_compiled_mix_is_the_numpy_mix(blocks, monkeypatch):
    """chroma.mix on the compiled kernel gives the numpy path's integers on a video-like
    plane (most residuals within the tables' window, windows cut at 0 and 255), two siblings
    equally sharp with different weights, large rows (sums near 2^31), int32 and int64 rows,
    one and two threads."""
    from ardmzip import jit
    if not jit.installed():
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(7 + sum(blocks))
    h, w = 31, 27
    by, bx, oy, ox = blocks
    green = rng.integers(0, 256, (h, w))
    block_diff = rng.integers(-40, 40, (h // by + 2, w // bx + 2, 2))       # R - G, B - G per block
    rows, cols = (np.arange(h) + (by - oy) % by) // by, (np.arange(w) + (bx - ox) % bx) // bx
    diff = block_diff[rows[:, None], cols[None, :]] + rng.integers(-1, 2, (h, w, 2))
    plane = np.clip(np.stack([green + diff[..., 0], green, green + diff[..., 1]], -1), 0, 255)
    flat = plane.astype(np.uint8).reshape(-1)
    step_of = rng.integers(0, 6, flat.size).astype(np.int32)
    var = np.flatnonzero(step_of == 4)
    tables = chroma.measure_tables(flat.reshape(h, w, 3), blocks)
    tables[0, 2] = tables[0, 1] // 2 * 2                                   # R: siblings G and B
    tables[0, 1] = tables[0, 2] // 2                                       # equally sharp, G first
    tables[..., -1] |= 1
    freq = torch.from_numpy(rng.integers(1, 1 << 23, (len(var), 256)).astype(np.int32))
    args = (var, flat, step_of, 4, w, blocks, tables)
    monkeypatch.setenv("ARDMZIP_JIT", "0")
    want = chroma.mix(freq, *args)
    assert np.array_equal(chroma.mix(freq, *args, probabilities=True), frequencies_to_probabilities(want))
    monkeypatch.setenv("ARDMZIP_JIT", "1")
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert torch.equal(chroma.mix(freq, *args), want)
            assert torch.equal(chroma.mix(freq.long(), *args), want)
            probs = chroma.mix(freq, *args, probabilities=True)      # written in the mixing pass
            assert probs.dtype == np.float64 and np.array_equal(probs, frequencies_to_probabilities(want))
    finally:
        torch.set_num_threads(before)
    assert_masks_in_the_mixing_pass(chroma.mix, freq, args, rng, monkeypatch)
    assert (want != freq.long() * want[:, :1] // freq[:, :1].long()).any(1).float().mean() > 0.3    # mostly mixed


def test_measured_tables_put_the_weight_where_the_residuals_are():
    a = video_frame(32, 32, 2, vertical=False)
    t = chroma.measure_tables(a, (1, 2, 0, 0))
    assert (t[[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1], -1] >= 1).all()
    assert (t[..., 2].max(axis=1) == 255).all() and not t[[0, 1, 2], [0, 1, 2]].any()


# ---------------------------------------------------------------- coding


def test_video_frames_round_trip_as_version_3_and_get_smaller(monkeypatch):
    a = video_frame(40, 48, 3)
    data = ardmzip.compress(a, steps=6)
    assert kind_and_version(data) == (CHROMA, 3)
    assert np.array_equal(ardmzip.decompress(data), a)
    monkeypatch.setattr(chroma, "detect", lambda plane: None)
    plain = ardmzip.compress(a, steps=6)
    assert kind_and_version(plain)[1] == codec.BINARY_VERSION          # a plain plane: binary decisions
    assert len(data) < 0.9 * len(plain)


def test_large_video_frames_take_chroma_by_rule_and_decode_with_any_strips(monkeypatch):
    monkeypatch.setattr(codec, "TRY_ALL_CONSTRAINTS", 100)           # force the one-pass path
    a = video_frame(36, 20, 4, vertical=False, phase=(0, 1))
    data = ardmzip.compress(a, steps=5)
    header, streams = container.unpack(data)
    c, _ = Constraint.parse(streams[0], 3)
    assert c.kind == CHROMA and c.blocks == (1, 2, 0, 1)
    for strip, chunk in [(codec.STRIP_PIXELS, codec.CHUNK), (20 * 10, 97)]:
        assert np.array_equal(codec.decompress_picture(data, strip_pixels=strip, chunk=chunk).pixels, a)


def test_ordinary_pictures_are_version_4_or_2_when_asked_for_3():
    data = ardmzip.compress(smooth_image(16, 16, 3, 5), steps=4)
    assert container.unpack(data)[0].version == codec.BINARY_VERSION and kind_and_version(data)[0] != CHROMA
    old = ardmzip.compress(smooth_image(16, 16, 3, 5), steps=4, version=3)
    assert container.unpack(old)[0].version == container.COMMON_VERSION and kind_and_version(old)[0] != CHROMA


def test_chroma_in_a_version_2_file_is_refused():
    data = ardmzip.compress(video_frame(16, 16, 6), steps=4)
    header, streams = container.unpack(data)
    old = container.pack(container.Header(**{**header.__dict__, "version": 2}), list(streams))
    with pytest.raises(FormatError, match="chroma blocks in a format version 2 file"):
        ardmzip.decompress(old)


def test_batched_video_frames_get_the_streams_they_get_alone():
    frames = [video_frame(16, 20, s) for s in range(3)] + [smooth_image(16, 20, 3, 9)]
    pictures = [ardmzip.imageio.picture_from_array(a) for a in frames]
    together = codec.compress_pictures(pictures, steps=4)
    assert together == [codec.compress_picture(p, steps=4) for p in pictures]
    assert [kind_and_version(d)[1] for d in together] == [3, 3, 3, 4]


def test_archive_members_with_chroma_blocks_rebuild_and_resume(tmp_path):
    """An archive member coded with chroma blocks rebuilds its .ardm byte for byte, version
    included (archive formats 2 and 3 recompute it from the streams), and resume keeps it."""
    frames = np.stack([video_frame(40, 48, 3), video_frame(40, 48, 7)])
    np.save(tmp_path / "v.npy", frames)
    out = tmp_path / "v.ardm"

    def stop(member, resumed):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        archive.write_archive(tmp_path / "v.npy", out, 3, on_member=stop)
    assert archive.write_archive(tmp_path / "v.npy", out, 3, resume=True).resumed == 1
    index = archive.read_index(out)
    with open(out, "rb") as f:
        for m, frame in zip(index.members, frames):
            blob = archive._read_blob(f, index, m)
            assert blob == codec.compress_picture(ardmzip.imageio.picture_from_array(frame), steps=3)
            assert kind_and_version(blob) == (CHROMA, codec.format_version(list(container.unpack(blob)[1])))


# ---------------------------------------------------------------- bytes


@pytest.mark.parametrize("inner", [
    Constraint(PLAIN, 3), Constraint(VALUES, 3, np.arange(768).reshape(3, 256) % 3 == 0),
    Constraint(PALETTE, 3, np.array([[0, 0, 1], [0, 1, 0], [255, 0, 0]], np.uint8)),
])
@pytest.mark.parametrize("blocks", [(2, 2, 0, 0), (2, 2, 1, 0), (1, 2, 0, 1), (2, 1, 1, 0)])
def test_chroma_bytes_round_trip(inner, blocks):
    tables = np.random.default_rng(sum(blocks)).integers(1, 256, (3, 3, chroma.TABLE_WIDTH)).astype(np.uint8)
    tables[[0, 1, 2], [0, 1, 2]] = 0
    c = Constraint.chroma_blocks(inner, blocks, tables)
    parsed, rest = Constraint.parse(c.to_bytes() + b"tail", 3)
    assert rest == b"tail" and parsed.kind == CHROMA and parsed.blocks == blocks
    assert np.array_equal(parsed.data, tables)
    assert parsed.inner.kind == inner.kind and parsed.palette == (inner.kind == PALETTE)
    assert constraint.describe(c.to_bytes(), 3).startswith(f"chroma blocks {blocks[0]}x{blocks[1]}")


TABLES = bytes([0, 0, 255, 0, 0, 1] * 6)


@pytest.mark.parametrize("stream, channels, message", [
    (b"\x05\x03" + TABLES + b"\x00", 1, "unknown plane constraint"),            # RGB planes only
    (b"\x05\x00" + TABLES + b"\x00", 3, "bad chroma block byte"),               # 1x1 blocks
    (b"\x05\x06" + TABLES + b"\x00", 3, "bad chroma block byte"),               # row offset 1 with 1-row blocks
    (b"\x05\x13" + TABLES + b"\x00", 3, "bad chroma block byte"),               # unknown bits
    (b"\x05\x03" + bytes(35) + b"\x00", 3, "chroma table without network weight"),
    (b"\x05\x03" + TABLES + b"\x04", 3, "bad constraint inside chroma"),        # GRAY inside
    (b"\x05\x03" + TABLES + b"\x05\x03" + TABLES + b"\x00", 3, "bad constraint inside chroma"),
    (b"\x05\x03" + TABLES[:-1], 3, "truncated"),
    (b"\x05\x03", 3, "truncated"),
])
def test_malformed_chroma_constraints_are_format_errors(stream, channels, message):
    with pytest.raises(FormatError, match=message):
        Constraint.parse(stream, channels)

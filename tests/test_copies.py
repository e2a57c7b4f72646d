"""Colour copies (palette pictures mix in the colours of revealed neighbours): the votes, exact
round trips, format version 3 and the bytes of the COPY constraint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ardmzip
from ardmzip import codec, constraint, container, copies
from ardmzip.dlm import frequencies_to_probabilities
from ardmzip.constraint import COPY, PALETTE, PLAIN, VALUES, Constraint
from ardmzip.errors import FormatError
from helpers import assert_masks_in_the_mixing_pass

from test_constraint import palette_image


def brute_force_votes(flat, step_of, step, w, radius, weights, u):
    """One row of copies.votes read off its definition."""
    h = len(flat) // (3 * w)
    p, c = divmod(u, 3)
    y, x = divmod(p, w)
    siblings = [s for s in range(3) if s != c and step_of[3 * p + s] < step]
    row = np.zeros(256, np.int64)
    for qy in range(y - radius, y + radius + 1):
        for qx in range(x - radius, x + radius + 1):
            q = qy * w + qx
            if not (0 <= qy < h and 0 <= qx < w) or q == p or step_of[3 * q + c] >= step:
                continue
            if all(step_of[3 * q + s] < step and flat[3 * q + s] == flat[3 * p + s] for s in siblings):
                row[flat[3 * q + c]] += weights[len(siblings)]
    return row


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_votes_equal_a_brute_force_reading(radius):
    rng = np.random.default_rng(radius)
    h, w = 8, 11
    colours = rng.integers(0, 256, (4, 3))
    flat = colours[rng.integers(0, 4, h * w)].astype(np.uint8).reshape(-1)     # few colours: many votes
    step_of = rng.integers(0, 4, flat.size).astype(np.int64)
    var = np.flatnonzero(step_of == 2)
    got = copies.votes(var, flat, step_of, 2, w, radius, (3, 17, 250))
    for row, u in zip(got, var):
        assert np.array_equal(row, brute_force_votes(flat, step_of, 2, w, radius, (3, 17, 250), int(u)))
    assert got.any()


def test_mix_keeps_the_networks_shape_and_adds_the_votes():
    flat = np.array([10, 20, 30, 10, 20, 0], np.uint8)        # pixel 1 agrees with pixel 0 on R and G
    step_of = np.array([0, 0, 0, 0, 0, 1])
    freq = torch.full((1, 256), 2, dtype=torch.int32)
    out = copies.mix(freq, np.array([5]), flat, step_of, 1, 2, 1, (1, 2, 5), 16)
    assert out.dtype == torch.int64
    assert int(out[0, 30]) == 2 * 16 + 5 * 512 and int((out[0] == 32).sum()) == 255


@pytest.mark.parametrize("radius", [1, 6, 15])
def test_compiled_mix_is_the_numpy_mix(radius, monkeypatch):
    """copies.mix on the compiled kernel (copies_jit.py) gives the numpy path's integers:
    windows cut by every border, votes with none, one and both sibling channels to agree on,
    large frequencies (the rows' sums near 2^31), on one and two threads."""
    from ardmzip import jit
    if not jit.installed():
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(radius)
    h, w = 23, 19
    colours = rng.integers(0, 256, (6, 3))
    flat = colours[rng.integers(0, 6, h * w)].astype(np.uint8).reshape(-1)
    step_of = rng.integers(0, 5, flat.size).astype(np.int32)
    var = np.flatnonzero(step_of == 3)
    freq = torch.from_numpy(rng.integers(1, 1 << 23, (len(var), 256)).astype(np.int32))
    args = (var, flat, step_of, 3, w, radius, (3, 17, 250), 16)
    monkeypatch.setenv("ARDMZIP_JIT", "0")
    want = copies.mix(freq, *args)
    assert np.array_equal(copies.mix(freq, *args, probabilities=True), frequencies_to_probabilities(want))
    monkeypatch.setenv("ARDMZIP_JIT", "1")
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert torch.equal(copies.mix(freq, *args), want)
            probs = copies.mix(freq, *args, probabilities=True)      # written in the mixing pass
            assert probs.dtype == np.float64 and np.array_equal(probs, frequencies_to_probabilities(want))
    finally:
        torch.set_num_threads(before)
    assert_masks_in_the_mixing_pass(copies.mix, freq, args, rng, monkeypatch)
    assert (want != freq.long() * 16).any()


def test_palette_pictures_round_trip_with_copies_as_version_3(monkeypatch):
    monkeypatch.setattr(codec, "TRY_ALL_CONSTRAINTS", 100)           # large-plane rule: copies
    a = palette_image(30, 26, 3, seed=4)
    data = ardmzip.compress(a, steps=5)
    header, streams = container.unpack(data)
    rule, _ = Constraint.parse(streams[0], 3)
    assert rule.kind == COPY and rule.inner.kind == PALETTE and header.version == 3
    assert np.array_equal(ardmzip.decompress(data), a)
    for strip, chunk in [(26 * 8, 101), (codec.STRIP_PIXELS, codec.CHUNK)]:
        assert np.array_equal(codec.decompress_picture(data, strip_pixels=strip, chunk=chunk).pixels, a)


def test_copies_make_a_noisy_palette_picture_smaller():
    # dithered palette picture: many exact repeats nearby, which the network alone cannot see
    rng = np.random.default_rng(5)
    pal = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    index = (np.arange(48)[:, None] // 6 * 5 + rng.integers(0, 5, (48, 48))) % 40
    a = pal[index]
    plain = [c for c in constraint.candidates(a) if c.kind == PALETTE]
    with_copies = [c for c in constraint.candidates(a) if c.kind == COPY]
    assert len(plain) == len(with_copies) == 1
    sizes = {}
    for name, cands in [("palette", plain), ("copies", with_copies)]:
        real = constraint.candidates
        try:
            constraint.candidates = lambda p, cands=cands: cands
            sizes[name] = len(ardmzip.compress(a, steps=6))
        finally:
            constraint.candidates = real
    assert sizes["copies"] < 0.95 * sizes["palette"]


def test_copies_in_a_version_2_file_are_refused(monkeypatch):
    monkeypatch.setattr(codec, "TRY_ALL_CONSTRAINTS", 100)
    data = ardmzip.compress(palette_image(24, 24, 3, seed=6), steps=3)
    header, streams = container.unpack(data)
    assert streams[0][0] == COPY
    old = container.pack(container.Header(**{**header.__dict__, "version": 2}), list(streams))
    with pytest.raises(FormatError, match="colour copies in a format version 2 file"):
        ardmzip.decompress(old)


@pytest.mark.parametrize("inner", [
    Constraint(PLAIN, 3), Constraint(VALUES, 3, np.arange(768).reshape(3, 256) % 3 == 0),
    Constraint(PALETTE, 3, np.array([[0, 0, 1], [0, 1, 0], [255, 0, 0]], np.uint8)),
])
def test_copy_bytes_round_trip(inner):
    c = Constraint.colour_copies(inner, 9, (2, 30, 200), 7)
    parsed, rest = Constraint.parse(c.to_bytes() + b"tail", 3)
    assert rest == b"tail" and parsed.kind == COPY and parsed.data.tolist() == [9, 2, 30, 200, 7]
    assert parsed.inner.kind == inner.kind and parsed.palette == (inner.kind == PALETTE)
    assert constraint.describe(c.to_bytes(), 3).startswith("colour copies (radius 9), ")


@pytest.mark.parametrize("stream, channels, message", [
    (b"\x06\x06\x01\x10\x40\x10\x00", 1, "unknown plane constraint"),         # RGB planes only
    (b"\x06\x00\x01\x10\x40\x10\x00", 3, "radius 0"),
    (b"\x06\x10\x01\x10\x40\x10\x00", 3, "radius 16"),
    (b"\x06\x06\x01\x10\x40\x00\x00", 3, "without network weight"),
    (b"\x06\x06\x01\x10\x40\x10\x03\x01\x02\x03", 3, "bad constraint inside colour copies"),   # CONSTANT
    (b"\x06\x06\x01\x10\x40\x10\x06\x06\x01\x10\x40\x10\x00", 3, "bad constraint inside colour copies"),
    (b"\x06\x06\x01\x10", 3, "truncated"),
])
def test_malformed_copy_constraints_are_format_errors(stream, channels, message):
    with pytest.raises(FormatError, match=message):
        Constraint.parse(stream, channels)

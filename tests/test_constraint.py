"""Value constraints (palette, value sets, gray-as-RGB, constant planes): exact and never costlier."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ardmzip
from ardmzip import codec, constraint, container
from ardmzip.constraint import CONSTANT, COPY, GRAY, PALETTE, PLAIN, STORED, VALUES, Constraint
from ardmzip.errors import FormatError
from ardmzip.imageio import picture_from_array

from test_codec import smooth_image


def plane_kinds(data: bytes) -> list[int]:
    """The kind byte of every plane stream in an .ardm file."""
    _, streams = container.unpack(data)
    return [s[0] for s in streams]


def palette_image(h: int, w: int, colors: int, seed: int = 0) -> np.ndarray:
    """A smooth picture mapped onto ``colors`` random colours (like a GIF)."""
    rng = np.random.default_rng(seed)
    pal = rng.integers(0, 256, (colors, 3), dtype=np.uint8)
    index = smooth_image(h, w, 1, seed)[..., 0].astype(int) * colors // 256
    return pal[index]


def roundtrip_kinds(a: np.ndarray, steps: int = 6, version: int | None = None) -> tuple[list[int], int]:
    data = ardmzip.compress(a, steps=steps, version=version)
    assert np.array_equal(ardmzip.decompress(data).reshape(a.shape), a)
    return plane_kinds(data), len(data)


def test_palette_image_uses_the_palette_and_gets_much_smaller():
    a = palette_image(40, 40, 12)
    kinds, size = roundtrip_kinds(a)
    assert kinds in ([PALETTE], [COPY])                      # COPY: the palette with colour copies
    plain = len(_compress_with(a, PLAIN))
    assert size < 0.6 * plain


def test_large_planes_pick_by_rule_and_round_trip(monkeypatch):
    monkeypatch.setattr(codec, "TRY_ALL_CONSTRAINTS", 100)        # force the one-pass path
    for a, kind in [(palette_image(40, 40, 5, seed=1), COPY),                  # the palette, with copies
                    ((smooth_image(20, 20, 3, seed=2) // 4) * 4, VALUES)]:
        kinds, _ = roundtrip_kinds(a, steps=4)
        assert kinds == [kind]


def test_quantised_gray_uses_value_sets():
    a = (smooth_image(48, 48, 1, seed=3)[..., 0] // 8) * 8
    kinds, size = roundtrip_kinds(a)
    assert kinds == [VALUES]
    assert size < 0.8 * len(_compress_with(a, PLAIN))


def test_gray_stored_as_rgb_is_coded_as_one_gray_plane():
    g = smooth_image(24, 24, 1, seed=4)
    a = np.repeat(g, 3, axis=2)
    kinds, size = roundtrip_kinds(a)
    assert kinds == [GRAY]
    gray_alone = len(ardmzip.compress(g[..., 0], steps=6))
    assert size <= gray_alone + 2                                  # mode differs, bits do not


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (1, 1, 4), (3, 3, 2)])
def test_constant_planes_need_no_bitstream(shape):
    a = np.full(shape, 200, np.uint8)
    kinds, size = roundtrip_kinds(a)
    assert all(k == CONSTANT for k in kinds)
    assert size < 60


def test_binary_alpha_round_trips_with_its_value_set():
    rgb = smooth_image(30, 30, 3, seed=5)
    alpha = np.where(smooth_image(30, 30, 1, seed=6) > 128, 255, 0).astype(np.uint8)
    a = np.concatenate([rgb, alpha], -1)
    kinds, _ = roundtrip_kinds(a)
    assert kinds[1] == VALUES


def test_small_planes_keep_plain_when_side_information_does_not_pay():
    # uniform noise: every candidate costs more bytes than it saves (and from version 4 on
    # coding itself does: the plane is stored)
    a = np.random.default_rng(7).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    assert roundtrip_kinds(a, version=3)[0] == [PLAIN]
    assert roundtrip_kinds(a)[0] == [STORED]


def _compress_with(a: np.ndarray, kind: int) -> bytes:
    """Compress with the candidates cut down to those of ``kind`` (PLAIN always included)."""
    real = constraint.candidates
    try:
        constraint.candidates = lambda p: [c for c in real(p) if c.kind in (PLAIN, kind)] or real(p)
        return ardmzip.compress(a, steps=6)
    finally:
        constraint.candidates = real


# ---------------------------------------------------------------- the masks themselves


def brute_force_allowed(pal: np.ndarray, flat: np.ndarray, revealed: np.ndarray, u: int) -> set[int]:
    pixel, ch = divmod(u, 3)
    ok = np.ones(len(pal), bool)
    for other in range(3):
        if other != ch and revealed[3 * pixel + other]:
            ok &= pal[:, other] == flat[3 * pixel + other]
    return set(pal[ok, ch].tolist())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("path", ["0", "1"])
def test_palette_masks_equal_a_brute_force_reading_of_the_palette(seed, path, monkeypatch):
    """On both paths: torch, and the compiled one (coder_jit.masked) where numba is."""
    monkeypatch.setenv("ARDMZIP_JIT", path)
    rng = np.random.default_rng(seed)
    img = palette_image(9, 11, int(rng.integers(2, 40)), seed)
    (c,) = [c for c in constraint.candidates(img) if c.kind == PALETTE]
    flat = img.reshape(-1)
    step_of = rng.integers(0, 4, flat.size).astype(np.int32)
    step = 2
    var = np.flatnonzero(step_of == step)
    freq = torch.from_numpy(rng.integers(1, 1000, (len(var), 256)).astype(np.int32))
    out = c.restrict(freq, var, flat, step_of, step, 11)
    for row, u in zip(out, var):
        allowed = brute_force_allowed(c.data, flat, step_of < step, int(u))
        assert set(torch.nonzero(row).view(-1).tolist()) == allowed
        assert int(flat[u]) in allowed                               # the truth is never masked
    assert (out <= freq).all()


@pytest.mark.parametrize("path", ["0", "1"])
def test_a_value_outside_the_palette_leaves_frequencies_defined(path, monkeypatch):
    """Only a damaged stream can reveal such values; decoding must stay defined (both paths)."""
    monkeypatch.setenv("ARDMZIP_JIT", path)
    pal_img = np.array([[[0, 0, 0], [10, 20, 30]]], np.uint8)
    (c,) = [c for c in constraint.candidates(pal_img) if c.kind == PALETTE]
    flat = np.array([99, 99, 5, 0, 0, 0], np.uint8)                  # pixel 0: impossible revealed values
    step_of = np.array([0, 0, 1, 1, 1, 1], np.int32)
    freq = torch.ones(1, 256, dtype=torch.int32)
    out = c.restrict(freq, np.array([2]), flat, step_of, 1, 2)
    assert int(out.sum()) > 0 and torch.equal(out, freq)


def test_compiled_masks_are_the_torch_masks(monkeypatch):
    """constraint.restrict for palette and value-set planes: the compiled pass gives the torch
    path's rows, empty rows (impossible revealed values) kept as they were."""
    from ardmzip import jit
    if not jit.installed():
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(8)
    img = palette_image(13, 17, 30, 8)
    flat = img.reshape(-1).copy()
    step_of = rng.integers(0, 4, flat.size).astype(np.int32)
    flat[(step_of < 2) & (rng.random(flat.size) < 0.05)] = 255            # a few impossible revealed values
    var = np.flatnonzero(step_of == 2)
    freq = torch.from_numpy(rng.integers(1, 1 << 20, (len(var), 256)).astype(np.int32))
    for c in constraint.candidates(img):
        if c.kind not in (PALETTE, VALUES):
            continue
        outs = []
        for path in ("0", "1"):
            monkeypatch.setenv("ARDMZIP_JIT", path)
            outs.append(c.restrict(freq, var, flat, step_of, 2, 17))
        assert outs[0].dtype == outs[1].dtype == torch.int32 and torch.equal(outs[0], outs[1])


# ---------------------------------------------------------------- bytes


@pytest.mark.parametrize("c", [
    Constraint(PLAIN, 3), Constraint(CONSTANT, 1, np.array([7], np.uint8)), Constraint(GRAY, 3),
    Constraint(VALUES, 3, np.arange(768).reshape(3, 256) % 3 == 0),
    Constraint(PALETTE, 3, np.array([[0, 0, 1], [0, 1, 0], [255, 0, 0]], np.uint8)),
    Constraint(PALETTE, 3, np.stack([np.arange(200, dtype=np.uint8)] * 3, 1)),
])
def test_constraint_bytes_round_trip(c):
    parsed, rest = Constraint.parse(c.to_bytes() + b"tail", c.channels)
    assert rest == b"tail" and parsed.kind == c.kind
    if c.data is not None:
        assert np.array_equal(parsed.data, c.data)


@pytest.mark.parametrize("stream, channels, message", [
    (b"", 3, "empty plane stream"),
    (b"\x09", 3, "unknown plane constraint"),
    (b"\x02\x01\x00\x00\x00", 1, "unknown plane constraint"),        # palettes are for 3-channel planes
    (b"\x04", 1, "unknown plane constraint"),
    (b"\x01" + bytes(31), 1, "truncated"),
    (b"\x01" + bytes(32), 1, "empty value set"),
    (b"\x02\x00", 3, "palette of 0"),
    (b"\x02\x81\x80\x80", 3, "out of range"),
    (b"\x02\x81\x00", 3, "overlong"),
    (b"\x02\x02\x00\x00\x01\x00\x00\x00", 3, "increasing order"),
    (b"\x02\x02\x00\x00\x01", 3, "truncated"),
    (b"\x03\x05", 3, "truncated"),
])
def test_malformed_constraints_are_format_errors(stream, channels, message):
    with pytest.raises(FormatError, match=message):
        Constraint.parse(stream, channels)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.sampled_from([1, 3]))
def test_constraint_parser_never_raises_anything_but_format_error(data, channels):
    try:
        c, rest = Constraint.parse(data, channels)
    except FormatError:
        return
    assert len(rest) <= len(data)
    assert Constraint.parse(c.to_bytes() + rest, channels)[1] == rest


def test_data_after_a_constant_plane_is_refused():
    data = ardmzip.compress(np.full((4, 4, 3), 3, np.uint8))
    header, streams = container.unpack(data)
    with pytest.raises(FormatError, match="after a constant plane"):
        ardmzip.decompress(container.pack(header, [streams[0] + b"\0\0\0\0"]))


# ---------------------------------------------------------------- format version 1


def test_version_1_files_still_decode():
    """Version 1 had no constraint byte and stored a constant alpha as one raw byte."""
    rgb = np.random.default_rng(8).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    a = np.concatenate([rgb, np.full((10, 10, 1), 77, np.uint8)], -1)
    header, (color, alpha) = container.unpack(ardmzip.compress(a, steps=3, version=3))     # 256-way rows
    assert color[0] == PLAIN and alpha == bytes([CONSTANT, 77])
    fields = {k: getattr(header, k) for k in header.__dataclass_fields__}
    old = container.pack(container.Header(**{**fields, "version": 1}), [color[1:], bytes([77])])
    assert container.peek_header(old).version == 1
    assert np.array_equal(ardmzip.decompress(old), a)


def test_stats_count_side_information_apart_from_the_ans_stream():
    a = palette_image(30, 30, 6, seed=9)
    stats = codec.Stats()
    data = codec.compress_picture(picture_from_array(a), steps=4, stats=stats)
    copies = 6 if plane_kinds(data) == [COPY] else 0                  # its kind byte and 5 parameters
    assert stats.side_bits == 8 * (copies + 2 + 3 * len(np.unique(a.reshape(-1, 3), axis=0)))
    assert stats.subpixels == a.size
    assert stats.file_bits <= stats.ideal_bits * 1.01 + 64
    assert 8 * len(data) > stats.file_bits + stats.side_bits


def test_info_names_each_planes_constraint():
    from ardmzip.files import info
    rgba = np.concatenate([palette_image(20, 20, 2), np.full((20, 20, 1), 9, np.uint8)], -1)
    i = info(ardmzip.compress(rgba, steps=3))
    assert i["planes"] == ["palette (2 colours)", "constant"] and i["format_version"] == 2
    gray_rgb = np.repeat((smooth_image(20, 20, 1) // 64) * 64, 3, axis=2)
    assert info(ardmzip.compress(gray_rgb, steps=3))["planes"][0].startswith("gray as RGB, ")


# ---------------------------------------------------------------- stored planes (format version 4)


@pytest.mark.parametrize("shape", [(2, 2), (48, 48, 4), (32, 32, 3), (9, 7, 2)])
def test_noise_is_stored_and_never_costs_more_than_its_bytes_plus_a_header(shape):
    a = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    data = ardmzip.compress(a, steps=4)
    header, streams = container.unpack(data)
    assert header.version == 4 and all(s[0] == STORED for s in streams)
    assert len(data) <= a.size + 64
    assert np.array_equal(ardmzip.decompress(data).reshape(a.shape), a)
    from ardmzip.files import info
    assert "stored" in info(data)["planes"]
    # files for older decoders (version 3) never store
    old = container.unpack(ardmzip.compress(a, steps=4, version=3))
    assert old[0].version < 4 and all(s[0] != STORED for s in old[1])


def test_stored_planes_are_checked():
    a = np.random.default_rng(5).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    header, streams = container.unpack(ardmzip.compress(a, steps=3))
    assert streams[0][0] == STORED
    fields = {k: getattr(header, k) for k in header.__dataclass_fields__}
    with pytest.raises(FormatError, match="stored plane in a format version 3"):
        ardmzip.decompress(container.pack(container.Header(**{**fields, "version": 3}), list(streams)))
    with pytest.raises(FormatError, match="stored plane of the wrong size"):
        ardmzip.decompress(container.pack(header, [streams[0][:-1]]))


def test_a_smooth_picture_is_coded_not_stored():
    data = ardmzip.compress(smooth_image(40, 40, 3), steps=4)
    assert container.unpack(data)[1][0][0] != STORED and len(data) < 0.8 * 40 * 40 * 3

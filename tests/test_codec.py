"""Round trips through the codec (API level) and the properties the format promises."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import ardmzip
from ardmzip import codec, container, weights
from ardmzip.ardm import coding_ranks, interlaced_ranks, plane_ranks
from ardmzip.errors import ChecksumError, FormatError, InputError
from ardmzip.imageio import picture_from_array
from helpers import full_layout


def smooth_image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """A photo-like image: smooth gradients plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 7.0 + seed) + 40 * np.cos(y / 5.0)
    chans = [base + 20 * k + rng.normal(0, 3, (h, w)) for k in range(c)]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def roundtrip(a: np.ndarray, **kw) -> np.ndarray:
    return ardmzip.decompress(ardmzip.compress(a, **kw))


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 9, 3), (9, 1, 3), (33, 17, 3), (1, 1), (17, 33),
                                   (12, 10, 1), (12, 10, 2), (11, 13, 4)])
def test_roundtrip_shapes_and_modes(shape):
    a = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    out = roundtrip(a, steps=4)
    assert out.shape == (a.shape[:2] if a.ndim == 2 or a.shape[2] == 1 else a.shape)    # gray comes back (H, W)
    assert np.array_equal(out.reshape(a.shape), a)


def test_gray_comes_back_two_dimensional_as_numpy_reads_a_gray_png():
    """(H, W) in, (H, W) out; an (H, W, 1) array is the same picture (mode L) and comes back
    (H, W) too, as np.asarray gives for Pillow's L and 1 images. Other modes keep (H, W, C)."""
    a = smooth_image(9, 7, 1)[..., 0]
    for given in (a, a[..., None]):
        out = roundtrip(given, steps=2)
        assert out.shape == (9, 7) and out.dtype == np.uint8 and np.array_equal(out, a)
    assert roundtrip(smooth_image(9, 7, 2), steps=2).shape == (9, 7, 2)
    bits = np.where(smooth_image(9, 7, 1) > 128, 255, 0).astype(np.uint8)           # a 1-bit picture
    data = codec.compress_picture(codec.Picture(bits, "1"), 2)
    assert np.array_equal(ardmzip.decompress(data), bits[..., 0])
    assert codec.decompress_picture(data).pixels.shape == (9, 7, 1)                  # the Picture keeps C


@pytest.mark.parametrize("steps", [1, 2, 3, 16, 5000])
def test_roundtrip_any_step_budget(steps):
    a = smooth_image(4, 5, 3) if steps > 16 else smooth_image(14, 15, 3)
    assert np.array_equal(roundtrip(a, steps=steps), a)


def test_roundtrip_extreme_values_and_seeds():
    a = np.zeros((8, 8, 4), dtype=np.uint8)
    a[::2, ::3] = 255
    a[..., 3] = np.arange(64).reshape(8, 8)              # varying alpha: its own plane
    for seed in (0, 1, 2**64 - 1):                          # alpha uses seed + 1, wrapped
        assert np.array_equal(roundtrip(a, steps=3, seed=seed), a)


def test_constant_alpha_costs_one_byte():
    rgb = smooth_image(16, 16, 3)
    rgba = np.concatenate([rgb, np.full((16, 16, 1), 255, np.uint8)], -1)
    assert len(ardmzip.compress(rgba, steps=4)) - len(ardmzip.compress(rgb, steps=4)) <= 3
    assert np.array_equal(roundtrip(rgba, steps=4), rgba)


def test_model_compresses_a_smooth_image():
    a = smooth_image(48, 48, 3)
    data = ardmzip.compress(a, steps=8)
    assert 8 * len(data) / a.size < 7.0


def test_decoder_strip_and_chunk_sizes_are_not_part_of_the_format(monkeypatch):
    monkeypatch.setattr(codec, "MIN_STRIP_ROWS", 1)
    a = smooth_image(40, 24, 3, seed=1)
    data = ardmzip.compress(a, steps=3)
    m = ardmzip.weights.load(None)
    assert len(codec.PlaneCoder(m.net, m.curve, 40, 24, False, 3, 0, 24 * 80, 50).strips) > 1   # really strips
    for strip_pixels, chunk in [(24 * 80, 50), (1 << 20, 7)]:
        pic = codec.decompress_picture(data, strip_pixels=strip_pixels, chunk=chunk)
        assert np.array_equal(pic.pixels, a)


def test_encoder_strips_and_chunks_give_identical_files(monkeypatch):
    a = smooth_image(40, 24, 3, seed=2)
    data = ardmzip.compress(a, steps=3)
    monkeypatch.setattr(codec, "MIN_STRIP_ROWS", 1)
    monkeypatch.setattr(codec.PlaneCoder.__init__, "__defaults__", (24 * 80, 33))
    assert ardmzip.compress(a, steps=3) == data


def test_one_thread_file_decodes_with_two_threads_and_back():
    a = smooth_image(20, 20, 3, seed=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ardmzip.compress(a, steps=6)
        torch.set_num_threads(2)
        two = ardmzip.compress(a, steps=6)
        assert one == two
        assert np.array_equal(ardmzip.decompress(one), a)
        torch.set_num_threads(1)
        assert np.array_equal(ardmzip.decompress(two), a)
    finally:
        torch.set_num_threads(before)


def test_file_bits_within_one_percent_of_cross_entropy():
    a = smooth_image(64, 64, 3, seed=4)
    stats = codec.Stats()
    data = codec.compress_picture(picture_from_array(a), steps=12, stats=stats)
    payload_bits = stats.file_bits
    assert payload_bits <= stats.ideal_bits * 1.01 + 64
    assert 8 * len(data) > payload_bits                      # the header is counted in the file


def test_coding_order_is_a_fixed_permutation():
    r = coding_ranks(1000, 7)
    assert sorted(r.tolist()) == list(range(1000))
    # pinned values: a change here changes the meaning of every existing file
    assert coding_ranks(10, 0).tolist() == [6, 0, 8, 7, 1, 2, 4, 3, 9, 5]
    assert coding_ranks(10, 2**64 - 1).tolist() == [6, 7, 5, 1, 0, 3, 9, 2, 4, 8]
    assert not np.array_equal(coding_ranks(1000, 8), r)


def test_interlaced_order_codes_the_coarse_grid_first_in_the_seed_order():
    h, w = 7, 6
    for channels in (1, 3):
        r = interlaced_ranks(h, w, channels, 3)
        assert sorted(r.tolist()) == list(range(h * w * channels))
        pixel = np.arange(h * w * channels) // channels
        coarse = ((pixel // w) % 2 == 0) & ((pixel % w) % 2 == 0)
        assert r[coarse].max() < r[~coarse].min()                 # every coarse subpixel first
        keys = coding_ranks(h * w * channels, 3)                  # each level in the random order's sequence
        assert np.array_equal(np.argsort(r[coarse]), np.argsort(keys[coarse]))
        assert np.array_equal(np.argsort(r[~coarse]), np.argsort(keys[~coarse]))
    # pinned values: a change here changes the meaning of every file made with such a model
    assert interlaced_ranks(2, 3, 1, 0).tolist() == [0, 2, 1, 5, 3, 4]
    assert interlaced_ranks(2, 2, 3, 5).tolist() == [2, 1, 0, 5, 11, 10, 9, 7, 6, 8, 4, 3]
    assert plane_ranks("random", 4, 5, 3, 9).tolist() == coding_ranks(60, 9).tolist()
    with pytest.raises(ValueError):
        plane_ranks("zigzag", 4, 5, 3, 9)


def test_a_model_declaring_an_unknown_order_is_refused(tmp_path):
    import io, json
    with np.load(weights.MODEL_DIR / "xi-s48.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    assert meta["config"]["order"] == "interlace2"
    meta["config"]["order"] = "zigzag"
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(ardmzip.ModelMismatch, match="coding order"):
        weights.from_bytes(buf.getvalue(), "zigzag-model")


def test_payload_damage_is_detected_never_silent():
    a = smooth_image(16, 16, 3, seed=5)
    data = bytearray(ardmzip.compress(a, steps=4))
    header_len = len(container.pack(container.peek_header(bytes(data)), []))
    for pos in range(header_len, len(data), max(1, (len(data) - header_len) // 12)):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(FormatError):
            ardmzip.decompress(bytes(bad))


def test_stream_damage_behind_a_valid_crc_is_caught_by_the_pixel_checksum(monkeypatch):
    """Even if a damaged stream slipped past the container CRC, wrong pixels are refused."""
    a = smooth_image(12, 12, 3, seed=6)
    data = ardmzip.compress(a, steps=3)
    header, streams = container.unpack(data)
    words = bytearray(streams[0])
    words[-5] ^= 0x01
    forged = container.pack(header, [bytes(words)])
    with pytest.raises((ChecksumError, FormatError)):
        ardmzip.decompress(forged)


def test_bad_arrays_are_refused():
    for bad in [np.zeros((4, 4), np.int16), np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 5), np.uint8),
                [[1, 2], [3, 4]]]:
        with pytest.raises(InputError):
            ardmzip.compress(bad)
    with pytest.raises(InputError):
        ardmzip.compress(np.zeros((4, 4, 3), np.uint8), steps=0)


def test_unknown_model_is_named():
    a = smooth_image(4, 4, 3)
    header, streams = container.unpack(ardmzip.compress(a, steps=2))
    other = container.Header("future-model", b"\x01" * 8, header.mode, header.width, header.height,
                             header.steps, header.seed, header.pixel_crc, header.metadata)
    with pytest.raises(ardmzip.ModelMismatch, match="future-model"):
        ardmzip.decompress(container.pack(other, streams))


def legacy_image() -> np.ndarray:
    """The pixels of the files in tests/data (integer arithmetic only, so they never drift)."""
    y, x = np.mgrid[0:14, 0:19]
    rgb = [(x * 9 + y * 5 + 40 * c + (x * y) % 7) % 256 for c in range(3)]
    alpha = np.where((x + y) % 5 == 0, 255, 200)
    return np.stack(rgb + [alpha], -1).astype(np.uint8)


# One file per model that has been the default, made while it was (legacy_image, steps=5):
# newer models and features must never change what they decode to. tests/data/v3 holds the
# same picture coded with chroma blocks (format version 3; legacy_image's R-G and B-G are
# constant, so it is detected as a video frame), one file per default model since.
SHIPPED_FILES = sorted((Path(__file__).parent / "data").glob("*.ardm"))
V3_FILES = sorted((Path(__file__).parent / "data" / "v3").glob("*.ardm"))
# Format version 4 (binary decisions for plain and value-set planes): v4/MODEL.ardm holds
# legacy_image without chroma blocks (palette or not, its alpha plane is a value set),
# v4/MODEL-rgb.ardm v4_image (a plain RGB plane), both steps=5.
V4_FILES = sorted((Path(__file__).parent / "data" / "v4").glob("*.ardm"))


def v4_image() -> np.ndarray:
    """A small photo-like RGB picture in integer arithmetic: every value can occur."""
    y, x = np.mgrid[0:21, 0:26]
    return np.stack([(x * 11 + y * 7 + 83 * c + (x * x * y + 5 * c) % 29) % 256 for c in range(3)],
                    -1).astype(np.uint8)


def test_every_model_that_was_default_has_a_file():
    assert {"oa-s48", "xa-s48", "xa2-s48", "xa3-s48", "xa4-s48", "xi-s48",
            weights.DEFAULT_MODEL} <= {f.stem for f in SHIPPED_FILES}
    assert {"xic-s48", weights.DEFAULT_MODEL} <= {f.stem for f in V3_FILES}
    assert {"xic-s48", "xic-s48-rgb", weights.DEFAULT_MODEL} <= {f.stem for f in V4_FILES}


def test_every_shipped_model_has_a_compact_id():
    """A model added to the registry gets an id in container.MODEL_IDS (append only), so
    its files get the compact container; ids are never reused."""
    assert all((name, sha[:16]) in container.MODEL_IDS for name, (_, sha) in weights.REGISTRY.items())
    assert len(set(container.MODEL_IDS)) == len(container.MODEL_IDS)


@pytest.mark.parametrize("path", V4_FILES, ids=lambda p: p.stem)
def test_version_4_files_still_decode_and_encode_the_same(path, monkeypatch):
    from ardmzip import chroma
    data = path.read_bytes()
    header, streams = container.unpack(data)
    model, rgb = path.stem.removesuffix("-rgb"), path.stem.endswith("-rgb")
    image = v4_image() if rgb else legacy_image()
    assert header.model_name == model and header.version == 4
    assert any(s[0] in (0, 1) for s in streams)          # a PLAIN or VALUES plane: binary decisions
    assert np.array_equal(ardmzip.decompress(data).reshape(image.shape), image)
    monkeypatch.setattr(chroma, "detect", lambda plane: None)
    assert full_layout(ardmzip.compress(image, steps=5, model=model)) == data


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=lambda p: p.stem)
def test_files_of_shipped_models_still_decode(path, monkeypatch):
    data = path.read_bytes()
    assert container.unpack(data)[0].model_name == path.stem
    assert np.array_equal(ardmzip.decompress(data), legacy_image())
    # With the constraints added since (chroma blocks) out of the way, the encoder still
    # writes exactly these bytes.
    from ardmzip import chroma
    monkeypatch.setattr(chroma, "detect", lambda plane: None)
    assert full_layout(ardmzip.compress(legacy_image(), steps=5, model=path.stem, version=3)) == data


@pytest.mark.parametrize("path", V3_FILES, ids=lambda p: p.stem)
def test_version_3_files_still_decode_and_encode_the_same(path):
    data = path.read_bytes()
    header, streams = container.unpack(data)
    assert header.model_name == path.stem and header.version == 3 and streams[0][0] == 5     # chroma blocks
    assert np.array_equal(ardmzip.decompress(data), legacy_image())
    assert full_layout(ardmzip.compress(legacy_image(), steps=5, model=path.stem, version=3)) == data


def _with_order(model: weights.Model, order: str) -> weights.Model:
    """The same network declaring another coding order (in memory only)."""
    import copy
    from dataclasses import replace
    net = copy.deepcopy(model.net)
    net.config = replace(net.config, order=order)
    return weights.Model(model.name, model.sha256, net, model.curve, model.meta)


def _palette_picture(h: int, w: int, colours: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (colours, 3), dtype=np.uint8)
    idx = (np.add.outer(np.arange(h) // 3, np.arange(w) // 4) + rng.integers(0, 2, (h, w))) % colours
    return palette[idx]


def test_palette_random_order_follows_each_planes_constraint(monkeypatch):
    from ardmzip import constraint
    from ardmzip.ardm import plane_order
    assert plane_order("interlace2/palette-random", True) == "random"
    assert plane_order("interlace2/palette-random", False) == "interlace2"
    assert plane_order("interlace2", True) == "interlace2" and plane_order("random", False) == "random"
    with pytest.raises(ValueError):
        plane_order("zigzag", False)
    base = weights.load("xi-s48")
    rule, random_, interlaced = (_with_order(base, o) for o in ("interlace2/palette-random", "random", "interlace2"))
    dev = torch.device("cpu")

    def streams(model, planes):
        return codec.encode_planes(model, planes, 4, 7, dev, codec.Stats())

    # large planes choose their constraint by rule and are coded once, in the order it implies
    monkeypatch.setattr(codec, "TRY_ALL_CONSTRAINTS", 2000)          # "large" at test sizes
    palette_plane = _palette_picture(32, 32, 5, 1)
    photo_plane = smooth_image(32, 32, 3, seed=2)
    assert palette_plane.size > codec.TRY_ALL_CONSTRAINTS
    got = streams(rule, [palette_plane, photo_plane])
    uses_palette = [constraint.Constraint.parse(g, 3)[0].palette for g in got]     # alone or with copies
    assert uses_palette == [True, False]
    assert got[0] == streams(random_, [palette_plane])[0]
    assert got[1] == streams(interlaced, [photo_plane])[0]
    assert got[0] != streams(interlaced, [palette_plane])[0]         # the order really differs
    # small planes are coded in each order their candidates imply, keep the shorter stream, decode
    small = [_palette_picture(16, 20, 5, 3), smooth_image(16, 20, 3, seed=4)]
    coded = streams(rule, small)
    assert coded == [streams(rule, [p])[0] for p in small]             # batching changes nothing
    planes, coded = small + [palette_plane], coded + [got[0]]
    jobs = [codec.PlaneJob(s, p.shape[0], p.shape[1], False, 4, 7) for s, p in zip(coded, planes)]
    codec.decode_planes(rule, jobs, dev)
    for job, plane in zip(jobs, planes):
        assert job.error is None and np.array_equal(job.pixels, plane)


@pytest.mark.parametrize("shape,gray", [((80, 75), False), ((71, 90), True), ((70, 200), False), ((40, 30), False)])
def test_first_step_canvas_gives_the_full_pictures_outputs(shape, gray):
    """With nothing revealed, one small canvas stands in for the whole picture (head_outputs'
    ``empty``): its outputs must equal a real trunk call at every pixel, borders included,
    also for pictures too small for the canvas (which take the real call)."""
    h, w = shape
    model = weights.load(None)
    pc = codec.PlaneCoder(model.net, model.curve, h, w, gray, 8, 0)
    rng = np.random.default_rng(h * w)
    values = torch.from_numpy(rng.integers(0, 256, (2, 3, h, w))).long()
    mask = pc.mask(0)
    assert int(mask.sum()) == 0
    variables = np.arange(h * pc.per_row)
    chunks = [variables[i:i + 4099] for i in range(0, len(variables), 4099)]
    full = list(pc.head_outputs(values, mask, (0, h), chunks, empty=False))
    fast = list(pc.head_outputs(values, mask, (0, h), chunks, empty=True))
    for (p0, a0), (p1, a1) in zip(full, fast):
        assert torch.equal(p0, p1) and torch.equal(a0, a1)


def test_truncated_stream_is_refused_as_soon_as_it_runs_dry(monkeypatch):
    """Work follows the bytes present: a stream cut to two words stops the decoder within its
    first steps (``stream_bit_budget``; the 1/16 picture's, which cost a sixteenth of a call
    each), not after every step of the claimed picture."""
    a = smooth_image(96, 96, 3)
    header, streams = container.unpack(ardmzip.compress(a, steps=16))
    calls = []                  # pixels each trunk call sees
    for name in ("trunk", "trunk_banded"):
        run = getattr(codec.IntegerNet, name)
        monkeypatch.setattr(codec.IntegerNet, name,
                            lambda self, values, *args, run=run: calls.append(values.shape[2] * values.shape[3])
                            or run(self, values, *args))
    assert np.array_equal(ardmzip.decompress(container.pack(header, streams)).reshape(a.shape), a)
    full = list(calls)
    calls.clear()
    with pytest.raises(FormatError, match="ends early"):
        ardmzip.decompress(container.pack(header, [streams[0][:9]]))
    assert len(full) >= 16 and sum(full) > 6 * 96 * 96 and sum(calls) <= 96 * 96 // 2


def test_threads_compressing_at_once_give_the_same_bytes():
    """Several Python threads coding at once (the compiled kernels share one thread pool,
    entered under a lock) give each picture's bytes alone, and decode."""
    import threading
    g = np.random.default_rng(0)
    pictures = [g.integers(0, 256, (20 + 3 * i, 26, 3), dtype=np.uint8) for i in range(4)]
    alone = [ardmzip.compress(p) for p in pictures]
    together = [None] * len(pictures)

    def work(i: int) -> None:
        together[i] = ardmzip.compress(pictures[i])
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(pictures))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
    assert np.array_equal(ardmzip.decompress(together[3]), pictures[3])


@pytest.mark.parametrize("steps", [4, 16])
def test_compiled_kernels_and_torch_write_and_read_the_same_files(steps, monkeypatch):
    """A picture compressed with the compiled CPU kernels (ARDMZIP_JIT=1) and with plain torch
    (0) gives the same bytes at a level with and without the pyramid, and each path decodes
    the other's file (value sets included: a two-colour plane beside a noisy one)."""
    g = np.random.default_rng(5)
    picture = g.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    picture[:, :20, 1] = np.where(g.random((40, 20)) < 0.5, 17, 200)
    files = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("ARDMZIP_JIT", mode)
        files[mode] = ardmzip.compress(picture, steps=steps)
    assert files["1"] == files["0"]
    for mode in ("1", "0"):
        monkeypatch.setenv("ARDMZIP_JIT", mode)
        assert np.array_equal(ardmzip.decompress(files["0" if mode == "1" else "1"]), picture)

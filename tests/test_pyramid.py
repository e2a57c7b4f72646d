"""The two-level pyramid of format version 6: a plane's coarse level (pixels with even row and
column) coded as the picture it forms, by network calls on that quarter-size picture;
version 8's split of the steps, which gives that level more of them; and version 10's third
level, the coarse picture's own coarse level, by calls on the 1/16 picture."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import torch

import ardmzip
from ardmzip import codec, container, weights
from ardmzip.ardm import interlaced_ranks, plane_ranks, plane_steps, pyramid_ranks, pyramid_steps
from ardmzip.imageio import picture_from_array
from ardmzip.schedule import schedule
from helpers import full_layout
from test_codec import smooth_image, v4_image

pytestmark = pytest.mark.usefixtures("one_thread")

# v6/xic-s48-rgb.ardm: v4_image() at steps=16 (a pyramid), written by the commit that made
# format version 6; it must keep decoding to it, and the encoder must keep writing it.
V6_FILE = Path(__file__).parent / "data" / "v6" / "xic-s48-rgb.ardm"
# v8/xic-s48-rgb.ardm: the same picture and steps, written by the commit that made version 8
V8_FILE = Path(__file__).parent / "data" / "v8" / "xic-s48-rgb.ardm"
# compact/: the compact container (a shipped model named by its id, one CRC for the file), by the
# commit that made it: xic-s48-rgb.ardm holds V8_FILE's header and streams; cifar10-s48-rgba.ardm
# rgba_image() at steps=16 with cifar10-s48 (two streams: the colour plane takes what is left).
COMPACT_DIR = Path(__file__).parent / "data" / "compact"
V10_DIR = Path(__file__).parent / "data" / "v10"


@pytest.mark.parametrize("shape", [(5, 7, 3), (4, 4, 1), (1, 6, 3), (7, 1, 1), (9, 10, 3)])
def test_pyramid_ranks_put_the_small_pictures_order_first(shape):
    h, w, c = shape
    ranks = pyramid_ranks(h, w, c, 5).reshape(h, w, c)
    assert sorted(ranks.reshape(-1).tolist()) == list(range(h * w * c))
    coarse = ranks[::2, ::2]
    assert np.array_equal(coarse.reshape(-1), interlaced_ranks(*coarse.shape, 5))     # the small picture's order
    fine = np.ones((h, w), bool)
    fine[::2, ::2] = False
    assert ranks[fine].min(initial=coarse.size) == coarse.size                        # then all the rest


@pytest.mark.parametrize("shape", [(5, 7, 3), (4, 4, 1), (9, 10, 3), (1, 1, 3), (2, 2, 3)])
def test_green_first_orders_later_levels_green_first_and_else_as_interlace2(shape):
    """"interlace2g": the pyramid's first level (pixels whose row and column are multiples of
    4) keeps interlace2's order; every later level codes its green subpixels, then its red and
    blue ones, each group in interlace2's order; the levels are interlace2's. In the one-level
    interlaced order: the coarse level plain, the rest green first. Gray planes: interlace2."""
    h, w, c = shape
    plain, green = pyramid_ranks(h, w, c, 7), pyramid_ranks(h, w, c, 7, green_first=True)
    assert sorted(green.tolist()) == list(range(h * w * c))
    level = np.full((h, w), 2)          # 0: the 1/16 picture's pixels, 1: the rest of the quarter picture, 2: the rest
    level[::2, ::2] = 1
    level[::4, ::4] = 0
    level = np.repeat(level.reshape(-1), c)
    channel = np.tile(np.arange(c), h * w)
    if c == 1:
        assert np.array_equal(green, plain)
        assert np.array_equal(interlaced_ranks(h, w, 1, 7, green_first=True), interlaced_ranks(h, w, 1, 7))
        return
    for lv in (0, 1, 2):
        inside = level == lv
        if not inside.any():
            continue
        assert green[inside].min() == plain[inside].min() and green[inside].max() == plain[inside].max()
        if lv == 0:
            assert np.array_equal(green[inside], plain[inside])
            continue
        g, rb = green[inside & (channel == 1)], green[inside & (channel != 1)]
        assert g.max() < rb.min()                                           # green first within the level
        for part in (channel == 1, channel != 1):                           # each group in interlace2's order
            sel = inside & part
            assert np.array_equal(np.argsort(green[sel]), np.argsort(plain[sel]))
    flat, flat_plain = interlaced_ranks(h, w, c, 7, green_first=True), interlaced_ranks(h, w, c, 7)
    coarse = level <= 1
    assert np.array_equal(flat[coarse], flat_plain[coarse])
    if (~coarse).any():
        assert flat[~coarse & (channel == 1)].max() < flat[~coarse & (channel != 1)].min()
    assert np.array_equal(plane_ranks("interlace2g", h, w, c, 7), flat)


@pytest.mark.parametrize("steps", [4, 16])                 # 16: three levels; 4: one interlaced level
def test_a_green_first_model_codes_and_decodes(steps):
    """Files of a model declaring "interlace2g" decode exactly (RGB, gray, RGBA), differ from
    the same network's "interlace2" files, and name their model."""
    from helpers import green_first_model
    m = green_first_model()
    for image in (v10_image(), v10_image()[..., 1], v10_image(alpha=True)):
        data = ardmzip.compress(image, steps=steps, model=m)
        assert container.unpack(data)[0].model_name == m.name
        assert np.array_equal(ardmzip.decompress(data), image)
        plain = ardmzip.compress(image, steps=steps, model="xic-s48")
        same = container.unpack(data)[1] == container.unpack(plain)[1]
        assert same == (image.ndim == 2)                                    # gray: the same order


def test_plane_order_of_the_green_first_orders():
    from ardmzip.ardm import plane_order
    assert plane_order("interlace2g/palette-random", palette=False) == "interlace2g"
    assert plane_order("interlace2g/palette-random", palette=True) == "random"
    assert plane_order("interlace2/palette-random", palette=False) == "interlace2"
    assert plane_order("interlace2g", palette=True) == "interlace2g"


def _bounds(d: int, g: np.random.Generator) -> np.ndarray:
    """Step boundaries 0 = b_0 <= b_1 <= ... <= d: empty steps, one-variable steps, and cuts anywhere."""
    inner = np.sort(np.concatenate([g.integers(0, d + 1, g.integers(0, 9)), g.integers(0, 3, 2), [d - 1, 1]]))
    return np.concatenate([[0], np.clip(inner, 0, d), [d]])


@pytest.mark.parametrize("shape", [(5, 7, 3), (4, 4, 1), (1, 6, 3), (7, 1, 1), (9, 10, 3), (1, 1, 1), (2, 2, 3),
                                   (33, 17, 3)])
def test_steps_from_partitions_are_the_ranks_steps(shape):
    """plane_steps / pyramid_steps (partitions of the keys at the steps' boundaries, what
    PlaneCoder uses) give every variable the step its rank falls in, for the random and
    interlaced orders and the pyramid, many seeds and schedules (empty steps, steps of one
    variable, the schedule's own)."""
    h, w, c = shape
    d = h * w * c
    g = np.random.default_rng(d)
    curve = weights.load().curve
    for seed in (0, 5, 2 ** 64 - 1):
        schedules = [_bounds(d, g) for _ in range(6)] + [schedule(d, k, curve)[0] for k in (1, 3, 16) if k <= d]
        for bounds in schedules:
            lookup = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
            for order in ("random", "interlace2", "interlace2g"):
                want = lookup[plane_ranks(order, h, w, c, seed)]
                assert np.array_equal(plane_steps(order, h, w, c, seed, bounds), want)
            for green in (False, True):
                assert np.array_equal(pyramid_steps(h, w, c, seed, bounds, green_first=green),
                                      lookup[pyramid_ranks(h, w, c, seed, green_first=green)])
    with pytest.raises(ValueError, match="unknown coding order"):
        plane_steps("zigzag", 2, 2, 1, 0, np.array([0, 4]))


def test_schedule_from_a_start_covers_the_rest():
    curve = weights.load().curve
    assert np.array_equal(schedule(5000, 7, curve, start=0)[0], schedule(5000, 7, curve)[0])
    for d, start, k in [(5000, 1250, 5), (100, 25, 60), (3 * 10 ** 6, 750000, 9)]:
        bounds, cost = schedule(d, k, curve, start=start)
        assert bounds[0] == start and bounds[-1] == d and np.all(np.diff(bounds) > 0)
        assert len(bounds) - 1 == min(k, d - start) and cost > 0
    with pytest.raises(ValueError):
        schedule(100, 3, curve, start=100)


def test_pyramid_split_spends_every_step():
    curve = weights.load().curve
    assert codec.pyramid_split(600, 800, 3, codec.PYRAMID_MIN_STEPS - 1, curve) is None
    assert codec.pyramid_split(1, 800, 3, 16, curve) is None
    for h, w, c, k in [(600, 800, 3, 16), (31, 17, 1, 12), (600, 800, 3, 64), (32, 32, 3, 10)]:
        dc = ((h + 1) // 2) * ((w + 1) // 2) * c
        old_coarse, old_fine = codec.pyramid_split(h, w, c, k, curve, version=6)
        coarse, fine = codec.pyramid_split(h, w, c, k, curve, version=8)
        for a, b in ((old_coarse, old_fine), (coarse, fine)):
            assert a[0] == 0 and a[-1] == dc == b[0] and b[-1] == h * w * c
            assert np.all(np.diff(a) > 0) and np.all(np.diff(b) > 0)
        assert len(old_coarse) - 1 + len(old_fine) - 1 == k
        # version 8: m of version 6's fine steps become 4 m coarse steps, the same network work
        moved = codec.coarse_steps_moved(len(old_fine) - 1)
        assert moved >= 1 and len(fine) - 1 == len(old_fine) - 1 - moved >= 1
        assert len(coarse) - 1 == len(old_coarse) - 1 + 4 * moved
    assert codec.pyramid_split(600, 800, 3, 16, curve, version=7) is not None
    assert [len(x) - 1 for x in codec.pyramid_split(600, 800, 3, 16, curve, version=7)] == [7, 9]
    assert [len(x) - 1 for x in codec.pyramid_split(600, 800, 3, 16, curve, version=9)] == [15, 7]
    assert [len(x) - 1 for x in codec.pyramid_split(600, 800, 3, 16, curve)] == [11, 7, 7]


@pytest.mark.parametrize("h, w, c, k", [(600, 800, 3, 16), (51, 97, 1, 12), (600, 800, 3, 64), (48, 48, 3, 10),
                                        (44, 200, 3, 16), (32, 32, 3, 10), (2, 9, 3, 16), (9, 2, 3, 16)])
def test_three_levels_split_version_8s_coarse_steps(h, w, c, k):
    """Version 10: the coarse picture's steps, split between its own coarse level (stride 4)
    and the rest of it (stride 2) as its one-level schedule would, one middle step traded for
    four of the smallest level where the middle keeps one; the fine level as in version 8.
    Where the 1/16 picture is under THREE_LEVEL_MIN_SIDE on a side, version 8's two levels."""
    curve = weights.load().curve
    coarse, fine = codec.pyramid_split(h, w, c, k, curve, version=8)
    split = codec.pyramid_split(h, w, c, k, curve)
    hc, wc = (h + 1) // 2, (w + 1) // 2
    if min((hc + 1) // 2, (wc + 1) // 2) < codec.THREE_LEVEL_MIN_SIDE:
        assert len(split) == 2 and all(np.array_equal(a, b) for a, b in zip(split, (coarse, fine)))
        return
    smallest, middle, fine10 = split
    dcc = ((hc + 1) // 2) * ((wc + 1) // 2) * c
    assert np.array_equal(fine10, fine) and smallest[0] == 0 and smallest[-1] == dcc == middle[0]
    assert middle[-1] == coarse[-1] and all(np.all(np.diff(a) > 0) for a in split)
    one_level = schedule(coarse[-1], len(coarse) - 1, curve)[0]
    first = int(np.clip(np.count_nonzero(one_level[:-1] < dcc), 1, len(coarse) - 2))
    moved = min(1, len(coarse) - 2 - first)
    if len(coarse) - 1 < coarse[-1]:        # (a tiny picture's step counts are capped at its variables)
        assert len(middle) - 1 == len(coarse) - 1 - first - moved >= 1
        assert len(smallest) - 1 == min(first + 4 * moved, dcc)


def test_coarse_steps_moved_keeps_a_fine_step():
    assert [codec.coarse_steps_moved(f) for f in (2, 3, 5, 7, 8, 9, 14, 18, 38)] == [1, 1, 1, 1, 2, 2, 3, 4, 9]
    assert all(1 <= codec.coarse_steps_moved(f) <= f - 1 for f in range(2, 200))


@pytest.mark.parametrize("version, stride, size", [(8, 2, (26, 25)), (10, 4, (13, 13)), (10, 2, (26, 25))])
def test_coarse_steps_run_on_the_smaller_pictures(version, stride, size):
    """Version 8's coarse steps run on the quarter-size picture; version 10's first ones on
    the 1/16 picture, then the quarter-size one: each step's outputs are the network's on
    the small picture itself, and before the next level every pixel of this one is revealed."""
    m = weights.load()
    pc = codec.PlaneCoder(m.net, m.curve, 52, 50, False, 16, 0, pyramid=version)
    assert sorted(set(pc.strides), reverse=True) == ([4] if version == 10 else []) + [2, 1]
    assert pc.strides == sorted(pc.strides, reverse=True)                       # coarsest first
    steps = [s for s in range(pc.steps) if pc.strides[s] == stride]
    assert 1 < len(steps) < 16 and (pc.stages[stride].h, pc.stages[stride].w) == size
    revealed = pc.mask(steps[-1] + 1)[0].numpy()
    assert revealed[:, ::stride, ::stride].all() and revealed.sum() == revealed[:, ::stride, ::stride].size
    values = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 52, 50)))
    step = steps[-1]
    got = list(pc.step_outputs(values, pc.mask(step), step))
    small = [t[:, :, ::stride, ::stride].contiguous() for t in (values, pc.mask(step))]
    x, anchor = m.net.trunk(*small)
    for var, params, anc in got:
        row, col, ch = var // 150, (var // 3) % 50, var % 3
        assert not (row % stride).any() and not (col % stride).any()
        feats = x[0, :, row // stride, col // stride].T
        want = m.net.head(feats.contiguous()).view(len(var), 3, 3, -1)[torch.arange(len(var)), ch]
        assert torch.equal(params[0], want) and torch.equal(anc[0], anchor[0, ch, row // stride, col // stride])


def test_canvas_of_the_empty_first_step_on_the_small_picture():
    """The first (empty) step runs on a canvas of the coarse picture's geometry: the same
    outputs as the whole coarse picture."""
    m = weights.load()
    h, w = 2 * (2 * m.net.config.halo + 3) + 1, 2 * (2 * m.net.config.halo + 2)
    pc = codec.PlaneCoder(m.net, m.curve, h, w, False, 16, 0, pyramid=True)
    stage = pc.stages[2]
    values = torch.zeros(1, 3, stage.h, stage.w, dtype=torch.long)
    mask = torch.zeros_like(values)
    variables = np.arange(stage.h * stage.w * 3)
    chunks = [variables[i:i + 4000] for i in range(0, len(variables), 4000)]
    full = list(pc.head_outputs(values, mask, (0, stage.h), chunks, stage=stage))
    fast = list(pc.head_outputs(values, mask, (0, stage.h), chunks, empty=True, stage=stage))
    assert stage.empty_trunk is not None
    for (p1, a1), (p2, a2) in zip(full, fast):
        assert torch.equal(p1, p2) and torch.equal(a1, a2)


@pytest.mark.parametrize("shape", [(40, 24, 3), (33, 19, 1), (15, 22, 4), (2, 9, 3), (1, 9, 3)])
def test_round_trips_and_settings_are_not_part_of_the_format(shape, monkeypatch):
    a = smooth_image(shape[0], shape[1], shape[2], seed=sum(shape))
    a = a[..., 0] if shape[2] == 1 else a
    data = ardmzip.compress(a, steps=16)
    assert container.unpack(data)[0].version == (10 if min(shape[:2]) >= 2 else 4)
    assert np.array_equal(ardmzip.decompress(data).reshape(a.shape), a)
    monkeypatch.setattr(codec, "MIN_STRIP_ROWS", 1)
    for strip_pixels, chunk in [(shape[1] * 40, 50), (1 << 20, 7)]:
        pic = codec.decompress_picture(data, strip_pixels=strip_pixels, chunk=chunk)
        assert np.array_equal(pic.pixels.reshape(a.shape), a)
    monkeypatch.setattr(codec.PlaneCoder.__init__, "__defaults__", (shape[1] * 40, 33))
    assert ardmzip.compress(a, steps=16) == data


def test_batched_pictures_get_the_files_they_get_alone_and_threads_do_not_matter():
    pics = [smooth_image(20, 26, 3, seed=s) for s in range(3)]
    alone = [ardmzip.compress(p, steps=12) for p in pics]
    assert codec.compress_pictures([picture_from_array(p) for p in pics], steps=12) == alone
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert ardmzip.compress(pics[0], steps=12) == alone[0]
        back = codec.decompress_pictures(alone)
    finally:
        torch.set_num_threads(before)
    assert all(np.array_equal(b.pixels, p) for b, p in zip(back, pics))


def test_version_5_writes_the_one_level_file_and_6_the_old_split():
    a = smooth_image(30, 28, 3, seed=9)
    old = ardmzip.compress(a, steps=16, version=5)
    six = ardmzip.compress(a, steps=16, version=6)
    eight = ardmzip.compress(a, steps=16, version=8)
    new = ardmzip.compress(a, steps=16)
    assert [container.unpack(f)[0].version for f in (old, six, eight, new)] == [4, 6, 8, 10]
    assert len({old, six, eight, new}) == 4
    assert all(np.array_equal(ardmzip.decompress(f), a) for f in (old, six, eight, new))
    for version in (7, 9, 11):
        with pytest.raises(ardmzip.InputError, match=f"not {version}"):
            ardmzip.compress(a, steps=16, version=version)
    with pytest.raises(ardmzip.FormatError, match="newer"):     # what an older ardmzip says
        container.unpack(new[:4] + bytes([container.NEWEST_VERSION + 1]) + new[5:])


def test_version_6_file_decodes_and_is_rewritten_byte_for_byte():
    data = V6_FILE.read_bytes()
    assert data[4] == 6 and np.array_equal(ardmzip.decompress(data), v4_image())
    assert full_layout(ardmzip.compress(v4_image(), steps=16, model="xic-s48", version=6)) == data


def test_version_8_file_decodes_and_is_rewritten_byte_for_byte():
    data = V8_FILE.read_bytes()
    assert data[4] == 8 and np.array_equal(ardmzip.decompress(data), v4_image())
    assert full_layout(ardmzip.compress(v4_image(), steps=16, model="xic-s48", version=8)) == data
    assert data != V6_FILE.read_bytes()
    # read with version 6's split, the same streams decode to something else, and the checksum says so
    with pytest.raises((ardmzip.ChecksumError, ardmzip.FormatError)):
        ardmzip.decompress(data[:4] + bytes([6]) + data[5:])


def rgba_image() -> np.ndarray:
    alpha = (np.add.outer(np.arange(21) * 3, np.arange(26) * 5) % 256).astype(np.uint8)
    return np.concatenate([v4_image(), alpha[..., None]], -1)


def test_compact_files_decode_and_are_rewritten_byte_for_byte():
    data = (COMPACT_DIR / "xic-s48-rgb.ardm").read_bytes()
    assert data[4] == container.COMPACT + 8 and np.array_equal(ardmzip.decompress(data), v4_image())
    assert ardmzip.compress(v4_image(), steps=16, model="xic-s48", version=8) == data
    assert container.unpack(data) == container.unpack(V8_FILE.read_bytes())   # the same file, shorter
    assert len(V8_FILE.read_bytes()) - len(data) == 21       # name and hash: 15 bytes, a CRC 4, a length 2
    data = (COMPACT_DIR / "cifar10-s48-rgba.ardm").read_bytes()
    assert len(container.unpack(data)[1]) == 2 and np.array_equal(ardmzip.decompress(data), rgba_image())
    assert ardmzip.compress(rgba_image(), steps=16, model="cifar10-s48", version=8) == data


def v10_image(alpha: bool = False) -> np.ndarray:
    """v4_image's integer formula on 50x53 pixels (its 1/16 picture 13x14: three levels); with
    ``alpha`` a fourth, varying channel."""
    y, x = np.mgrid[0:50, 0:53]
    channels = [(x * 11 + y * 7 + 83 * c + (x * x * y + 5 * c) % 29) % 256 for c in range(3)]
    return np.stack(channels + [(x * 5 + y * 3) % 256] * alpha, -1).astype(np.uint8)


def test_version_10_files_decode_and_are_rewritten_byte_for_byte():
    """v10/: v10_image() (xic-s48) and v10_image(alpha=True) (cifar10-s48) at 16 steps, three
    levels, by the commit that made version 10: not version 8's streams."""
    for name, image, model in (("xic-s48-rgb", v10_image(), "xic-s48"),
                               ("cifar10-s48-rgba", v10_image(alpha=True), "cifar10-s48")):
        data = (V10_DIR / f"{name}.ardm").read_bytes()
        assert data[4] == container.COMPACT + 10 and np.array_equal(ardmzip.decompress(data), image)
        assert ardmzip.compress(image, steps=16, model=model) == data
        assert container.unpack(ardmzip.compress(image, steps=16, model=model, version=8))[1] != container.unpack(data)[1]
    # read with version 8's split, the same streams decode to something else, and the checksum says so
    header, streams = container.unpack(data)
    with pytest.raises((ardmzip.ChecksumError, ardmzip.FormatError)):
        ardmzip.decompress(container.pack(dataclasses.replace(header, version=8), streams))


def test_green_first_model_file_decodes_and_is_rewritten_byte_for_byte():
    """v10/photog-s48-rgb.ardm: v10_image() at 16 steps with photog-s48 (order "interlace2g"),
    by the commit that shipped it; its steps are not those of the plain interlaced order."""
    data = (V10_DIR / "photog-s48-rgb.ardm").read_bytes()
    image = v10_image()
    assert data[4] == container.COMPACT + 10 and np.array_equal(ardmzip.decompress(data), image)
    assert ardmzip.compress(image, steps=16, model="photog-s48") == data
    m = weights.load("photog-s48")
    assert m.net.config.order == "interlace2g/palette-random"
    coder = functools.partial(codec.PlaneCoder, m.net, m.curve, *image.shape[:2], False, 16, 0, pyramid=True)
    assert np.array_equal(coder().step_of, coder(order="interlace2g").step_of)
    assert not np.array_equal(coder().step_of, coder(order="interlace2").step_of)


def test_small_pictures_keep_two_levels():
    """Below a 12x12 1/16 picture (about 48x48 pixels) version 10 codes version 8's streams: a
    third level cost bits on train crops of 32 to 44 pixels and on CIFAR-10 train pictures."""
    curve = weights.load().curve
    for h, w in [(44, 200), (200, 41), (32, 32), (3, 3)]:
        assert all(np.array_equal(a, b) for a, b in zip(codec.pyramid_split(h, w, 3, 16, curve),
                                                        codec.pyramid_split(h, w, 3, 16, curve, version=8)))
    assert len(codec.pyramid_split(45, 45, 3, 16, curve)) == 3 and len(codec.pyramid_split(48, 48, 3, 16, curve)) == 3
    a = v4_image()
    assert container.unpack(ardmzip.compress(a, steps=16))[1] == container.unpack(ardmzip.compress(a, steps=16,
                                                                                                  version=8))[1]


def test_archive_members_are_pyramids_and_their_single_files(tmp_path, invoke):
    images = np.stack([smooth_image(24, 20, 3, seed=s) for s in range(3)])
    np.savez(tmp_path / "set.npz", images=images)
    assert invoke("compress", "--steps", 12, tmp_path / "set.npz", "-o", tmp_path / "set.ardm").exit_code == 0
    result = invoke("decompress", tmp_path / "set.ardm", "-o", tmp_path / "back.npz")
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(np.load(tmp_path / "back.npz")["images"], images)
    from ardmzip import archive
    with archive._open_archive(tmp_path / "set.ardm") as (f, size):
        index = archive._read_index(f, size)
        single = archive._member_ardm(f, index, index.members[1])
    assert single == ardmzip.compress(images[1], steps=12) and container.unpack(single)[0].version == 10


def test_sixteen_bit_pictures_code_their_high_bytes_as_a_pyramid():
    y, x = np.mgrid[0:18, 0:22]
    deep = np.stack([(x * 2900 + y * 1700 + (x * y) % 11 * 97) % 65536, (x * 37 + y * 3000) % 65536],
                    -1).astype(np.uint16)                                     # gray + alpha, 16-bit
    data = ardmzip.compress(deep, steps=12)
    assert container.unpack(data)[0].version == 10
    assert np.array_equal(ardmzip.decompress(data), deep)
    old = ardmzip.compress(deep, steps=12, version=5)
    assert container.unpack(old)[0].version == 5 and np.array_equal(ardmzip.decompress(old), deep)


@pytest.mark.parametrize("h, w", [(32, 32), (608, 768), (3000, 4000)])
def test_levels_grow_in_network_work_and_shrink_in_expected_bits(h, w):
    """The CLI's levels are monotone in the network's work (full-size calls; a call on the
    quarter-size picture counts a quarter, on the 1/16 picture a sixteenth; the empty first
    step is free) and in the schedules' expected cost, at every picture size."""
    curve = weights.load().curve
    d = h * w * 3
    work, cost = [], []
    for level in sorted(codec.LEVEL_STEPS):
        steps = codec.LEVEL_STEPS[level]
        split = codec.pyramid_split(h, w, 3, steps, curve)
        if split is None:
            bounds, expected = schedule(d, steps, curve)
            work.append(len(bounds) - 2)
        else:       # a call at stride s costs 1 / s^2; a level's expected bits: the DP over its range
            n = len(split)
            work.append(sum((len(lv) - 1 - (i == 0)) / 4 ** (n - 1 - i) for i, lv in enumerate(split)))
            expected = sum(schedule(lv[-1], len(lv) - 1, curve, start=lv[0])[1] for lv in split)
        cost.append(expected)
    assert work == sorted(work) and len(set(work)) == len(work), work
    assert cost == sorted(cost, reverse=True), cost

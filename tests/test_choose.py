"""Choosing the model per picture (choose.py): the estimate, the choice, and files written
with ``model="auto"`` (the default)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ardmzip
from ardmzip import archive, choose, codec, container, weights
from ardmzip.dlm import exact_frequencies
from ardmzip.imageio import picture_from_array
from test_codec import smooth_image

pytestmark = pytest.mark.usefixtures("one_thread")


def _header(data: bytes) -> container.Header:
    return container.unpack(data)[0]


@pytest.mark.parametrize("h,w", [(100, 300), (48, 48), (20, 33), (1, 5), (500, 49), (400, 400), (97, 1000)])
def test_tiles_are_spread_over_the_picture_and_fit(h, w):
    """Windows inside the picture, centred on a grid of cells: as many distinct ones as fit
    (up to TILES), and balanced around the picture's centre."""
    origins = choose.tile_origins(h, w)
    th, tw = min(choose.TILE, h), min(choose.TILE, w)
    assert len(origins) == choose.TILES
    assert all(0 <= y <= h - th and 0 <= x <= w - tw for y, x in origins)
    distinct = sorted(set(origins))
    fit = (h // th) * (w // tw)
    assert len(distinct) == min(choose.TILES, fit) or len(distinct) < fit
    cy = np.mean([y + th / 2 for y, _ in distinct])
    cx = np.mean([x + tw / 2 for _, x in distinct])
    assert abs(cy - h / 2) <= 1 and abs(cx - w / 2) <= 1
    if h >= 2 * th and w >= 2 * tw and choose.TILES >= 4 and h * 2 > w and w * 2 > h:   # about square: 2 x 2
        assert len({y for y, _ in distinct}) > 1 and len({x for _, x in distinct}) > 1


@pytest.mark.parametrize("gray", [False, True])
def test_masks_reveal_the_coarse_grid_first_at_stratified_fractions(gray):
    b, h, w = 8, 6, 7
    masks = choose.interlaced_masks(b, h, w, gray, seed=3)
    d = h * w if gray else 3 * h * w
    slots = masks[:, :1] if gray else masks
    revealed = slots.reshape(b, -1).sum(1).numpy()
    assert all(i * d // b <= r <= (i + 1) * d // b for i, r in enumerate(revealed))
    if gray:
        assert (masks == masks[:, :1]).all()
    coarse = np.zeros((h, w), bool)
    coarse[::2, ::2] = True
    per_slot = 1 if gray else 3
    for m, r in zip(slots.numpy(), revealed):
        shown = m.astype(bool)
        if r <= per_slot * coarse.sum():          # only coarse variables until the grid is done
            assert not shown[:, ~coarse].any()
        else:
            assert shown[:, coarse].all()
    assert torch.equal(masks, choose.interlaced_masks(b, h, w, gray, seed=3))


def _reference_estimate(model: weights.Model, plane: np.ndarray, seed: int = 0) -> float:
    """estimate_bits without the sampling or batching: every hidden variable, tile by tile,
    through IntegerNet.full and dlm's plain integer path (block=, no compiled kernels)."""
    gray = plane.ndim == 2
    h, w = plane.shape[:2]
    th, tw = min(choose.TILE, h), min(choose.TILE, w)
    tiles = np.stack([plane[y:y + th, x:x + tw] for y, x in choose.tile_origins(h, w)])
    values = torch.from_numpy(tiles).long()
    values = values.unsqueeze(1).expand(-1, 3, -1, -1) if gray else values.permute(0, 3, 1, 2)
    masks = choose.interlaced_masks(len(tiles), th, tw, gray, seed)
    per_tile = []
    for v, m in zip(values, masks):
        params, anchor = model.net.full(v[None].contiguous(), m[None])
        bits = []
        for c in range(1 if gray else 3):
            for y in range(th):
                for x in range(tw):
                    if m[c, y, x]:
                        continue
                    f = exact_frequencies(params[0, c, :, :, y, x].reshape(1, 3, -1), anchor[0, c, y, x].view(1),
                                          block=1)[0].double()
                    bits.append(float(torch.log2(f.sum()) - torch.log2(f[int(v[c, y, x])])))
        per_tile.append(np.mean(bits) if bits else 0.0)
    return float(np.mean(per_tile))


@pytest.mark.parametrize("shape", [(9, 11, 3), (7, 6)])
def test_estimate_is_the_plain_oa_bound_on_the_tiles(shape, monkeypatch):
    """With every hidden variable in the sample, the batched estimate equals the reference,
    variable by variable (the same integers; float64 sums in another order)."""
    monkeypatch.setattr(choose, "SAMPLE", 10 ** 6)
    monkeypatch.setattr(choose, "TILES", 3)
    plane = smooth_image(*shape[:2], 3, seed=4)
    plane = plane if len(shape) == 3 else plane[..., 0]
    m = weights.load("xic-s48")
    assert choose.estimate_bits(m, plane) == pytest.approx(_reference_estimate(m, plane), rel=1e-12)


def test_estimates_do_not_depend_on_the_batch():
    """Planes estimated together (tiles of one shape share network calls) get exactly the
    estimates they get alone."""
    m = weights.load("cifar10-s48")
    planes = [smooth_image(32, 32, 3, seed=s) for s in range(3)] + [smooth_image(20, 70, 3, seed=9),
                                                                    smooth_image(32, 32, 3, seed=7)[..., 0]]
    together = choose.estimate_many(m, planes)
    assert together == [choose.estimate_bits(m, p) for p in planes]
    assert together[::-1] == choose.estimate_many(m, planes[::-1])
    tiles = choose.tiles_of(planes)             # drawn once, shared by the candidates: the same numbers
    assert choose.estimate_many(m, planes, tiles=tiles) == together
    assert choose.estimate_many(weights.load("xic-s48"), planes, tiles=tiles) == choose.estimate_many(
        weights.load("xic-s48"), planes)


def test_green_first_masks_and_estimates_follow_the_models_order():
    """A model of the "interlace2g" order is estimated with masks in that order: the same
    draws (coarse level and reveal fractions) with the fine level's green subpixels first."""
    from helpers import green_first_model
    plain, green = (choose.interlaced_masks(16, 12, 10, False, 3, g) for g in (False, True))
    assert torch.equal(plain.sum((1, 2, 3)), green.sum((1, 2, 3)))             # the same fractions
    coarse = torch.zeros(12, 10, dtype=torch.bool)
    coarse[::2, ::2] = True
    mixed = 0
    for p, g in zip(plain, green):
        assert torch.equal(p[:, coarse], g[:, coarse]) or g[:, ~coarse].sum() > 0
        fine = g[:, ~coarse].bool()
        if fine[[0, 2]].any():
            assert fine[1].all()
        mixed += bool(p[:, ~coarse][[0, 2]].bool().any() and not p[:, ~coarse][1].bool().all())
    assert mixed > 0                                                            # (the plain ones are not)
    assert torch.equal(choose.interlaced_masks(4, 6, 6, True, 3, True), choose.interlaced_masks(4, 6, 6, True, 3))
    m = green_first_model()
    assert choose.green_first(m) and not choose.green_first(weights.load("xic-s48"))
    planes = [smooth_image(30, 30, 3, seed=s) for s in range(2)]
    assert choose.estimate_many(m, planes) == choose.estimate_many(m, planes, tiles=choose.tiles_of(planes, green=True))
    assert choose.estimate_many(m, planes) != choose.estimate_many(m, planes, tiles=choose.tiles_of(planes))


def test_estimate_tracks_coded_size_and_is_deterministic():
    """Over pictures that differ in how compressible they are, the estimate orders them like
    the files do; and the same picture always gets the same estimate."""
    m = weights.load("xic-s48")
    rng = np.random.default_rng(0)
    smooth = smooth_image(40, 40, 3, seed=1)
    noisy = np.clip(smooth.astype(int) + rng.integers(-40, 41, smooth.shape), 0, 255).astype(np.uint8)
    est = [choose.estimate_bits(m, p) for p in (smooth, noisy)]
    sizes = [len(ardmzip.compress(p, model="xic-s48")) for p in (smooth, noisy)]
    assert est[0] < est[1] and sizes[0] < sizes[1]
    assert choose.estimate_bits(m, smooth) == est[0]


def test_choose_takes_the_smallest_estimate_and_the_first_on_a_tie(monkeypatch):
    models = [weights.load(n) for n in ("xic-s48", "photo-s48", "cifar10-s48")]
    plane = smooth_image(16, 16, 3, seed=2)
    costs = {models[0].sha256: 3.0, models[1].sha256: 2.0, models[2].sha256: 2.0}
    monkeypatch.setattr(choose, "estimate_bits", lambda m, p, seed=0: costs[m.sha256])
    assert choose.choose(models, [plane]) is models[1]
    assert choose.choose(models, []) is models[0]                 # nothing to estimate: the first
    assert choose.choose(models[2:], [plane]) is models[2]


def test_auto_codes_each_picture_with_its_own_choice_and_the_same_bytes_as_alone(monkeypatch):
    """Pictures coded together get the files they get alone, each naming the model chosen
    for it; each decodes exactly; a named model overrides the choice."""
    a, b = smooth_image(12, 14, 3, seed=5), smooth_image(12, 14, 3, seed=6)
    choice = {a.tobytes(): "cifar10-s48", b.tobytes(): "xic-s48"}
    real = choose.estimate_many

    def fake_estimates(model, planes, seed=0, tiles=None):      # the chosen model's estimate is the lowest
        return [0.0 if model.name == choice[p.tobytes()] else 1.0 for p in planes]
    monkeypatch.setattr(choose, "estimate_many", fake_estimates)
    together = codec.compress_pictures([picture_from_array(a), picture_from_array(b)])
    alone = [ardmzip.compress(a), ardmzip.compress(b)]
    assert together == alone
    assert [_header(f).model_name for f in together] == ["cifar10-s48", "xic-s48"]
    for f, x in zip(together, (a, b)):
        assert np.array_equal(ardmzip.decompress(f), x)
    assert together[0] == ardmzip.compress(a, model="auto") == ardmzip.compress(a, model="cifar10-s48")
    assert _header(ardmzip.compress(a, model="photo-s48")).model_name == "photo-s48"     # named: always
    monkeypatch.setattr(choose, "estimate_many", real)
    name = _header(ardmzip.compress(a)).model_name
    assert name in choose.candidates([a.shape])


def test_small_candidates_only_for_pictures_within_one_tile():
    t = choose.TILE
    assert choose.candidates([(t, t, 3)]) == choose.SMALL_CANDIDATES
    assert choose.candidates([(32, 32, 3), (20, t)]) == choose.SMALL_CANDIDATES
    assert choose.candidates([(32, 32, 3), (t + 1, 8, 3)]) == choose.CANDIDATES      # one larger: not
    assert choose.candidates([(8, t + 1)]) == choose.CANDIDATES
    assert choose.candidates([]) == choose.CANDIDATES
    assert "cifar10-s48" in choose.SMALL_CANDIDATES and "cifar10-s48" not in choose.CANDIDATES
    assert "photog-s48" in choose.CANDIDATES and "photog-s48" not in choose.SMALL_CANDIDATES
    assert choose.only_candidate() is None


def test_a_small_candidate_is_estimated_and_chosen_only_for_small_pictures(monkeypatch):
    """cifar10-s48 estimated cheapest everywhere: a thumbnail gets it, a larger picture one of
    CANDIDATES (cifar10-s48 is not even estimated on it, nor photog-s48 on the thumbnail)."""
    small, large = smooth_image(20, 30, 3, seed=7), smooth_image(choose.TILE + 2, 30, 3, seed=8)
    asked = {}

    def fake_estimates(model, planes, seed=0, tiles=None):
        asked.setdefault(model.name, []).extend(p.shape for p in planes)
        return [{"xic-s48": 2.0, "photog-s48": 1.5}.get(model.name, 1.0) for p in planes]
    monkeypatch.setattr(choose, "estimate_many", fake_estimates)
    picked = codec.pictures_models([picture_from_array(small), picture_from_array(large)])
    assert [m.name for m in picked] == ["cifar10-s48", "photog-s48"]
    assert asked["cifar10-s48"] == [small.shape] and asked["photog-s48"] == [large.shape]
    assert len(asked["xic-s48"]) == 2
    data = ardmzip.compress(small)
    assert _header(data).model_name == "cifar10-s48" and np.array_equal(ardmzip.decompress(data), small)
    assert codec.auto_model([picture_from_array(small)]).name == "cifar10-s48"
    assert codec.auto_model([picture_from_array(small), picture_from_array(large)]).name == "photog-s48"


def test_auto_leaves_constant_pictures_to_the_first_candidate(monkeypatch):
    def no_estimate(*args, **kwargs):
        raise AssertionError("a constant picture needs no estimate")
    monkeypatch.setattr(choose, "estimate_bits", no_estimate)
    data = ardmzip.compress(np.full((5, 6, 3), 77, np.uint8))
    assert _header(data).model_name == choose.CANDIDATES[0]


def test_network_plane_is_what_the_network_codes():
    rgb = smooth_image(6, 5, 3, seed=1)
    gray_as_rgb = np.repeat(rgb[..., :1], 3, axis=2)
    assert codec.network_plane(picture_from_array(rgb)) is not None
    assert np.array_equal(codec.network_plane(picture_from_array(rgb)), rgb)
    assert np.array_equal(codec.network_plane(picture_from_array(gray_as_rgb)), rgb[..., 0])
    rgba = np.concatenate([rgb, np.full((6, 5, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(codec.network_plane(picture_from_array(rgba)), rgb)
    assert codec.network_plane(picture_from_array(np.zeros((4, 4), np.uint8))) is None


def test_archive_chooses_once_from_a_sample(tmp_path, monkeypatch):
    """An archive's members share one model: "auto" estimates on an even sample of them."""
    images = np.stack([smooth_image(8, 8, 3, seed=s) for s in range(40)])
    np.save(tmp_path / "a.npy", images)
    seen = []

    def fake_choose(models, planes, seed=0):
        seen.append([p.tobytes() for p in planes])
        offered.append(tuple(m.name for m in models))
        return next(m for m in models if m.name == "cifar10-s48")
    offered = []
    monkeypatch.setattr(choose, "choose", fake_choose)
    archive.write_archive(tmp_path / "a.npy", tmp_path / "a.ardm", steps=2)
    assert len(seen) == 1 and len(seen[0]) == choose.ARCHIVE_SAMPLE
    assert offered == [choose.SMALL_CANDIDATES]                  # thumbnails: theirs
    expect = [images[i].tobytes() for i in np.linspace(0, 39, choose.ARCHIVE_SAMPLE).round().astype(int)]
    assert seen[0] == expect
    assert archive.archive_info(tmp_path / "a.ardm")["model"] == "cifar10-s48"
    assert np.array_equal(archive.extract_member(tmp_path / "a.ardm", "000039").pixels[..., :3], images[39])


def test_cli_default_is_auto_and_round_trips(invoke, tmp_path):
    from PIL import Image
    picture = smooth_image(20, 24, 3, seed=8)
    Image.fromarray(picture).save(tmp_path / "p.png")
    assert invoke("compress", "-s", "2", tmp_path / "p.png").exit_code == 0
    data = (tmp_path / "p.ardm").read_bytes()
    assert data == ardmzip.compress(picture, steps=2)
    assert _header(data).model_name in choose.CANDIDATES
    assert invoke("decompress", tmp_path / "p.ardm", "-o", tmp_path / "q.png").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "q.png")), picture)

"""Per-picture adaptation (adapt.py, format version 7): the stream's layout and checks, the
decoder rebuilding the encoder's network from it, and the encoder keeping the smaller file."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import ardmzip
from ardmzip import adapt, codec, container, weights
from ardmzip.cli import main
from ardmzip.errors import ChecksumError, FormatError, InputError
from ardmzip.files import info
from ardmzip.imageio import picture_from_array
from ardmzip.progress import PictureBar


def smooth(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 110 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0)
    px = np.stack([base + 20 * k + rng.normal(0, 3, base.shape) for k in range(c)], -1)
    return np.clip(px, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model() -> weights.Model:
    return weights.load()


@pytest.fixture(scope="module")
def tuned(model):
    """A 40x36 picture, the model adapted to it in 3 steps, and its version 7 file (written
    whether or not it is the smaller: the decoder's side is what these tests check)."""
    px = smooth(36, 40)
    deltas = adapt.tune(model, px, steps=3, seed=5)
    stream = adapt.pack(deltas)
    m2 = adapt.apply(model, deltas)
    data = codec._code_pictures(m2, [picture_from_array(px)], 16, 0, torch.device("cpu"),
                                codec.Stats(measure_ideal=False), False, adaptation=stream)[0]
    return px, deltas, stream, data


def test_tuning_changes_biases_on_each_layers_grid(model, tuned):
    _, deltas, stream, _ = tuned
    layers = model.net.named_layers()
    assert len(deltas) == len(layers) and any(d.any() for d in deltas)
    pos = 0
    for (_, layer), d in zip(layers, deltas):
        assert d.shape == (layer.bias.numel(),)
        q = stream[pos]                                       # the layer's grid: 2^q
        pos += 1 + layer.bias.numel()
        assert np.array_equal((d >> q) << q, d) and np.abs(d >> q).max() <= adapt.SMALL
    assert len(stream) == sum(1 + layer.bias.numel() for _, layer in layers)
    for got, want in zip(adapt.unpack(stream, model.net), deltas):
        assert np.array_equal(got, want)


def test_adapted_file_decodes_with_the_adapted_network(model, tuned):
    px, deltas, _, data = tuned
    header, streams = container.unpack(data)
    assert header.version == container.ADAPTED_VERSION and len(streams) == 2
    assert header.model_hash == model.hash8                  # it names the model it was adapted from
    assert info(data)["planes"][0] == f"model adapted to the picture ({len(streams[0])} bytes)"
    assert np.array_equal(ardmzip.decompress(data), px)
    plain = ardmzip.compress(px)
    assert container.unpack(plain)[1][0] != streams[1]       # the adapted network coded other bits


def test_a_different_adaptation_decodes_wrong_and_is_caught(model, tuned):
    px, deltas, stream, data = tuned
    header, streams = container.unpack(data)
    other = adapt.pack([np.zeros_like(d) for d in deltas])   # a valid stream: the unadapted biases
    forged = container.pack(header, [other, streams[1]])
    with pytest.raises((ChecksumError, FormatError)):        # wrong pixels, or the stream runs out first
        ardmzip.decompress(forged)


@pytest.mark.parametrize("edit, match", [
    (lambda s: s[:-1], "bytes after|too short"),
    (lambda s: s + b"\0", "bytes after"),
    (lambda s: bytes([32]) + s[1:], "bad value"),
    (lambda s: s[:1] + bytes([127]) + s[2:], "bad value"),
    (lambda s: b"", "too short"),
])
def test_malformed_adaptation_streams_are_format_errors(model, tuned, edit, match):
    _, _, stream, data = tuned
    with pytest.raises(FormatError, match=match):
        adapt.unpack(edit(stream), model.net)
    header, streams = container.unpack(data)
    with pytest.raises(FormatError):
        ardmzip.decompress(container.pack(header, [edit(stream), streams[1]]))


def test_an_adaptation_that_breaks_exactness_is_refused(model):
    deltas = [np.zeros(layer.bias.numel(), np.int64) for _, layer in model.net.named_layers()]
    deltas[1][0] = 63 << 31                                   # past float32's integers at that bias
    with pytest.raises(FormatError, match="out of range"):
        adapt.apply(model, deltas)
    assert adapt.unpack(adapt.pack(deltas), model.net)[1][0] == 63 << 31
    deltas[1][0] = (1 << 25) - int(model.net.named_layers()[1][1].bias[0])   # a bias of 2^25: not exact
    with pytest.raises(FormatError, match="not exact"):
        adapt.apply(model, deltas)


def test_missing_or_extra_streams_in_a_version_7_file(tuned):
    _, _, stream, data = tuned
    header, streams = container.unpack(data)
    for bad in ([streams[1]], [stream, streams[1], streams[1]]):
        with pytest.raises(FormatError, match="streams"):
            ardmzip.decompress(container.pack(header, bad))


def test_compress_keeps_the_smaller_file_and_it_decodes():
    for px in (smooth(20, 24), smooth(30, 26, 1, seed=3)[..., 0]):
        plain = ardmzip.compress(px)
        kept = ardmzip.compress(px, adapt=2)
        assert len(kept) <= len(plain)
        assert np.array_equal(ardmzip.decompress(kept), px)
    with pytest.raises(InputError, match="version 11"):
        ardmzip.compress(smooth(8, 8), adapt=2, version=5)
    with pytest.raises(InputError, match="at least 1"):
        adapt.adapt(weights.load(), smooth(8, 8), steps=0)


def test_the_decoded_adapted_network_is_the_encoders(model, tuned):
    _, deltas, stream, _ = tuned
    rebuilt = adapt.apply(model, adapt.unpack(stream, model.net))
    for (_, a), (_, b), d in zip(model.net.named_layers(), rebuilt.net.named_layers(), deltas):
        assert torch.equal(a.weight, b.weight)
        assert torch.equal(b.bias.double(), a.bias.double() + torch.as_tensor(d, dtype=torch.float64))
    assert rebuilt.net is not model.net and rebuilt.hash8 == model.hash8


def test_cli_adapt(tmp_path, monkeypatch):
    src = tmp_path / "a.png"
    Image.fromarray(smooth(24, 20)).save(src)
    asked, tune = [], adapt.tune
    monkeypatch.setattr(adapt, "tune", lambda m, px, steps, *a: asked.append(steps) or tune(m, px, steps, *a))
    r = CliRunner().invoke(main, ["compress", "--adapt", "-q", str(src)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["compress", "--adapt-steps", "2", "-q", str(src), "-o", str(tmp_path / "c.ardm")])
    assert r.exit_code == 0 and np.array_equal(ardmzip.decompress((tmp_path / "c.ardm").read_bytes()), smooth(24, 20))
    CliRunner().invoke(main, ["compress", "-q", str(src), "-o", str(tmp_path / "d.ardm")])
    assert asked == [adapt.DEFAULT_STEPS, 2]                 # and none without the options
    out = tmp_path / "b.png"
    r = CliRunner().invoke(main, ["decompress", "-q", str(tmp_path / "a.ardm"), "-o", str(out)])
    assert r.exit_code == 0 and np.array_equal(np.asarray(Image.open(out)), smooth(24, 20))
    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(smooth(8, 8)).save(folder / "x.png")
    r = CliRunner().invoke(main, ["compress", "--adapt", str(folder), "-o", str(tmp_path / "set.ardm")])
    assert r.exit_code == InputError.exit_code and "single files" in r.output
    assert not (tmp_path / "set.ardm").exists()


def test_a_picture_bar_counts_the_tuning_steps(model):
    with PictureBar("compress", file=io.StringIO()) as bar:
        bar.expect(3, 4)
        adapt.tune(model, smooth(16, 16), steps=4, progress=bar)
        assert bar.bar.n == 4 and bar.started == 1


# v7/xic-s48-rgb-adapted.ardm: smooth(36, 40) coded at 16 steps with xic-s48 adapted to it in
# 3 steps (the adapted file written whether or not smaller), by the commit that made format
# version 7. Training is float, so only its decoding is fixed: it must keep decoding.
V7_FILE = Path(__file__).parent / "data" / "v7" / "xic-s48-rgb-adapted.ardm"


# v9/xic-s48-rgb-adapted.ardm: the same, written by the commit that made format version 9
# (version 8's planes: a pyramid's coarse level gets more of the steps).
V9_FILE = Path(__file__).parent / "data" / "v9" / "xic-s48-rgb-adapted.ardm"
# v11/xic-s48-rgb-adapted.ardm: the same for smooth(52, 56) (large enough for version 10's three
# levels), by the commit that made format version 11 (the compact container)
V11_FILE = Path(__file__).parent / "data" / "v11" / "xic-s48-rgb-adapted.ardm"


@pytest.mark.parametrize("path, version, size", [(V7_FILE, 7, (36, 40)), (V9_FILE, 9, (36, 40)),
                                                 (V11_FILE, container.COMPACT + 11, (52, 56))])
def test_adapted_fixtures_keep_decoding(model, path, version, size):
    data = path.read_bytes()
    header, streams = container.unpack(data)
    assert data[4] == version and header.model_name == "xic-s48"
    assert any(d.any() for d in adapt.unpack(streams[0], model.net))
    assert np.array_equal(ardmzip.decompress(data), smooth(*size))


def test_adapted_files_name_the_version_of_their_planes(model):
    """11 where the planes are version 10 (a pyramid), 7 where they are 6 or below (fewer steps)."""
    px = smooth(20, 22)
    deltas = adapt.tune(model, px, steps=1)
    for steps, version in ((16, container.ADAPTED_VERSION), (8, container.ADAPTED_V6_VERSION)):
        data = codec._code_pictures(adapt.apply(model, deltas), [picture_from_array(px)], steps, 0,
                                    torch.device("cpu"), codec.Stats(measure_ideal=False), False,
                                    adaptation=adapt.pack(deltas))[0]
        assert container.unpack(data)[0].version == version
        assert np.array_equal(ardmzip.decompress(data), px)


@pytest.mark.parametrize("name", ["rgba", "gray_alpha", "rgb16", "gray"])
def test_adapted_files_of_every_kind_of_plane_decode(model, name):
    """The adaptation stream in front of alpha planes and 16-bit low bytes (stream counts,
    their order, the alpha plane coded with the adapted network too)."""
    a = smooth(20, 22)
    px = {"rgba": np.concatenate([a, a[..., :1] // 2], -1), "gray_alpha": a[..., :2], "gray": a[..., :1],
          "rgb16": a.astype(np.uint16) * 257 + 3}[name]
    picture = picture_from_array(px)
    eight = px[..., :3] if px.dtype == np.uint8 else (px >> 8).astype(np.uint8)
    color = eight[..., :1] if eight.shape[2] <= 2 else eight[..., :3]
    deltas = adapt.tune(model, color, steps=2)
    data = codec._code_pictures(adapt.apply(model, deltas), [picture], 16, 0, torch.device("cpu"),
                                codec.Stats(measure_ideal=False), False, adaptation=adapt.pack(deltas))[0]
    assert container.unpack(data)[0].version == container.ADAPTED_VERSION
    out = ardmzip.decompress(data)
    assert np.array_equal(out, px if px.shape[2] > 1 else px[..., 0])

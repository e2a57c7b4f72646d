"""Fast tests for benchmarks/ (the codec comparison), on tiny synthetic images.

They check the bookkeeping (exact round trips, bpsp arithmetic, size-weighted
totals, failure reporting, loading) and never ardmzip's own numbers.
"""

from __future__ import annotations

import json
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# benchmarks/ is not an installed package: make the repo root importable under plain `pytest`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import compare  # noqa: E402
from benchmarks.codecs import CODEC_KEYS, ArdmzipCodec, Codec, make_codec, make_codecs  # noqa: E402

BASELINES = [k for k in CODEC_KEYS if k != "ardmzip"]


def _gradient(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """Smooth ramp plus a little noise: compressible but not trivial."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = (x * 7 + y * 5)[..., None] + np.arange(c) * 40
    return ((base + rng.integers(0, 8, (h, w, c))) % 256).astype(np.uint8)


def _images() -> dict[str, np.ndarray]:
    images = {"rgb": _gradient(16, 16, 3), "gray": _gradient(16, 16, 1, seed=1), "odd": _gradient(13, 17, 3, seed=2)}
    rgba = _gradient(16, 16, 4, seed=3)
    images["rgba"] = rgba
    images["rgba_opaque"] = np.concatenate([rgba[..., :3], np.full((16, 16, 1), 255, np.uint8)], axis=2)
    try:
        import skimage.data

        images["astronaut"] = np.ascontiguousarray(skimage.data.astronaut()[100:148, 180:228])
        images["camera"] = np.ascontiguousarray(skimage.data.camera()[100:148, 200:248, None])
    except ImportError:
        pass
    return images


class RawCodec(Codec):
    """Lossless with a known size: 6-byte shape header + raw pixels."""

    name = key = "raw"

    def encode(self, image: np.ndarray) -> bytes:
        return struct.pack("<HHH", *image.shape) + image.tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        shape = struct.unpack("<HHH", data[:6])
        return np.frombuffer(data[6:], np.uint8).reshape(shape)


class BrokenCodec(RawCodec):
    """Decodes to an image with one subpixel off by one."""

    name = key = "broken"

    def decode(self, data: bytes) -> np.ndarray:
        out = super().decode(data).copy()
        out[0, 0, 0] ^= 1
        return out


class CrashingCodec(RawCodec):
    name = key = "crash"

    def decode(self, data: bytes) -> np.ndarray:
        raise RuntimeError("boom")


@pytest.mark.parametrize("key", BASELINES)
def test_baseline_round_trips_exactly(key: str) -> None:
    codec = make_codec(key)
    ok, reason = codec.available()
    if not ok:
        pytest.skip(reason)
    for label, image in _images().items():
        decoded = codec.decode(codec.encode(image))
        assert compare.compare_pixels(image, decoded) is None, (key, label)


def test_bpsp_of_known_length() -> None:
    image = _gradient(16, 16, 3)
    (row,) = compare.run_benchmark({"s": [image]}, [RawCodec()], warmup=False)
    assert row["ok"] and row["bytes"] == 6 + 768
    assert row["bpsp"] == pytest.approx(8 * (6 + 768) / 768)
    assert row["subpixels"] == 768 and row["pixels"] == 256
    assert row["encode_mpps"] == pytest.approx(256 / 1e6 / row["encode_s"])


def test_set_total_is_bits_over_subpixels_not_mean() -> None:
    small, big = _gradient(2, 2, 3), _gradient(20, 20, 3)  # 12 and 1200 subpixels
    rows = compare.run_benchmark({"s": [small, big]}, [RawCodec()], warmup=False)
    (total,) = compare.summarize(rows)
    expected = 8 * (6 + 12 + 6 + 1200) / (12 + 1200)
    assert total["bpsp"] == pytest.approx(expected)
    assert total["bpsp"] != pytest.approx(np.mean([r["bpsp"] for r in rows]))
    assert total["encode_s"] == pytest.approx(sum(r["encode_s"] for r in rows))
    assert total["images"] == 2 and total["failures"] == 0
    assert "| raw |" in compare.markdown_table([total])


def test_broken_codec_is_reported() -> None:
    rows = compare.run_benchmark({"s": [_gradient(8, 8, 3)]}, [RawCodec(), BrokenCodec(), CrashingCodec()])
    by = {r["codec"]: r for r in rows}
    assert by["raw"]["ok"]
    assert not by["broken"]["ok"] and "differ" in by["broken"]["error"]
    assert not by["crash"]["ok"] and "boom" in by["crash"]["error"]
    summary = {s["codec"]: s for s in compare.summarize(rows)}
    assert summary["broken"]["failures"] == 1
    assert "FAIL" in compare.markdown_table(list(summary.values()))


def test_compare_pixels_rules() -> None:
    gray = _gradient(4, 4, 1)
    assert compare.compare_pixels(gray, gray[..., 0]) is None  # H x W vs H x W x 1
    assert compare.compare_pixels(gray, np.repeat(gray, 3, axis=2)) is None  # WebP-style gray
    rgba = _gradient(4, 4, 4)
    assert compare.compare_pixels(rgba, rgba[..., :3]) is not None  # alpha carried data: lost
    rgba[..., 3] = 255
    assert compare.compare_pixels(rgba, rgba[..., :3]) is None  # opaque alpha dropped: same image
    assert compare.compare_pixels(gray, gray.astype(np.int16)) is not None  # dtype matters


def _write_folder(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    Image.fromarray(_gradient(8, 8, 3)).save(root / "b.png")
    Image.fromarray(_gradient(8, 6, 1)[..., 0]).save(root / "sub" / "a.pgm")
    Image.fromarray(_gradient(8, 8, 3)).convert("P").save(root / "c.bmp")
    Image.fromarray(_gradient(8, 8, 1)[..., 0] > 100).save(root / "d.tif")
    (root / "notes.txt").write_text("not an image")


def test_folder_loading(tmp_path: Path) -> None:
    _write_folder(tmp_path / "myset")
    sets, names = compare.load_sets([tmp_path / "myset"])
    assert list(sets) == ["myset"]
    assert names["myset"] == ["b.png", "c.bmp", "d.tif", "sub/a.pgm"]  # sorted, recursive, no .txt
    shapes = [a.shape for a in sets["myset"]]
    assert shapes == [(8, 8, 3), (8, 8, 3), (8, 8, 1), (8, 6, 1)]  # P -> RGB, 1 -> L, gray stays C=1
    assert all(a.dtype == np.uint8 for a in sets["myset"])
    np.testing.assert_array_equal(sets["myset"][0], _gradient(8, 8, 3))
    sets, _ = compare.load_sets([tmp_path / "myset"], limit=2)
    assert len(sets["myset"]) == 2


def test_array_loading(tmp_path: Path) -> None:
    stack = np.stack([_gradient(4, 5, 3, seed=i) for i in range(5)])
    np.savez(tmp_path / "withkey.npz", labels=np.arange(5), images=stack)
    np.savez(tmp_path / "nokey.npz", stack)
    np.save(tmp_path / "gray.npy", stack[..., 0])
    sets, names = compare.load_sets(
        [tmp_path / "withkey.npz", tmp_path / "nokey.npz", tmp_path / "gray.npy"], limit=3
    )
    assert list(sets) == ["withkey", "nokey", "gray"]
    assert names["withkey"] == ["withkey[0]", "withkey[1]", "withkey[2]"]
    np.testing.assert_array_equal(np.stack(sets["withkey"]), stack[:3])
    np.testing.assert_array_equal(np.stack(sets["nokey"]), stack[:3])
    assert sets["gray"][0].shape == (4, 5, 1)


def test_ardmzip_codec_skipped_cleanly_when_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ardmzip", None)  # makes `import ardmzip` raise ImportError
    codec = ArdmzipCodec(steps=8)
    ok, reason = codec.available()
    assert not ok and "ardmzip" in reason and codec.name == "ardmzip-8"
    monkeypatch.setitem(sys.modules, "ardmzip", types.ModuleType("ardmzip"))  # half-written package
    ok, reason = codec.available()
    assert not ok and "compress" in reason
    rows = compare.run_benchmark({"s": [_gradient(4, 4, 3)]}, [codec, RawCodec()])
    assert [r["codec"] for r in rows] == ["raw"]
    assert [c.name for c in make_codecs(["png", "ardmzip"], [4, None])] == ["png", "ardmzip-4", "ardmzip"]
    assert [c.name for c in make_codecs(["ardmzip"], [8], "cuda")] == ["ardmzip-8@cuda"]
    assert [c.name for c in make_codecs(["ardmzip"], [None], "cpu", "models/thumbs.npz")] == ["ardmzip[thumbs]"]
    assert [c.name for c in make_codecs(["ardmzip"], [16], "cpu", None, [0, 30])] == ["ardmzip-16", "ardmzip-16+adapt30"]


def test_ardmzip_codec_passes_adaptation(monkeypatch: pytest.MonkeyPatch) -> None:
    import ardmzip
    seen = []
    monkeypatch.setattr(ardmzip, "compress", lambda image, **kw: seen.append(kw) or b"x")
    for codec in make_codecs(["ardmzip"], [8], "cpu", None, [0, 5]):
        codec.encode(_gradient(4, 4, 3))
    assert [kw["adapt"] for kw in seen] == [0, 5] and all(kw["steps"] == 8 for kw in seen)
    assert compare.build_parser().parse_args(["x", "--ardmzip-adapt", "0,30"]).ardmzip_adapt == [0, 30]
    with pytest.raises(SystemExit):
        compare.build_parser().parse_args(["x", "--ardmzip-adapt", "-1"])


def test_cli_exit_status_and_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _write_folder(tmp_path / "imgs")
    monkeypatch.setattr(compare, "make_codecs", lambda keys, steps, device, model=None, adapt=None: [RawCodec()])
    assert compare.main([str(tmp_path / "imgs"), "--codecs", "png", "--out", str(tmp_path / "out")]) == 0
    assert "| raw |" in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(result["rows"]) == 4 and result["summary"][0]["failures"] == 0
    assert "date_utc" in result["environment"]
    for name in ("results.csv", "summary.csv", "results.md"):
        assert (tmp_path / "out" / name).stat().st_size > 0

    monkeypatch.setattr(compare, "make_codecs", lambda keys, steps, device, model=None, adapt=None: [RawCodec(), BrokenCodec()])
    assert compare.main([str(tmp_path / "imgs"), "--limit", "1"]) == 1
    assert "NOT exact" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        compare.main([str(tmp_path / "imgs"), "--codecs", "nope"])


@pytest.mark.parametrize("as_folder", [False, True])
def test_throughput_round_trips_arrays_and_folders(tmp_path, capsys, as_folder):
    from benchmarks import throughput
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 6, 5, 3), dtype=np.uint8)
    if as_folder:
        src = tmp_path / "imgs"
        src.mkdir()
        for i, im in enumerate(images):
            Image.fromarray(im).save(src / f"{i}.png")
        src.joinpath("odd.png").write_bytes(b"")           # unreadable: skipped with a note
    else:
        src = tmp_path / "imgs.npz"
        np.savez(src, images=images)
    out = tmp_path / "out"
    assert throughput.main([str(src), "--jobs", "1", "--references", "", "--out", str(out)]) == 0
    rows = json.loads((out / "throughput.json").read_text())["rows"]
    assert rows[0]["images"] == 3 and rows[0]["raw_bytes"] == images.nbytes


def test_throughput_warm_up_is_recorded(tmp_path, capsys):
    from benchmarks import throughput
    src = tmp_path / "imgs.npz"
    np.savez(src, images=np.random.default_rng(1).integers(0, 256, (2, 5, 4, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert throughput.main([str(src), "--jobs", "1", "--references", "", "--warm-up", "--out", str(out)]) == 0
    assert json.loads((out / "throughput.json").read_text())["environment"]["warm_up"] is True


@pytest.mark.parametrize("as_array", [False, True])
def test_ab_api_compares_two_checkouts_in_one_process(tmp_path, capsys, monkeypatch, as_array):
    """Both sides this checkout: the same bytes every round, ratios reported (a picture, and an
    array coded as one batch)."""
    import sys
    from benchmarks import ab_api
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))          # ab_api edits it
    rng = np.random.default_rng(2)
    if as_array:
        src = tmp_path / "imgs.npz"
        np.savez(src, images=rng.integers(0, 256, (3, 6, 5, 3), dtype=np.uint8))
    else:
        src = tmp_path / "a.png"
        Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)).save(src)
    root = str(Path(ab_api.__file__).resolve().parents[1])
    try:
        assert ab_api.main([str(src), "--old", root, "--rounds", "2", "--steps", "2"]) == 0
    finally:
        for name in [n for n in sys.modules if n.startswith(("ardmzip_old", "ardmzip_new"))]:
            del sys.modules[name]
    out = capsys.readouterr().out
    assert "compress: new / old median" in out and "same bytes and exact round trips in every round" in out


def test_all_runs_every_readme_benchmark_into_dated_folders(tmp_path, monkeypatch, capsys):
    from benchmarks import all as run_all
    ev = tmp_path / "eval"
    for rel, size in [("McMaster/1.png", (140, 150)), ("Set14/barbara.png", (130, 160))]:
        (ev / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_gradient(*size, 3)).save(ev / rel)
    assert run_all.main([str(ev), "--date", "X"]) == 2                      # no CIFAR array yet
    np.savez(ev / "cifar10_test_partial.npz", images=np.zeros((2, 4, 4, 3), np.uint8))
    calls = []

    def fake(name):
        def main(argv):
            calls.append((name, list(argv)))
            if name == "compare" and "--ardmzip-steps" in argv:
                crops = sorted(p.name for p in Path(argv[0]).iterdir())
                assert crops == ["McMaster_1.png", "Set14_barbara.png"]
                assert all(Image.open(Path(argv[0]) / c).size == (128, 128) for c in crops)
            return 0
        return main

    for name in ("compare", "throughput", "overhead", "exact_speed", "ci_guard"):
        monkeypatch.setattr(getattr(run_all, name), "main", fake(name))
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "results")
    assert run_all.main([str(ev), "--date", "X"]) == 0
    assert [n for n, _ in calls] == ["compare", "compare", "throughput", "throughput", "overhead", "overhead",
                                     "exact_speed", "exact_speed", "ci_guard"]
    outs = [argv[argv.index("--out") + 1] for _, argv in calls if "--out" in argv]
    assert [Path(o).name for o in outs] == ["X-eval-full", "X-steps", "X-throughput-cifar", "X-throughput-mcmaster"]
    assert (tmp_path / "results" / "X-overhead" / "overhead.txt").exists()
    assert (tmp_path / "results" / "X-exact-speed" / "exact_speed.txt").exists()


def test_exact_speed_runs(capsys):
    from benchmarks import exact_speed
    assert exact_speed.main(["--size", "16", "--repeat", "1"]) == 0
    assert "exact/float =" in capsys.readouterr().out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU case")
def test_ardmzip_on_cuda_is_skipped_with_a_reason_without_a_gpu() -> None:
    ok, reason = ArdmzipCodec(16, "cuda").available()
    assert not ok and reason == "no CUDA device"


def test_levels_times_every_budget_alternately_and_flags_inversions(tmp_path, capsys):
    """benchmarks.levels: every size round-trips at every budget, the report has a row per
    budget and a ratio per neighbouring pair, and a pair is called inverted only when its
    median ratio is below 1."""
    from benchmarks import levels
    photo = tmp_path / "p.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photo)
    cifar = tmp_path / "c.npz"
    np.savez(cifar, images=rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert levels.main([str(photo), "--cifar", str(cifar), "--sizes", "cifar,32,photo,double", "--steps", "2,3",
                        "--rounds", "2", "--out", str(out)]) == 0
    got = json.loads((out / "results.json").read_text())["results"]
    assert [r["name"] for r in got] == ["cifar x3", "crop 32x32", "photo 48x40", "double 96x40"]
    assert got[0]["images"] == 3 and all(len(r["steps"]["3"]["compress"]) == 2 for r in got)
    text = (out / "results.md").read_text()
    assert text.count("| 2 -> 3 |") == 4
    fake = {"name": "x", "images": 1, "subpixels": 3, "rounds": 3,
            "steps": {2: {"bpsp": 1, "compress": [1, 1, 1], "decompress": [1, 1, 1], "compress_cpu": [2, 2, 2],
                          "decompress_cpu": [2, 2, 2]},
                      3: {"bpsp": 1, "compress": [2, 0.9, 2], "decompress": [0.9, 0.8, 1.1], "compress_cpu": [2, 2, 2],
                          "decompress_cpu": [2, 2, 2]}}}
    compress, decompress = levels.pairs(fake, [2, 3], "compress")[0], levels.pairs(fake, [2, 3], "decompress")[0]
    assert compress["in_order"] and not compress["always"]
    assert not decompress["in_order"]
    assert "**not always**" in levels.report(fake, [2, 3], {}) and "**INVERTED**" in levels.report(fake, [2, 3], {})


def test_adapt_benchmark_reports_both_files_and_the_total(tmp_path, capsys):
    """benchmarks.adapt: a line per picture (plain and adapted bpsp, the version) and a total."""
    from benchmarks import adapt as adapt_bench
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(90, 110, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    Image.fromarray(rng.integers(90, 110, (20, 24), dtype=np.uint8)).save(folder / "2.png")   # gray: one channel
    assert adapt_bench.main([str(folder), "--steps", "2", "--level-steps", "4"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 5 and out[-1].startswith("total | 3360 subpixels")      # 2 x 480 x 3 + 480
    for line in out[1:4]:
        cells = [c.strip() for c in line.split("|")]
        assert cells[1] == "24x20" and float(cells[3]) <= float(cells[2]) and cells[-1] in ("4", "7")     # 4 steps: no pyramid

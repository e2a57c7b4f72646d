"""`ardmzip fit`: fine-tune a shipped model on one kind of picture, resumably, and code with it."""
from __future__ import annotations

import json

import numpy as np
import pytest

import ardmzip
from ardmzip import fit, weights
from ardmzip.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


def thumbnails(path, n: int = 12, size: int = 32):
    """Smooth coloured thumbnails with noise: a small dataset of one kind."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    images = []
    for i in range(n):
        base = 110 + 60 * np.sin(x / (3 + i % 4)) + 30 * np.cos(y / (5 + i % 3))
        rgb = np.stack([base + 20 * c + rng.normal(0, 3, base.shape) for c in range(3)], -1)
        images.append(np.clip(rgb, 0, 255).astype(np.uint8))
    np.savez(path, images=np.stack(images))
    return path


def test_fit_writes_a_model_that_codes_resumes_and_keeps_the_base_order(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "REGISTRY", dict(weights.REGISTRY))      # the fitted model stays in this test
    data, out = thumbnails(tmp_path / "thumbs.npz"), tmp_path / "thumbs-model.npz"
    r = fit.fit([data], out, steps=2, batch=4, threads=1, progress=False, curve_crops=4)
    assert r.path == out and r.steps == 2 and out.is_file()
    model = weights.from_bytes(out.read_bytes(), "thumbs-model")
    base = weights.load()
    assert model.sha256 == r.sha256 != base.sha256
    assert model.net.config == base.net.config                     # same architecture and coding order
    assert model.meta["name"] == "thumbs-model" and model.meta["base"] == f"{base.name} {base.sha256}"
    assert len(model.curve) == weights.CURVE_POINTS

    # the same command with a larger budget continues the run (needs -f for the existing file)
    with pytest.raises(InputError, match="exists"):
        fit.fit([data], out, steps=3, batch=4, threads=1, progress=False, curve_crops=4)
    r = fit.fit([data], out, steps=3, batch=4, threads=1, progress=False, curve_crops=4, force=True)
    log = [json.loads(line) for line in (tmp_path / "thumbs-model.npz.run" / "log.jsonl").read_text().splitlines()]
    assert r.steps == 3 and [rec["step"] for rec in log] == [2, 3]

    weights.register(out)
    a = np.load(data)["images"][5]
    assert np.array_equal(ardmzip.decompress(ardmzip.compress(a, steps=4, model="thumbs-model")), a)


def test_fit_command_refuses_bad_requests_in_one_line(tmp_path, invoke):
    data = thumbnails(tmp_path / "thumbs.npz", n=2)
    (tmp_path / "taken.npz").write_bytes(b"x")
    tiny = tmp_path / "tiny.npz"
    np.savez(tiny, images=np.zeros((2, 8, 8, 3), np.uint8))
    cases = [
        (["-o", tmp_path / "taken.npz", "--steps", "1"], "exists; use -f"),
        (["-o", tmp_path / "xic-s48.npz", "--steps", "1"], "name of a shipped model"),
        (["-o", tmp_path / "m.png", "--steps", "1"], "a model file is an .npz"),
        (["-o", tmp_path / "m.npz", "--steps", "1", "--minutes", "2"], "not both"),
        (["-o", tmp_path / "m.npz", "--steps", "1", "--from", "no-such-model"], "neither a model"),
    ]
    for args, message in cases:
        r = invoke("fit", data, *args)
        assert r.exit_code == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1, (args, r.stderr)
    r = invoke("fit", tiny, "-o", tmp_path / "m.npz", "--steps", "1", "--threads", "1", "-q")
    assert r.exit_code == 2 and "at least 32x32" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert (tmp_path / "taken.npz").read_bytes() == b"x" and not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("native", [True, False])
def test_fit_trains_in_bfloat16_where_the_hardware_has_it_unless_told(tmp_path, monkeypatch, invoke, native):
    """fit's default follows train.bf16_native(device); --bf16 / --no-bf16 decide otherwise."""
    seen = []

    class Stop(Exception):
        pass

    def fake_train(args):
        seen.append(args.bf16)
        raise Stop
    monkeypatch.setattr(fit.train, "train", fake_train)
    monkeypatch.setattr(fit.train, "bf16_native", lambda device: native)
    data = thumbnails(tmp_path / "thumbs.npz", n=2)
    for bf16 in (None, True, False):
        with pytest.raises(Stop):
            fit.fit([data], tmp_path / "m.npz", steps=1, device="cpu", bf16=bf16, progress=False)
    assert seen == [native, True, False]
    invoke("fit", data, "-o", tmp_path / "m.npz", "--steps", "1", "--no-bf16")
    invoke("fit", data, "-o", tmp_path / "m.npz", "--steps", "1", "--bf16")
    assert seen[3:] == [False, True]


"""Training: fine-tuning a shipped model, growing it, resuming, and exporting a model the codec uses."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ardmzip
from ardmzip import train, weights
from ardmzip.model import ARDMNet


def photos(folder, n: int = 3, size: int = 70):
    folder.mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = 120 + 50 * np.sin(x / (4 + i)) + 30 * np.cos(y / 6)
        rgb = np.stack([base + 15 * c + rng.normal(0, 4, base.shape) for c in range(3)], -1)
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def test_fine_tune_from_a_shipped_model_resumes_and_exports(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "REGISTRY", dict(weights.REGISTRY))      # the tiny model stays in this test
    data, run = photos(tmp_path / "photos"), tmp_path / "run"
    base = ["--out", str(run), "--init", str(weights.MODEL_DIR / "oa-s48.npz"), "--cross-anchor", "--batch", "2",
            "--crop", "16", "--qat-from", "0", "--log-every", "1", "--eval-every", "1", "--ckpt-every", "1",
            "--threads", "1", "--val", str(data), "--val-crops", "2"]
    train.main([str(data), "--steps", "2", *base])
    assert torch.load(run / "ckpt.pt", weights_only=False)["step"] == 2
    train.main([str(data), "--steps", "3", *base])                    # same run: continues, does not restart
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss_bpsp"]) for r in log)
    assert set(log[-1]["val_bpsp"]) == {"photos"}

    path = weights.export(str(run), "tiny-xa", [str(data)], out_dir=tmp_path, curve_crops=2)
    model = weights.register(path)
    assert model.net.config.cross_anchor and model.net.config.channels == weights.load("oa-s48").net.config.channels
    assert len(model.curve) == weights.CURVE_POINTS and np.all(np.diff(model.curve) <= 60)   # roughly falling
    a = np.asarray(Image.open(data / "0.png"))[:20, :24]
    assert np.array_equal(ardmzip.decompress(ardmzip.compress(a, steps=4, model="tiny-xa")), a)


def test_grown_network_starts_as_the_original_and_its_new_blocks_learn():
    net = ARDMNet.from_integer(weights.load("xa2-s48").net)
    grown = train.grow(net, (1, 4))
    assert grown.config.dilations == net.config.dilations + (1, 4)
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 256, (2, 3, 24, 24), generator=g)
    mask = (torch.rand(2, 3, 24, 24, generator=g) < 0.5).int()
    for mode in ("float", "qat"):
        net.set_mode(mode)
        grown.set_mode(mode)
        assert torch.equal(net(values, mask)[0], grown(values, mask)[0])
    params, _ = grown(values, mask)
    params.square().mean().backward()
    assert all(bool(b.conv.weight.grad.abs().sum() > 0) for b in grown.blocks[-2:])


def test_grow_without_a_model_to_grow_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main([str(tmp_path), "--out", str(tmp_path / "run"), "--grow", "1,2"])
    assert exit_info.value.code == 2
    assert "--grow needs --init" in capsys.readouterr().err and not (tmp_path / "run").exists()

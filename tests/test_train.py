"""Training: fine-tuning a shipped model, growing it, resuming, and exporting a model the codec uses."""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

import ardmzip
from ardmzip import train, weights
from ardmzip.data import TensorCropSampler
from ardmzip.model import ARDMNet
from helpers import photos




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
    # the export may declare another coding order than the run's (same weights)
    ordered = weights.register(weights.export(str(run), "tiny-xp", [str(data)], out_dir=tmp_path, curve_crops=2,
                                              order="interlace2/palette-random"))
    assert ordered.net.config.order == "interlace2/palette-random" and model.net.config.order == "random"
    assert np.array_equal(ardmzip.decompress(ardmzip.compress(a, steps=4, model="tiny-xp")), a)
    with pytest.raises(ValueError, match="coding order"):
        weights.export(str(run), "tiny-bad", [str(data)], out_dir=tmp_path, curve_crops=2, order="zigzag")


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


def _is_view_of(crop: np.ndarray, sources: list[np.ndarray]) -> bool:
    """crop (c, c, 3) is a crop of one source, maybe flipped and then transposed."""
    c = crop.shape[0]
    views = [crop, crop[:, ::-1], crop.transpose(1, 0, 2), crop.transpose(1, 0, 2)[:, ::-1]]
    for im in sources:
        for y in range(im.shape[0] - c + 1):
            for x in range(im.shape[1] - c + 1):
                if any(np.array_equal(im[y:y + c, x:x + c], v) for v in views):
                    return True
    return False


@pytest.mark.parametrize("crop", [16, 20])
def test_tensor_sampler_draws_real_crops_fixed_shares_and_gray(crop):
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (30, 41, 3), dtype=np.uint8), rng.integers(0, 256, (22, 25, 3), dtype=np.uint8)]
    small = [rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)]
    sampler = TensorCropSampler(photos, small, crop=crop, array_fraction=0.25, gray_fraction=0.3, seed=1)
    groups = sampler.sample(12)
    if crop == 16:      # small images are as large as the crops: one batch
        assert [x.shape for x, _ in groups] == [(12, 3, 16, 16)]
    else:               # larger photo crops: photos and small images in two groups
        assert [x.shape for x, _ in groups] == [(9, 3, crop, crop), (3, 3, 16, 16)]
    seen_gray = 0
    for x, gray in groups:
        assert x.dtype == torch.int64 and int(x.min()) >= 0 and int(x.max()) <= 255
        for image, is_gray in zip(x.permute(0, 2, 3, 1).numpy().astype(np.uint8), gray.tolist()):
            if is_gray:     # three equal slots, as data.to_gray makes them
                assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
                seen_gray += 1
            else:
                assert _is_view_of(image, photos if image.shape[0] == crop and crop != 16 else photos + list(small[0]))
    assert 0 < seen_gray < 12


def test_time_limited_training_on_the_tensor_sampler_stops_and_resumes(tmp_path):
    data, run = photos(tmp_path / "photos"), tmp_path / "run"
    args = [str(data), "--out", str(run), "--init", str(weights.MODEL_DIR / "xa3-s48.npz"), "--batch", "2",
            "--crop", "16", "--qat-from", "0", "--steps", "1000000", "--sampler", "torch", "--threads", "1",
            "--log-every", "1000", "--lr", "1e-3", "--warmup", "0"]
    train.main([*args, "--time-limit", "2"])
    first = torch.load(run / "ckpt.pt", weights_only=False)
    assert 2.0 <= first["elapsed_s"] < 30 and 0 < first["step"] < 1000000
    train.main([*args, "--time-limit", "3"])                    # a larger budget: continues for ~1 s more
    second = torch.load(run / "ckpt.pt", weights_only=False)
    assert second["step"] > first["step"] and 3.0 <= second["elapsed_s"] < first["elapsed_s"] + 30
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and log[-1]["lr"] == pytest.approx(5e-5)            # the cosine's end: budget spent


def test_learning_rate_follows_the_time_budget_when_given():
    assert train.lr_at(5, 100, 1.0, warmup=10) == pytest.approx(0.6)                    # warm-up by steps
    assert train.lr_at(50, 100, 1.0, warmup=10, progress=0.0) == pytest.approx(1.0)
    assert train.lr_at(50, 100, 1.0, warmup=10, progress=0.5) == pytest.approx(0.525)
    assert train.lr_at(50, 100, 1.0, warmup=10, progress=2.0) == pytest.approx(0.05)


def test_interlaced_masks_reveal_a_grid_phase_first_and_make_the_model_declare_the_order(tmp_path):
    from ardmzip.ardm import random_masks
    g = torch.Generator().manual_seed(0)
    h = w = 6
    mask, frac = random_masks(64, h, w, torch.zeros(64, dtype=torch.bool), g, interlaced_fraction=1.0)
    for m in mask:                                  # each image: one 2x2 phase is revealed before any other pixel
        revealed = m.sum().item()
        phases = [torch.zeros(h, w, dtype=torch.bool) for _ in range(4)]
        for i, (py, px) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            phases[i][py::2, px::2] = True
        grid = phases[[i for i in range(4) if (m[:, ~phases[i]].sum() == 0 or m[:, phases[i]].all())][0]]
        coarse_n = 3 * int(grid.sum())
        assert (m[:, ~grid].sum() == 0) if revealed <= coarse_n else bool(m[:, grid].all())
    data, run = photos(tmp_path / "photos"), tmp_path / "run"
    train.main([str(data), "--out", str(run), "--init", str(weights.MODEL_DIR / "xa4-s48.npz"), "--batch", "2",
                "--crop", "16", "--qat-from", "0", "--steps", "2", "--threads", "1", "--interlace-fraction", "0.5"])
    assert torch.load(run / "ckpt.pt", weights_only=False)["config"]["order"] == "interlace2"


def test_given_phase_puts_the_coarse_grid_there():
    from ardmzip.ardm import random_masks
    g = torch.Generator().manual_seed(1)
    b, h, w = 16, 6, 8
    py, px = torch.arange(b) % 2, (torch.arange(b) // 2) % 2
    mask, frac = random_masks(b, h, w, torch.zeros(b, dtype=torch.bool), g, interlaced_fraction=1.0, phase=(py, px))
    for m, y0, x0 in zip(mask, py.tolist(), px.tolist()):
        grid = torch.zeros(h, w, dtype=torch.bool)
        grid[y0::2, x0::2] = True
        revealed = int(m.sum())
        assert (m[:, ~grid].sum() == 0) if revealed <= 3 * int(grid.sum()) else bool(m[:, grid].all())


def test_green_first_masks_reveal_the_fine_levels_green_first_and_make_the_model_declare_interlace2g(tmp_path):
    """--green-first: interlaced RGB masks reveal the coarse level in the plain random order,
    then the fine level's green subpixels before its red and blue ones ("interlace2g"); gray
    images and, with green_first=0, every mask are as before (the generator's draws too)."""
    from ardmzip.ardm import random_masks
    b, h, w = 256, 6, 8
    gray = torch.arange(b) % 8 == 0
    py, px = torch.arange(b) % 2, (torch.arange(b) // 2) % 2
    plain, _ = random_masks(b, h, w, gray, torch.Generator().manual_seed(4), 1.0, (py, px))
    again, _ = random_masks(b, h, w, gray, torch.Generator().manual_seed(4), 1.0, (py, px), green_first=0.0)
    assert torch.equal(plain, again)
    mask, _ = random_masks(b, h, w, gray, torch.Generator().manual_seed(4), 1.0, (py, px), green_first=1.0)
    assert torch.equal(mask[gray], plain[gray])
    seen = {"fine split": 0, "coarse mixed": 0}
    for m, y0, x0, is_gray in zip(mask, py.tolist(), px.tolist(), gray.tolist()):
        grid = torch.zeros(h, w, dtype=torch.bool)
        grid[y0::2, x0::2] = True
        coarse, fine = m[:, grid].bool(), m[:, ~grid].bool()
        if fine.any():
            assert coarse.all()
        if not is_gray and fine[[0, 2]].any():
            assert fine[1].all()                                  # red or blue revealed: all green before
            seen["fine split"] += 1
        if not is_gray and coarse[[0, 2]].any() and not coarse[1].all():
            seen["coarse mixed"] += 1                             # the coarse level: the plain order
    assert seen["fine split"] > 10 and seen["coarse mixed"] > 10
    data, run = photos(tmp_path / "photos"), tmp_path / "run"
    train.main([str(data), "--out", str(run), "--init", str(weights.MODEL_DIR / "xa4-s48.npz"), "--batch", "2",
                "--crop", "16", "--qat-from", "0", "--steps", "2", "--threads", "1", "--interlace-fraction", "0.5",
                "--green-first", "1"])
    assert torch.load(run / "ckpt.pt", weights_only=False)["config"]["order"] == "interlace2g"


@pytest.mark.parametrize("vertical", [True, False])
def test_subsampled_chroma_is_constant_on_blocks_at_the_phase(vertical):
    from ardmzip.data import subsample_chroma
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.integers(90, 170, (4, 3, 10, 12)))      # mid-range: no clipping
    selected = torch.tensor([True, True, True, False])
    py, px = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 1, 0])
    out = subsample_chroma(x, selected, torch.full((4,), vertical), py, px)
    assert out.dtype == x.dtype and out.min() >= 0 and out.max() <= 255
    assert torch.equal(out[3], x[3])                                 # not selected: untouched
    f = out.double()
    cb = -0.168736 * f[:, 0] - 0.331264 * f[:, 1] + 0.5 * f[:, 2]     # chroma of the 8-bit result
    cr = 0.5 * f[:, 0] - 0.418688 * f[:, 1] - 0.081312 * f[:, 2]
    by = 2 if vertical else 1
    for i in range(3):
        y0, x0 = int(py[i]), int(px[i])
        for c in (cb[i], cr[i]):
            blocks = c[y0:y0 + (10 - y0) // by * by, x0:x0 + (12 - x0) // 2 * 2]
            blocks = blocks.reshape(blocks.shape[0] // by, by, blocks.shape[1] // 2, 2)
            spread = blocks.amax((1, 3)) - blocks.amin((1, 3))
            assert spread.max() <= 1.5                              # only the RGB rounding is left
        assert (out[i] - x[i]).abs().float().mean() > 1            # and the picture did change
    # a block straddling the other phase is not constant in general
    y0 = 1 - int(py[0])
    c = cb[0][y0:y0 + 8, 1 - int(px[0]):1 - int(px[0]) + 10].reshape(8 // by, by, 5, 2)
    assert (c.amax((1, 3)) - c.amin((1, 3))).max() > 3


def test_chroma_fraction_trains(tmp_path):
    data, run = photos(tmp_path / "photos"), tmp_path / "run"
    train.main([str(data), "--out", str(run), "--init", str(weights.MODEL_DIR / "xi-s48.npz"), "--batch", "4",
                "--crop", "16", "--qat-from", "0", "--steps", "2", "--threads", "1", "--interlace-fraction", "0.9",
                "--chroma-fraction", "0.5"])
    state = torch.load(run / "ckpt.pt", weights_only=False)
    assert state["step"] == 2 and state["args"]["chroma_fraction"] == 0.5


def test_a_slim_checkpoint_is_smaller_and_resumes_the_run(tmp_path):
    """--slim keeps weights and EMA in float32 and the Adam moments in bfloat16; a run
    resumed from it continues at its step with float32 moments again."""
    data, run = photos(tmp_path / "photos"), tmp_path / "run"
    base = ["--out", str(run), "--trunk", "s2d", "--channels", "8", "--dilations", "1,2", "--fine-channels", "8",
            "--batch", "2", "--crop", "16", "--qat-from", "0", "--log-every", "1", "--ckpt-every", "1", "--threads", "1"]
    train.main([str(data), "--steps", "2", *base])
    full = run / "ckpt.pt"
    slim = tmp_path / "slim.pt"
    train.main(["--slim", str(full), str(slim)])
    assert slim.stat().st_size < full.stat().st_size
    state = torch.load(slim, weights_only=False)
    moments = [v for st in state["opt"]["state"].values() for k, v in st.items() if k.startswith("exp_avg")]
    assert moments and all(m.dtype == torch.bfloat16 for m in moments)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    full.unlink()
    slim.replace(full)
    train.main([str(data), "--steps", "3", *base])
    resumed = torch.load(full, weights_only=False)
    assert resumed["step"] == 3
    assert all(v.dtype == torch.float32 for st in resumed["opt"]["state"].values() for k, v in st.items()
               if k.startswith("exp_avg"))


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_run_keeps_its_steps(tmp_path, monkeypatch, capsys, how):
    """Ctrl-C (or `timeout -s INT` on a leased machine) saves the steps done, then returns;
    so does SIGTERM (kill), since a background job ignores SIGINT."""
    data, run = photos(tmp_path / "photos"), tmp_path / "run"
    calls = {"n": 0}
    real = train.group_loss

    def interrupted_on_the_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "group_loss", interrupted_on_the_fourth)
    before = signal.getsignal(signal.SIGTERM)
    train.main([str(data), "--out", str(run), "--steps", "50", "--batch", "2", "--crop", "16", "--channels", "8",
                "--ckpt-every", "1000", "--log-every", "1000", "--threads", "1", "--quiet"])
    assert torch.load(run / "ckpt.pt", weights_only=False)["step"] == 3
    assert "interrupted at step 3" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before                 # restored after the run


def test_training_clock_counts_a_pause_as_a_typical_step():
    """A run stopped with SIGSTOP (while a benchmark runs) does not spend its time budget."""
    t = {"now": 0.0}
    clock = train.TrainingClock(100.0, now=lambda: t["now"])
    for _ in range(8):
        t["now"] += 1.0
        clock.tick()
    assert clock.spent == pytest.approx(108.0)
    t["now"] += 600.0                                   # stopped for ten minutes mid-step
    assert clock.tick() == pytest.approx(109.0)
    t["now"] += 3.0                                     # a slower step still counts in full
    assert clock.tick() == pytest.approx(112.0)


def test_bf16_training_products_match_float32_and_leave_the_ema_alone(tmp_path):
    """--bf16 rounds only the 3x3 blocks' sums: the QAT loss and its gradient stay those of
    float32 to within rounding noise, the 1x1 layers and the EMA (validation) keep float32,
    and a run with it trains."""
    from ardmzip.ardm import oa_loss
    from ardmzip.model import ModelConfig, make_net
    from ardmzip.qlayers import QConv, set_bf16
    torch.manual_seed(0)
    net = make_net(ModelConfig(channels=16, dilations=(1, 2), head_hidden=16, mixtures=2))
    net.set_mode("qat")
    folder = photos(tmp_path / "data", n=2)
    x = torch.as_tensor(np.stack([np.asarray(Image.open(f))[:24, :24] for f in sorted(folder.iterdir())]))
    x = x.permute(0, 3, 1, 2).long()
    gray = torch.zeros(len(x), dtype=torch.bool)
    results = []
    for on in (False, True):
        set_bf16(net, on)
        net.zero_grad()
        torch.manual_seed(1)
        loss = oa_loss(net, x, gray, None, 0.5)[0].mean()
        loss.backward()
        results.append((float(loss.detach()), torch.cat([p.grad.flatten() for p in net.parameters()])))
    flags = {m.conv.kernel_size[0]: m.bf16 for m in net.modules() if isinstance(m, QConv)}
    assert flags == {3: True, 1: False}
    (l32, g32), (l16, g16) = results
    assert l16 != l32 and abs(l16 - l32) < 1e-3 * l32
    assert float(torch.nn.functional.cosine_similarity(g16, g32, 0)) > 0.999
    out = tmp_path / "run"
    train.main([str(folder), "--out", str(out), "--steps", "2", "--batch", "2", "--crop", "16", "--channels", "8",
                "--qat-from", "0", "--bf16", "--quiet", "--log-every", "1"])
    assert json.loads((out / "log.jsonl").read_text().splitlines()[-1])["step"] == 2

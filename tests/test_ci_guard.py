"""Tests for benchmarks/ci_guard.py on a tiny input set (two 16 x 16 crops, seconds).

Every baseline here is recorded into tmp_path; the committed benchmarks/ci_baseline.json
is never read or written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

# benchmarks/ is not an installed package: make the repo root importable under plain `pytest`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import ci_guard  # noqa: E402

IMAGES = ("astronaut", "camera")      # one RGB, one gray
CROP = 16
TINY = {"images": IMAGES, "crop": CROP}
TINY_ARGS = ["--images", ",".join(IMAGES), "--crop", str(CROP)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, ci_guard.GuardResult]:
    """A baseline recorded at the default step budget on the tiny set."""
    path = tmp_path_factory.mktemp("guard") / "baseline.json"
    result = ci_guard.run_guard(None, path, record=True, **TINY)
    assert result.ok, result.failures
    return path, result


def _copy_baseline(src: Path, dst: Path, **changes) -> Path:
    data = json.loads(src.read_text()) | changes
    dst.write_text(json.dumps(data))
    return dst


def test_record_writes_baseline(recorded):
    path, result = recorded
    data = json.loads(path.read_text())
    assert data["steps"] == ci_guard.DEFAULT_STEPS
    assert data["model"] == result.model and len(data["model_sha256"]) == 64
    assert data["crop"] == ci_guard.crop_spec(IMAGES, CROP)
    assert data["bpsp"] == pytest.approx(result.bpsp, abs=1e-6)
    assert data["bpsp"] == pytest.approx(data["total_bits"] / data["subpixels"], abs=1e-6)
    assert data["subpixels"] == 16 * 16 * 3 + 16 * 16 * 1
    assert data["tolerance"] == ci_guard.DEFAULT_TOLERANCE
    assert data["date"] and data["git_revision"]
    assert not list(path.parent.glob("*.tmp"))      # the temporary file was renamed into place


def test_passes_against_own_record(recorded):
    path, rec = recorded
    result = ci_guard.run_guard(None, path, references=(), **TINY)
    assert result.ok, result.failures
    assert result.bpsp == rec.bpsp                   # exact integer network: identical files
    assert result.limit_bpsp == pytest.approx(rec.bpsp * (1 + ci_guard.DEFAULT_TOLERANCE))
    assert all(r["ok"] for r in result.rows)


def test_main_passes_and_prints_table(recorded, capsys):
    path, _ = recorded
    assert ci_guard.main([*TINY_ARGS, "--baseline", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| astronaut | 16×16×3 |" in out and "| camera | 16×16×1 |" in out
    assert "webp bpsp" in out                        # reference codecs beside ardmzip
    assert "ci_guard: PASS" in out


def test_fewer_steps_trip_the_guard(recorded, capsys):
    path, rec = recorded
    result = ci_guard.run_guard(1, path, references=(), **TINY)
    assert not result.ok
    assert result.bpsp > rec.bpsp * 1.1
    assert any("compression regressed" in f for f in result.failures)
    assert all(r["ok"] for r in result.rows)        # still exact: only the bpsp fails
    assert ci_guard.main([*TINY_ARGS, "--baseline", str(path), "--steps", "1"]) == 1
    assert "compression regressed" in capsys.readouterr().err


def test_tolerance_is_the_recorded_one(recorded, tmp_path):
    path, rec = recorded
    # Pretend the recorded figure was 0.4 % better: still within 0.5 %, but not within 0.1 %.
    better = rec.bpsp / 1.004
    loose = _copy_baseline(path, tmp_path / "loose.json", bpsp=better)
    tight = _copy_baseline(path, tmp_path / "tight.json", bpsp=better, tolerance=0.001)
    assert ci_guard.run_guard(None, loose, references=(), **TINY).ok
    assert not ci_guard.run_guard(None, tight, references=(), **TINY).ok


def test_other_model_hash_asks_to_rerecord(recorded, tmp_path, capsys):
    path, _ = recorded
    other = _copy_baseline(path, tmp_path / "other.json", model_sha256="0" * 64)
    result = ci_guard.run_guard(None, other, references=(), **TINY)
    assert not result.ok
    assert len(result.failures) == 1 and "re-record" in result.failures[0]
    assert "--record" in result.failures[0]
    assert ci_guard.main([*TINY_ARGS, "--baseline", str(other)]) == 1
    assert "re-record" in capsys.readouterr().err


def test_other_crops_ask_to_rerecord(recorded):
    path, _ = recorded
    result = ci_guard.run_guard(None, path, images=IMAGES, crop=CROP - 4, references=())
    assert not result.ok and "re-record" in result.failures[0]


def test_missing_baseline_fails(tmp_path):
    result = ci_guard.run_guard(None, tmp_path / "none.json", images=("camera",), crop=8, references=())
    assert not result.ok and "--record" in result.failures[0]


def _corrupting(real):
    def decompress(data, **kwargs):
        pixels = np.array(real(data, **kwargs))
        pixels[0, 0, 0] ^= 1
        return pixels
    return decompress


def test_inexact_roundtrip_is_reported(recorded, monkeypatch, capsys):
    path, _ = recorded
    monkeypatch.setattr(ci_guard, "decompress", _corrupting(ci_guard.decompress))
    result = ci_guard.run_guard(None, path, references=(), **TINY)
    assert not result.ok
    assert result.inexact == list(IMAGES)
    assert all("NOT exact" in f for f in result.failures[:2])
    assert ci_guard.main([*TINY_ARGS, "--baseline", str(path)]) == 1
    captured = capsys.readouterr()
    assert "NOT exact" in captured.err and "ci_guard: FAIL" in captured.out


def test_record_refuses_inexact(monkeypatch, tmp_path):
    monkeypatch.setattr(ci_guard, "decompress", _corrupting(ci_guard.decompress))
    path = tmp_path / "baseline.json"
    result = ci_guard.run_guard(None, path, record=True, images=("camera",), crop=8, references=())
    assert not result.ok and not path.exists()
    assert any("NOT recorded" in f for f in result.failures)

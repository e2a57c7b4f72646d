"""A large image: bounded memory through strips, exact across strip boundaries."""
from __future__ import annotations

import numpy as np
import pytest

import ardmzip


@pytest.mark.slow
def test_2000x1500_roundtrip():
    """3 megapixels of gray (the trunk runs in several strips; ~1.5 min on 2 cores)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1500, 0:2000]
    a = (128 + 100 * np.sin(x / 50.0) * np.cos(y / 70.0) + rng.normal(0, 4, x.shape)).clip(0, 255).astype(np.uint8)
    data = ardmzip.compress(a, steps=1)
    assert np.array_equal(ardmzip.decompress(data), a)             # gray: (H, W) in, (H, W) out
    assert len(data) < a.size                      # it does compress

"""The step schedule: a valid partition, optimal where we can check, fast for huge D."""
from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from ardmzip import weights
from ardmzip.schedule import curve_at, monotone_curve, schedule

FALLING = np.array([8000, 6000, 5000, 4500, 4200, 4000, 3900, 3800, 3700], dtype=np.int64)


def brute_force(d: int, k: int, curve: np.ndarray) -> int:
    """Cheapest cost over every partition of d variables into exactly k steps."""
    c = monotone_curve(curve)
    unit = curve_at(c, np.arange(d + 1, dtype=np.int64), d)
    best = None
    for cuts in itertools.combinations(range(1, d), k - 1):
        b = (0, *cuts, d)
        cost = sum((b[i + 1] - b[i]) * int(unit[b[i]]) for i in range(k))
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("d,k", [(1, 1), (5, 2), (9, 3), (12, 4), (14, 5)])
def test_dp_is_optimal_on_small_problems(d, k):
    bounds, cost = schedule(d, k, FALLING)
    assert bounds[0] == 0 and bounds[-1] == d and len(bounds) == k + 1
    assert cost == brute_force(d, k, FALLING)


def test_more_steps_never_cost_more():
    costs = [schedule(3000, k, FALLING)[1] for k in (1, 2, 4, 8, 16, 64)]
    assert all(a >= b for a, b in zip(costs, costs[1:]))
    assert costs[0] == 3000 * FALLING[0]                 # one step: everything at L(0)


def test_steps_beyond_d_give_one_variable_per_step():
    bounds, _ = schedule(7, 100, FALLING)
    assert bounds.tolist() == list(range(8))


def test_first_steps_are_small_when_the_curve_falls():
    bounds, _ = schedule(10**6, 16, weights.load().curve)
    sizes = np.diff(bounds)
    assert sizes[0] < sizes[-1]


def test_scales_to_a_36_megapixel_image():
    t = time.perf_counter()
    bounds, cost = schedule(36_000_000, 64, weights.load().curve)
    assert time.perf_counter() - t < 20            # generous: ~0.1 s on 2 cores
    assert bounds[-1] == 36_000_000 and np.all(np.diff(bounds) > 0) and cost > 0


def test_deterministic():
    a = schedule(123_457, 32, FALLING)
    b = schedule(123_457, 32, FALLING.copy())
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def test_rejects_empty():
    with pytest.raises(ValueError):
        schedule(0, 4, FALLING)

"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run torch on one thread in-process. Small images gain nothing from threads, and on a
    small, busy CPU torch's spinning worker threads make each tiny call much slower; the
    integer network gives identical output either way (threading is tested on its own).
    Files opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

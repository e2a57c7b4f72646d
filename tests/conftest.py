"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from ardmzip.cli import main


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


@pytest.fixture
def runner() -> CliRunner:
    """click's test runner with stderr apart from stdout (the CLI tests read both)."""
    try:
        return CliRunner(mix_stderr=False)          # click 8.1
    except TypeError:
        return CliRunner()                          # click >= 8.2: stderr kept apart always


@pytest.fixture
def invoke(runner):
    """invoke(*args, input=bytes) runs the ardmzip CLI in-process and returns click's Result."""
    def _invoke(*args, input: bytes | None = None):
        return runner.invoke(main, [str(a) for a in args], input=input)
    return _invoke

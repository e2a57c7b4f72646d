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


@pytest.fixture(autouse=True, scope="module")
def one_default_model(request):
    """Most tests were written for one default model: they compare an archive's members with
    single files, or files with fixtures. ``model="auto"`` (the default) chooses per picture
    (an archive: once, from a sample), so here it has one candidate, xic-s48, and chooses
    nothing (no estimates: also faster). Modules that test the choice itself (test_choose.py,
    and those marked ``auto_model``) see all the candidates. Module-scoped, so that the
    module-scoped fixtures that code pictures see the same candidates as their tests."""
    if request.node.get_closest_marker("auto_model") or request.node.path.name == "test_choose.py":
        yield
        return
    from ardmzip import choose
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(choose, "CANDIDATES", choose.CANDIDATES[:1])
        mp.setattr(choose, "SMALL_CANDIDATES", choose.CANDIDATES[:1])
        yield

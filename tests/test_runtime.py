"""runtime.keep_freed_memory: applied where glibc is, harmless twice."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from ardmzip.runtime import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_applied_on_glibc_in_a_fresh_process():
    code = "from ardmzip.runtime import keep_freed_memory as k; import sys; sys.exit(0 if k() and k() else 1)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_returns_a_bool():
    assert isinstance(keep_freed_memory(), bool)

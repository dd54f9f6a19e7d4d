"""Host tools the tests need, with one policy for a missing one: under CI (CI=true) the test
fails, since the suite must really run there; elsewhere it is skipped, saying what to install."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(message: str) -> None:
    """Fail under CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"test prerequisites missing in CI: {message}", pytrace=False)
    pytest.skip(message)


def require_tool(tool: str, *, debian: str) -> str:
    """The absolute path of `tool`; missing, it fails the test under CI and skips it elsewhere."""
    found = shutil.which(tool)
    if found is None:
        unavailable(f"{tool} is not installed (Debian/Ubuntu: apt-get install {debian})")
        raise AssertionError("unreachable")  # pytest.fail/skip raise
    return found


def require_file(path: str, *, debian: str) -> str:
    if not os.path.exists(path):
        unavailable(f"{path} is missing (Debian/Ubuntu: apt-get install {debian})")
    return path

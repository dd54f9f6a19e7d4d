"""Each module imports on its own, first, in a fresh interpreter: no import cycle hides behind
the order in which other modules happen to be imported (pipx's test_imports, for every module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import podman_emu

PACKAGE = Path(podman_emu.__file__).resolve().parent


def modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("module", modules())
def test_each_module_imports_first(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

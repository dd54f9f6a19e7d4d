"""The fixture configs in fixtures/configs/ (one per podman version and host; see its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures" / "configs"


def manifest() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((FIXTURES / "manifest.json").read_text())
    return entries


def fixture_files() -> list[str]:
    return [entry["file"] for entry in manifest()]


def load_fixture(name: str) -> dict[str, Any]:
    content: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return content


def qmp_path(content: dict[str, Any]) -> str:
    address = content["QMPMonitor"]["Address"]
    return str(address if isinstance(address, str) else address["Path"])


def image_path_of(content: dict[str, Any]) -> str:
    """The disk a config names, read the way podman's two layouts store it (kept here, apart from
    podman_emu's own reader, so a test can check that reader)."""
    value = content["ImagePath"]
    return str(value if isinstance(value, str) else value["Path"])

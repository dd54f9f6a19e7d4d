"""The fixture configs in fixtures/configs/ (one per podman version and host; see its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures" / "configs"


def all_entries() -> list[dict[str, Any]]:
    """Every fixture, whatever podman-emu does with it (`expect`: "convert", "native-arm64" =
    refused because the machine already runs arm64 natively, "no-route" = a podman 5.x machine)."""
    entries: list[dict[str, Any]] = json.loads((FIXTURES / "manifest.json").read_text())
    return entries


def manifest() -> list[dict[str, Any]]:
    """The fixtures podman-emu converts (the x86_64 machines of podman 3.3 – 4.9)."""
    return entries_expecting("convert")


def entries_expecting(expect: str) -> list[dict[str, Any]]:
    return [entry for entry in all_entries() if entry["expect"] == expect]


def fixture_files() -> list[str]:
    """The files of the fixtures podman-emu converts."""
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

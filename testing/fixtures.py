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
    monitor = content["QEMUHypervisor"]["QMPMonitor"] if "QEMUHypervisor" in content else content["QMPMonitor"]
    address = monitor["Address"]
    return str(address if isinstance(address, str) else address["Path"])


def home_of(content: dict[str, Any]) -> str:
    """The home of the user the fixture was made for, from its ssh key: ~/.ssh/NAME in 4.x,
    ~/.local/share/containers/podman/machine/machine in 5.x."""
    if "SSH" in content:
        return str(Path(content["SSH"]["IdentityPath"]).parents[5])
    return str(Path(content["IdentityPath"]).parent.parent)


def image_path_of(content: dict[str, Any]) -> str:
    """The disk a config names, read the way podman's two layouts store it (kept here, apart from
    podman_emu's own reader, so a test can check that reader)."""
    value = content["ImagePath"]
    return str(value if isinstance(value, str) else value["Path"])


def runs_aarch64(content: dict[str, Any]) -> bool:
    """Is this config converted, read as a test reads it (not with podman-emu's own reader)? A
    4.x CmdLine starts qemu-system-aarch64; podman 5 stores no command line, and its disk is the
    aarch64 one convert put at ImagePath."""
    if "CmdLine" in content:
        return str(content["CmdLine"][0]).endswith("qemu-system-aarch64")
    return Path(image_path_of(content)).name.endswith("_aarch64.qcow2")

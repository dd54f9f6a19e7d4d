"""Which podman layout a config has, decided from its keys and their types (4.x files carry no
version number). Free of pydantic, so a listing of configs it has validated before stays fast."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

from podman_emu.errors import ConfigInvalid, UnsupportedLayout


class Layout(enum.Enum):
    V1 = "v1"  # podman 3.4 / 4.0
    V2 = "v2"  # podman 4.1 – 4.9


def guess_podman_version(content: dict[str, Any], layout: Layout) -> str:
    """The oldest podman release line that writes exactly these keys (files carry no version)."""
    if layout is Layout.V1:
        return "4.0" if "Mounts" in content or "Rootful" in content else "3.4"
    if "USBs" in content:
        return "4.8+"
    if "HostUserModified" in content:
        return "4.6+"
    if "VMPidFilePath" in content:
        return "4.2+"
    return "4.1"


def detect_layout(path: Path, content: dict[str, Any]) -> Layout:
    version = content.get("Version")
    if isinstance(version, int) and not isinstance(version, bool) and version >= 1:
        raise UnsupportedLayout(
            f'{path}: this is a podman 5.x machine config ("Version": {version})',
            hint="podman 5 stores no qemu command line: it rebuilds it from compiled-in options at "
            "every start (and on macOS it has no qemu provider at all), so there is nothing to "
            "convert. Use podman 4.9 with its qemu provider for an emulated aarch64 machine.",
        )
    # ConfigPath exists only in the 4.1+ layout, so it decides even when ImagePath has a wrong type.
    image_path = content.get("ImagePath")
    if "ConfigPath" in content or isinstance(image_path, dict):
        return Layout.V2
    if isinstance(image_path, str):
        return Layout.V1
    from podman_emu.models import refuse_case_variants

    refuse_case_variants(path, content)
    raise ConfigInvalid(
        f'{path}: not a podman machine config: no "ImagePath" key (string for podman 3.4/4.0, '
        f"object for 4.1–4.9), found keys {sorted(content)[:8]}",
        hint="podman-emu reads the qemu machine configs in containers/podman/machine/qemu/.",
    )

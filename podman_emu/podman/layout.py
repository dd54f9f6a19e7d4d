"""Which podman layout a config has, decided from its keys and their types (4.x files carry no
version number), and the key names podman reads. Free of pydantic, so a listing of configs it
has validated before stays fast."""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from podman_emu.errors import ConfigInvalid
from podman_emu.podman.podman5 import PROVIDER_KEYS, is_convertible_podman5, provider_of, refuse_podman5


class Layout(enum.Enum):
    V1 = "v1"  # podman 3.3 / 3.4 / 4.0
    V2 = "v2"  # podman 4.1 – 4.9
    V5 = "v5"  # podman 5.x, qemu provider (Linux): one MachineConfig, no command line


# Every key of podman's MachineVMV1 and MachineVM structs, as podman spells them. The schema's
# models declare the same fields (a test keeps the two equal).
PODMAN_KEYS = frozenset(
    {
        "CmdLine", "Name", "CPUs", "Memory", "DiskSize", "IdentityPath", "Port", "RemoteUsername",
        "ImageStream", "IgnitionFilePath", "ImagePath", "QMPMonitor", "Mounts", "Rootful", "UID",
        "ConfigPath", "HostUserModified", "PidFilePath", "VMPidFilePath", "ReadySocket", "USBs",
        "Starting", "Created", "LastUp",
    }
)  # fmt: skip
# The top-level keys of podman 5's MachineConfig for a qemu machine (v5.8.2 vmconfigs/config.go).
PODMAN5_KEYS = frozenset(
    {
        "Created", "GvProxy", "HostUser", "LastUp", "Mounts", "Name", "Resources", "SSH", "Version",
        "Swap", "ImagePath", "QEMUHypervisor", "Starting", "Rosetta", "Ansible",
    }
)  # fmt: skip


def guess_podman_version(content: Mapping[str, Any], layout: Layout) -> str:
    """The oldest podman release line that writes exactly these keys (files carry no version)."""
    if layout is Layout.V5:
        if "Swap" in content:
            return "5.6+"
        mounts = content.get("Mounts") or []
        # virtiofs replaced 9p in 5.2.0 (commit bf541c6740).
        return "5.2+" if any(isinstance(m, dict) and m.get("Type") == "virtiofs" for m in mounts) else "5.x"
    if layout is Layout.V1:
        if "Mounts" in content or "Rootful" in content:
            return "4.0"
        if "DiskSize" not in content:
            return "3.3"
        return "3.4" if "ImageStream" in content else "3.4.0-3.4.4"
    if "USBs" in content:
        return "4.8+"
    if "HostUserModified" in content:
        return "4.6+"
    if "VMPidFilePath" in content:
        return "4.2+"
    return "4.1"


# Go's encoding/json matches keys with Unicode simple folding, where two non-ASCII letters fold
# with ASCII ones: U+017F (long s) with s, U+212A (Kelvin sign) with k.
_GO_FOLDS_TO_ASCII = str.maketrans({"\u017f": "s", "\u212a": "k"})


def go_fold(key: str) -> str:
    """A key as Go's encoding/json compares it with the fields of a struct of ASCII names."""
    return key.translate(_GO_FOLDS_TO_ASCII).lower()


def refuse_case_variants(path: Path, content: Mapping[str, Any], keys: frozenset[str] = PODMAN_KEYS) -> None:
    # Go matches keys case-insensitively, so podman reads "cmdline" (or "ſtarting") as CmdLine
    # (Starting); podman-emu edits and reads keys by name and would miss it, so it asks for
    # podman's own spelling instead of guessing.
    canonical = {go_fold(key): key for key in keys}
    for key in content:
        proper = canonical.get(go_fold(key))
        if proper is not None and proper != key:
            # With both spellings present podman uses the later one, which podman-emu would not edit.
            also = f" (and {proper!r} is there too: podman reads whichever comes last)" if proper in content else ""
            raise ConfigInvalid(
                f"{path}: key {key!r} is spelled differently from podman's {proper!r}{also}",
                hint=f"podman accepts it, but podman-emu only edits podman's own spelling; rename the "
                f"key to {proper!r} (or run `podman machine set` once, which rewrites the file).",
            )


_DAMAGED_PODMAN5_HINT = "podman 5 cannot load this file either. Restore it from a backup or recreate the machine."


def detect_layout(path: Path, content: Mapping[str, Any]) -> Layout:
    version = content.get("Version")
    if isinstance(version, int) and not isinstance(version, bool) and version >= 1:
        # "qemuhypervisor" is podman's QEMUHypervisor to Go: named, not mistaken for no provider.
        refuse_case_variants(path, content, PODMAN5_KEYS)
        for key in PROVIDER_KEYS:
            if content.get(key) is not None and not isinstance(content[key], dict):
                raise ConfigInvalid(
                    f"{path}: key {key!r}: podman 5 writes an object here, found {content[key]!r:.60}",
                    hint=_DAMAGED_PODMAN5_HINT,
                )
        if not is_convertible_podman5(content):
            refuse_podman5(path, content)
        return Layout.V5
    # podman 4.x writes no Version; a 5.x file (a provider's section, no command line) without a
    # valid one would otherwise be judged by the 4.x models, whose errors name the wrong keys.
    if "Version" in content or (provider_of(content) is not None and "CmdLine" not in content):
        refuse_case_variants(path, content, PODMAN5_KEYS)  # Go would read "version" as Version
        found = f"found {version!r}" if "Version" in content else "it is missing"
        raise ConfigInvalid(
            f'{path}: a podman 5.x machine config whose key "Version" is not the number podman 5 writes (1): {found}',
            hint=_DAMAGED_PODMAN5_HINT,
        )
    # ConfigPath exists only in the 4.1+ layout, so it decides even when ImagePath has a wrong type.
    image_path = content.get("ImagePath")
    if "ConfigPath" in content or isinstance(image_path, dict):
        return Layout.V2
    if isinstance(image_path, str):
        return Layout.V1
    refuse_case_variants(path, content)
    raise ConfigInvalid(
        f'{path}: not a podman machine config: no "ImagePath" key (string for podman 3.4/4.0, '
        f"object for 4.1–4.9), found keys {sorted(content)[:8]}",
        hint="podman-emu reads the qemu machine configs in containers/podman/machine/qemu/.",
    )


def path_value(value: Any) -> str:
    """A path field of a validated config: a plain string in V1, `{"Path": …}` in V2."""
    return str(value["Path"] if isinstance(value, dict) else value)


def image_path(content: Mapping[str, Any]) -> str:
    """The machine's disk (ImagePath) in a validated config of either layout."""
    return path_value(content["ImagePath"])


def with_image_path(content: Mapping[str, Any], path: str) -> dict[str, Any]:
    """A copy of `content` whose ImagePath is `path`, in the layout's own shape."""
    updated = copy.deepcopy(dict(content))
    if isinstance(updated["ImagePath"], dict):
        updated["ImagePath"]["Path"] = path
    else:
        updated["ImagePath"] = path
    return updated

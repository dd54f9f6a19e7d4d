"""The qemu command a machine runs with, for the read commands and revert: a podman 4.x machine's
stored CmdLine; for podman 5 (no stored command) the one podman builds at start, as podman-emu's
qemu wrapper rewrites it for a registered emulated machine. Kept light: `list` imports it."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from podman_emu.conversion.artifacts import is_emulated
from podman_emu.conversion.helper_registry import RegisteredMachine, RegistryDamaged, read_registry
from podman_emu.errors import ConfigInvalid
from podman_emu.podman.layout import Layout
from podman_emu.podman.machines import ListedMachine, LoadedMachine
from podman_emu.podman.podman5 import podman5_argv


def registration(config_path: Path) -> RegisteredMachine | None:
    """The machine's entry in the registry; None also when the registry cannot be trusted (the
    read commands then show podman's own argv, and `doctor` names the damage)."""
    with contextlib.suppress(RegistryDamaged):
        registry = read_registry()
        return next((m for m in registry.machines if m.config_path == str(config_path)), None) if registry else None
    return None


def routed_argv(config_path: Path, content: Mapping[str, Any]) -> list[str] | None:
    """What podman-emu's qemu wrapper runs a podman 5 machine with at its next start; None when
    the wrapper would hand it to the real qemu (not registered, or its disk is native again)."""
    if not is_emulated(content):
        return None
    entry = registration(config_path)
    if entry is None or entry.qemu_route is None:
        return None
    # Here, not at the top: `list` of 4.x machines never needs the rewrite.
    from podman_emu.conversion.rewrite import rewrite_routed_argv

    try:
        return rewrite_routed_argv(podman5_argv(content), entry.qemu_route, entry.console_log)
    except ConfigInvalid:
        return None


def machine_argv(machine: LoadedMachine | ListedMachine) -> list[str]:
    """The qemu command a machine runs with (see the module docstring)."""
    if machine.layout is not Layout.V5:
        return list(machine.config.CmdLine)
    return routed_argv(machine.config_path, machine.document.content) or list(machine.config.CmdLine)

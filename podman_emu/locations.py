"""The single place that knows where things live.

Podman's own files are found exactly the way podman finds them: XDG variables first, then the
home-relative defaults, on macOS too (podman never uses ~/Library). platformdirs is used only for
podman-emu's own state and cache, which are ours to place.
"""

from __future__ import annotations

import os
from pathlib import Path

PODMAN_MACHINE_SUBDIR = Path("containers", "podman", "machine", "qemu")
APP_NAME = "podman-emu"


def _xdg_dir(variable: str, home_relative: str) -> Path:
    # Podman (containers/storage homedir) ignores an empty variable, as the XDG spec says.
    value = os.environ.get(variable)
    if value:
        return Path(value)
    return Path.home() / home_relative


def podman_config_dir() -> Path:
    """Where podman 4.x keeps NAME.json, NAME.ign and NAME.lock."""
    return _xdg_dir("XDG_CONFIG_HOME", ".config") / PODMAN_MACHINE_SUBDIR


def podman_data_dir() -> Path:
    """Where podman 4.x keeps machine disks (and, on darwin/arm64, the UEFI vars file)."""
    return _xdg_dir("XDG_DATA_HOME", ".local/share") / PODMAN_MACHINE_SUBDIR


def state_dir() -> Path:
    """podman-emu's private state: conversion journals and console logs."""
    override = os.environ.get("PODMAN_EMU_STATE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_state_dir

    return Path(user_state_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """podman-emu's cache: qemu probe results and downloaded images."""
    override = os.environ.get("PODMAN_EMU_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP_NAME, appauthor=False))


def ensure_private_dir(path: Path) -> Path:
    """Create a directory that only the user can read (journals name every file of a machine)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path

"""The single place that knows where things live.

Podman's own files are found exactly the way podman finds them: XDG variables first, then the
home-relative defaults, on macOS too (podman never uses ~/Library). platformdirs is used only for
podman-emu's own state and cache, which are ours to place.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PODMAN_MACHINE_SUBDIR = Path("containers", "podman", "machine", "qemu")
# The config dirs of podman's other machine providers (podman 5.x macOS and Windows, and 4.x
# WSL/applehv): podman-emu converts none of them, but names a machine found there.
OTHER_PROVIDER_DIRS = ("applehv", "libkrun", "wsl", "hyperv")
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


def other_provider_config_dirs() -> list[Path]:
    return [podman_config_dir().parent / provider for provider in OTHER_PROVIDER_DIRS]


def podman_data_dir() -> Path:
    """Where podman 4.x keeps machine disks (and, on darwin/arm64, the UEFI vars file)."""
    return _xdg_dir("XDG_DATA_HOME", ".local/share") / PODMAN_MACHINE_SUBDIR


def state_dir() -> Path:
    """podman-emu's private state: conversion journals, console logs, the internal-error log."""
    override = os.environ.get("PODMAN_EMU_STATE_DIR")
    if override:
        # Absolute: the console log's path goes into the machine's CmdLine, and podman starts
        # qemu from whatever directory the user is in.
        return Path(os.path.abspath(override))
    # Imported here for start-up speed: with the override set (tests, CI) it is never needed.
    from platformdirs import user_state_dir

    return Path(user_state_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """podman-emu's cache: qemu probe results, configs validated before, downloaded images."""
    override = os.environ.get("PODMAN_EMU_CACHE_DIR")
    if override:
        return Path(os.path.abspath(override))
    # Imported here for start-up speed, as in state_dir.
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP_NAME, appauthor=False))


def machine_key(config_path: Path) -> str:
    """The name of a machine's own files in podman-emu's state (journal, console log). Two XDG
    setups can both hold a machine called NAME, so the key includes the config's path."""
    digest = hashlib.sha256(str(config_path.absolute()).encode()).hexdigest()[:12]
    return f"{config_path.stem}-{digest}"


def internal_error_log() -> Path:
    """Where the CLI's boundary writes the traceback of an unexpected error."""
    return state_dir() / "podman-emu.log"

"""What a conversion creates and how to recognise a converted machine: the console chardev, the
console log and journal of a machine in podman-emu's state dir, and whether an argv is emulated.

Both sides use these facts: conversion writes them, observe and report read them.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from podman_emu import paths
from podman_emu.qemu.argv import suboption

CONSOLE_CHARDEV_ID = "podman-emu-console"


def is_emulated(content: Mapping[str, Any]) -> bool:
    """Does this (validated) config run qemu-system-aarch64?"""
    return os.path.basename(str(content["CmdLine"][0])).startswith("qemu-system-aarch64")


def configured_console_log(argv: Sequence[str]) -> str | None:
    """The console log path in a machine's qemu command line, if podman-emu attached one."""
    for index, element in enumerate(argv[:-1]):
        if element == "-chardev" and suboption(argv[index + 1], "id") == CONSOLE_CHARDEV_ID:
            return suboption(argv[index + 1], "path")
    return None


def console_dir() -> Path:
    return paths.state_dir() / "consoles"


def console_log_path(config_path: Path) -> Path:
    return console_dir() / f"{paths.machine_key(config_path)}.log"


def rotated_path(log: Path) -> Path:
    """Where a console log moves when it grows too large (observe.console_log keeps it bounded)."""
    return log.with_name(log.name + ".1")


def console_log_names(log: Path) -> list[Path]:
    """Both files a console log may be, whether or not they exist: what revert removes."""
    return [log, rotated_path(log)]


def journal_dir() -> Path:
    return paths.state_dir() / "journals"


def journal_path(config_path: Path) -> Path:
    return journal_dir() / f"{paths.machine_key(config_path)}.json"


def kept_disk_name(machine: str, container: str) -> str:
    """The aarch64 disk's file name beside the native one; a plain revert keeps it."""
    return f"{machine}_aarch64.{container}"


def kept_disk_hint(machine: str, disk: str) -> str:
    """The two ways on when a kept aarch64 disk is in the way: reuse it, or remove it."""
    quoted = shlex.quote(disk)
    return (
        "A plain `podman-emu revert` keeps the aarch64 disk, also after `podman machine rm`. "
        f"To use it again (its arch is checked and it is grown to DiskSize): "
        f"`podman-emu convert {shlex.quote(machine)} --image {quoted}`. "
        f"If you do not need it: `rm -- {quoted}`."
    )

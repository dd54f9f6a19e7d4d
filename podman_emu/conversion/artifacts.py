"""What a conversion creates and how to recognise a converted machine: the console chardev, the
console log and journal of a machine in podman-emu's state dir, and whether an argv is emulated.

Both sides use these facts: conversion writes them, observe and report read them.
"""

from __future__ import annotations

import os
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


def own_roots() -> list[Path]:
    """Where podman-emu may create or delete files: podman's machine dirs and its own state."""
    return [paths.podman_data_dir(), paths.podman_config_dir(), paths.state_dir()]


def within(path: str, roots: Sequence[Path]) -> bool:
    """Is `path` a plain name inside one of `roots`, as the file system resolves it? A `..` or
    a symlink on the way may lead anywhere, so the parent is resolved and `..` refused."""
    if not os.path.isabs(path) or ".." in Path(path).parts or "\x00" in path:
        return False
    parent = os.path.realpath(os.path.dirname(path))
    return any(parent == (top := os.path.realpath(root)) or parent.startswith(top + os.sep) for root in roots)


def removable(path: str, in_use: set[str]) -> bool:
    """May podman-emu delete `path`, a file its journal names? Only inside its own roots, and
    never one a current machine config names (see podman.machines.referenced_paths)."""
    if not within(path, own_roots()) or (os.path.isdir(path) and not os.path.islink(path)):
        return False
    return not {os.path.normpath(path), os.path.realpath(path)} & in_use

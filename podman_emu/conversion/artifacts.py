"""What a conversion creates and how to recognise a converted machine: the console chardev, the
console log and journal of a machine in podman-emu's state dir, and whether an argv is emulated.

Both sides use these facts: conversion writes them, observe and report read them.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from podman_emu import paths
from podman_emu.errors import ConversionStateError
from podman_emu.qemu.argv import HOST_ACCELERATORS, accelerators, suboption

CONSOLE_CHARDEV_ID = "podman-emu-console"

# native: the host's own arch (x86_64 here); native-arm64: qemu-system-aarch64 on a host
# accelerator (an Apple-silicon Mac); emulated: qemu-system-aarch64 under TCG only.
MachineKind = Literal["native", "native-arm64", "emulated"]


def machine_kind(content: Mapping[str, Any]) -> MachineKind:
    """What a (validated) config's argv does. The binary's name alone is not enough: podman on an
    Apple-silicon Mac writes qemu-system-aarch64 too, with `-accel hvf -accel tcg`, where TCG is
    only the fallback of a native machine.

    A podman 5 config stores no argv: what runs is decided at each start by podman-emu's qemu
    wrapper, for the machine whose disk a conversion replaced (ImagePath = NAME_aarch64.*, the
    one key a 5.x conversion writes); an arm64 host's 5.x machine never gets here (refused)."""
    if "CmdLine" not in content:
        disk = os.path.basename(str(content["ImagePath"]["Path"]))
        name = str(content["Name"])
        return "emulated" if disk in (kept_disk_name(name, "qcow2"), kept_disk_name(name, "raw")) else "native"
    argv = [str(element) for element in content["CmdLine"]]
    if not os.path.basename(argv[0]).startswith("qemu-system-aarch64"):
        return "native"
    if any(accel in HOST_ACCELERATORS for accel in accelerators(argv)):
        return "native-arm64"
    return "emulated"


def is_emulated(content: Mapping[str, Any]) -> bool:
    """Does this (validated) config run qemu-system-aarch64 under TCG, as a converted machine does?"""
    return machine_kind(content) == "emulated"


def native_arm64_explanation(name: str, argv: Sequence[str]) -> str:
    host = next(accel for accel in accelerators(argv) if accel in HOST_ACCELERATORS)
    return (
        f"{name!r} is a native arm64 machine ({os.path.basename(argv[0])} on the host accelerator {host}): "
        "arm64 containers already run natively in it, so there is nothing to convert (or revert)"
    )


def refuse_native_arm64(content: Mapping[str, Any]) -> None:
    if machine_kind(content) != "native-arm64":
        return
    raise ConversionStateError(
        "machine " + native_arm64_explanation(str(content["Name"]), content["CmdLine"]),
        hint="Nothing was changed. Run arm64 containers in it as they are (`podman run --rm "
        "docker.io/library/alpine uname -m` prints aarch64); podman-emu is for x86_64 hosts, whose "
        "machines cannot run an arm64 guest natively.",
    )


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

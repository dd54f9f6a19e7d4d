"""The argv translation: a native podman qemu command line -> the emulated aarch64 one.

A pure function of (argv, profile, firmware options, paths): `convert` applies it to the argv
podman stored, and a run-time wrapper can apply it to an argv podman builds at every start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from podman_emu.conversion.artifacts import CONSOLE_CHARDEV_ID
from podman_emu.conversion.helper_registry import QemuRoute
from podman_emu.errors import ConfigInvalid
from podman_emu.host.cpu_profile import TcgProfile
from podman_emu.qemu.argv import (
    canonical_name,
    escape_value,
    iter_options,
    machine_options,
    replace_suboption,
    suboption,
)

DiskContainer = Literal["qcow2", "raw"]

# Host-accelerator and machine options of every podman 4.x host build (addArchOptions in podman
# v4.9.5 pkg/machine/qemu/options_*.go): none of them is valid for an aarch64 guest under TCG on
# x86_64, and each is replaced by the profile.
ARCH_OPTIONS = frozenset({"-accel", "-cpu", "-M", "-bios", "-enable-kvm"})
# A machine property that is not about the host: podman 5.2+ puts guest RAM in a shared memfd
# (`-M memory-backend=mem`) because virtiofsd maps it, so it moves into the aarch64 `-M`.
KEPT_MACHINE_PROPERTIES = ("memory-backend",)
PROXY_FW_CFG_PREFIX = "name=opt/com.coreos/environment,"
PODMAN_DRIVE_PREFIX = "if=virtio,file="


@dataclass(frozen=True)
class Rewritten:
    argv: list[str]
    notes: list[str]


def console_arguments(console_log: str) -> list[str]:
    # The PL011 UART, never a virtio console: the guest's ready unit hard-codes /dev/vport1p1,
    # so one more virtio device would break podman's start handshake. append=on keeps earlier boots.
    return [
        "-chardev",
        f"file,id={CONSOLE_CHARDEV_ID},path={escape_value(console_log)},append=on",
        "-serial",
        f"chardev:{CONSOLE_CHARDEV_ID}",
    ]


def _is_console_option(name: str, value: str | None) -> bool:
    return (name == "-chardev" and value is not None and suboption(value, "id") == CONSOLE_CHARDEV_ID) or (
        name == "-serial"
    )


def _with_machine_properties(arguments: list[str], properties: Sequence[str]) -> list[str]:
    if not properties:
        return arguments
    at = arguments.index("-M") + 1
    return [
        *arguments[:at],
        ",".join([arguments[at], *(escape_value(item) for item in properties)]),
        *arguments[at + 1 :],
    ]


def rewrite_argv(
    argv: Sequence[str],
    *,
    qemu_binary: str,
    profile: TcgProfile,
    firmware_arguments: Sequence[str],
    console_log: str,
    disk_path: str,
    disk_container: DiskContainer,
) -> Rewritten:
    """The emulated argv and notes on what was dropped. Every option podman depends on stays in
    place: -m/-smp as separate elements (podman's `set` edits them by position), ignition
    -fw_cfg, -qmp, -netdev (fd=3 in 4.x, a unix stream in 5.x), the virtio-serial ready port,
    -pidfile, -virtfs, vhost-user-fs, USB; a shared memory backend stays the machine's."""
    notes: list[str] = []
    out: list[str] = [qemu_binary]
    insert_at: int | None = None
    fallback_insert: int | None = None
    disk_done = False
    kept_machine_properties: list[str] = []
    for option in machine_options(argv):
        name = canonical_name(option.name)
        value = option.value
        if name == "-M" and value is not None:
            kept_machine_properties += [
                f"{key}={found}" for key in KEPT_MACHINE_PROPERTIES if (found := suboption(value, key)) is not None
            ]
        if name in ARCH_OPTIONS or (name == "-drive" and value is not None and suboption(value, "if") == "pflash"):
            if insert_at is None:
                insert_at = len(out)
            notes.append(f"dropped {' '.join(option.elements())}")
            continue
        if name == "-fw_cfg" and value is not None and value.startswith(PROXY_FW_CFG_PREFIX):
            # Persisted by podman 4.0/4.1 by mistake; newer podman adds a fresh one at every start.
            notes.append("dropped a stale proxy -fw_cfg pair persisted by podman 4.0/4.1")
            continue
        if _is_console_option(name, value) or name in ("-display", "-boot"):
            notes.append(f"replaced {' '.join(option.elements())}")
            continue
        if name in ("-virtfs", "-drive") and fallback_insert is None:
            fallback_insert = len(out)
        if name == "-drive" and value is not None and not disk_done and suboption(value, "if") == "virtio":
            if suboption(value, "file") is None:
                raise ConfigInvalid(f"the machine's disk option has no file=: {value!r}")
            if value.startswith(PODMAN_DRIVE_PREFIX):
                # podman writes exactly this, with the path last and unescaped: everything after
                # file= is the path, commas included, so it is replaced whole.
                drive = PODMAN_DRIVE_PREFIX + escape_value(disk_path)
            else:
                drive = replace_suboption(value, "file", disk_path)
            # Explicit format: qemu refuses writes to sector 0 of a probed raw image.
            drive = (
                replace_suboption(drive, "format", disk_container)
                if suboption(drive, "format") is not None
                else f"{drive},format={disk_container}"
            )
            out += [option.name, drive]
            disk_done = True
            continue
        out += option.elements()
    if not disk_done:
        raise ConfigInvalid(
            "the machine's CmdLine has no `-drive if=virtio,file=…` for its disk",
            hint="podman-emu only converts the qemu command podman wrote; recreate the machine with "
            "`podman machine init`.",
        )
    arch_block = (
        _with_machine_properties(profile.arguments(), kept_machine_properties)
        + list(firmware_arguments)
        # edk2 waits ~5 s for a boot-menu key press on every start, most of the firmware's time
        # under TCG (benchmarks/boot.py: 6 s -> 0.9 s); a podman machine has no keyboard anyway.
        + ["-boot", "menu=on,splash-time=0"]
        + console_arguments(console_log)
        # Podman adds -display none at start, except with --log-level debug, where a headless
        # host then fails with "gtk initialization failed". A duplicate is harmless.
        + ["-display", "none"]
    )
    position = insert_at if insert_at is not None else fallback_insert if fallback_insert is not None else len(out)
    return Rewritten(out[:position] + arch_block + out[position:], notes)


def podman_disk(argv: Sequence[str]) -> str | None:
    """The boot disk in a podman 5 argv (`-drive if=virtio,file=<ImagePath>`, the path last and
    unescaped, as podman writes it)."""
    for option in iter_options(argv):
        value = option.value or ""
        if canonical_name(option.name) == "-drive" and suboption(value, "if") == "virtio":
            return (
                value[len(PODMAN_DRIVE_PREFIX) :] if value.startswith(PODMAN_DRIVE_PREFIX) else suboption(value, "file")
            )
    return None


def rewrite_routed_argv(argv: Sequence[str], route: QemuRoute, console_log: str) -> list[str]:
    """The aarch64 argv for a podman 5 start: what the qemu wrapper execs and what `convert` and
    the read commands show, from the argv podman builds and the route chosen at convert."""
    disk = podman_disk(argv)
    if disk is None:
        raise ConfigInvalid("podman's qemu command has no `-drive if=virtio,file=…` for the machine's disk")
    return rewrite_argv(
        argv,
        qemu_binary=route.qemu_binary,
        profile=TcgProfile(route.cpu, route.accel, route.machine, "chosen at convert"),
        firmware_arguments=route.firmware_arguments,
        console_log=console_log,
        disk_path=disk,
        disk_container="raw" if route.disk_container == "raw" else "qcow2",
    ).argv

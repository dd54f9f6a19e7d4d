"""Pure planning: (document, host facts, options) -> a JSON Patch plus the files to create.

Nothing here touches the file system, so every layout and edge case is a fast unit test and
`--dry-run` shows exactly what `apply` will do.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonpatch

from podman_emu.errors import ConfigInvalid, ConversionStateError
from podman_emu.layouts import Layout
from podman_emu.profile import Profile
from podman_emu.qemu.argv import (
    ArgvSyntaxError,
    canonical_name,
    escape_value,
    first_value,
    iter_options,
    replace_suboption,
    suboption,
)
from podman_emu.qemu.firmware import Firmware

JsonObject = dict[str, Any]
DiskContainer = Literal["qcow2", "raw"]

# Host-accelerator and machine options of every podman 4.x host build (reference §3.2): none of
# them is valid for an aarch64 guest under TCG on x86_64, and each is replaced by the profile.
ARCH_OPTIONS = frozenset({"-accel", "-cpu", "-M", "-bios", "-enable-kvm"})
CONSOLE_CHARDEV_ID = "podman-emu-console"
PROXY_FW_CFG_PREFIX = "name=opt/com.coreos/environment,"
PODMAN_DRIVE_PREFIX = "if=virtio,file="


@dataclass(frozen=True)
class FileAction:
    """A file apply creates (and revert removes)."""

    role: Literal["vars", "disk", "console"]
    destination: str
    source: str | None = None  # vars template or disk image; None = blank vars / qemu-created log
    detail: str = ""


@dataclass(frozen=True)
class ConversionOptions:
    qemu_binary: str
    profile: Profile
    firmware: Firmware
    disk_source: str
    disk_container: DiskContainer
    console_log: str


@dataclass
class Plan:
    kind: Literal["convert", "revert"]
    machine: str
    before: JsonObject
    after: JsonObject
    files: list[FileAction] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def patch(self) -> list[JsonObject]:
        operations: list[JsonObject] = jsonpatch.make_patch(self.before, self.after).patch
        # Guard the patch with the values it was planned from, so it can never apply to a file
        # that has changed in between (RFC 6902 "test").
        guards = [
            {"op": "test", "path": f"/{key}", "value": self.before[key]}
            for key in ("CmdLine", "ImagePath")
            if key in self.before
        ]
        return guards + operations

    @property
    def argv_before(self) -> list[str]:
        return list(self.before["CmdLine"])

    @property
    def argv_after(self) -> list[str]:
        return list(self.after["CmdLine"])


def _image_path(content: JsonObject, layout: Layout) -> str:
    value = content["ImagePath"]
    return str(value if layout is Layout.V1 else value["Path"])


def _with_image_path(content: JsonObject, layout: Layout, path: str) -> JsonObject:
    updated = copy.deepcopy(content)
    if layout is Layout.V1:
        updated["ImagePath"] = path
    else:
        updated["ImagePath"]["Path"] = path
    return updated


def derived_paths(content: JsonObject, layout: Layout, disk_container: DiskContainer) -> tuple[str, str]:
    """Where the vars file and the aarch64 disk go: beside the native disk in podman's data dir,
    the vars file under the name podman itself uses on darwin/arm64."""
    name = content["Name"]
    image = _image_path(content, layout)
    # Both become file names: a relative ImagePath would put the new files in the current
    # directory, a Name with "/" outside podman's data dir, a NUL cannot be a path at all.
    if not os.path.isabs(image) or "\x00" in image:
        raise ConfigInvalid(
            f"ImagePath {image!r} is not an absolute path",
            hint="podman always stores an absolute path; restore the machine's config or recreate it.",
        )
    if "/" in name or "\x00" in name:
        raise ConfigInvalid(
            f"Name {name!r} cannot be part of a file name",
            hint="podman machine names never hold '/' or NUL; restore the machine's config or recreate it.",
        )
    image_dir = os.path.dirname(image)
    suffix = "qcow2" if disk_container == "qcow2" else "raw"
    return (
        os.path.join(image_dir, f"{name}_ovmf_vars.fd"),
        os.path.join(image_dir, f"{name}_aarch64.{suffix}"),
    )


def _firmware_arguments(firmware: Firmware, vars_path: str) -> list[str]:
    if firmware.bios:
        return ["-bios", firmware.code]
    code = f"if=pflash,format={firmware.code_format},unit=0,readonly=on,file={escape_value(firmware.code)}"
    variables = f"if=pflash,format={firmware.vars_format},unit=1,file={escape_value(vars_path)}"
    return ["-drive", code, "-drive", variables]


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


def rewrite_argv(
    argv: Sequence[str], options: ConversionOptions, vars_path: str, disk_path: str
) -> tuple[list[str], list[str]]:
    """The emulated argv and notes on what was dropped. Every option podman depends on stays in
    place: -m/-smp as separate elements (podman's `set` edits them by position), ignition
    -fw_cfg, -qmp, -netdev fd=3, the virtio-serial ready port, -pidfile, -virtfs, USB."""
    notes: list[str] = []
    out: list[str] = [options.qemu_binary]
    insert_at: int | None = None
    fallback_insert: int | None = None
    disk_done = False
    for option in iter_options(argv):
        name = canonical_name(option.name)
        value = option.value
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
                replace_suboption(drive, "format", options.disk_container)
                if suboption(drive, "format") is not None
                else f"{drive},format={options.disk_container}"
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
        options.profile.arguments()
        + _firmware_arguments(options.firmware, vars_path)
        # edk2 waits ~5 s for a boot-menu key press on every start, most of the firmware's time
        # under TCG (benchmarks/boot.py: 6 s -> 0.9 s); a podman machine has no keyboard anyway.
        + ["-boot", "menu=on,splash-time=0"]
        + console_arguments(options.console_log)
        # Podman adds -display none at start, except with --log-level debug, where a headless
        # host then fails with "gtk initialization failed". A duplicate is harmless.
        + ["-display", "none"]
    )
    position = insert_at if insert_at is not None else fallback_insert if fallback_insert is not None else len(out)
    return out[:position] + arch_block + out[position:], notes


def _checked_argv(content: JsonObject) -> list[str]:
    argv = list(content["CmdLine"])
    try:
        list(iter_options(argv))
    except ArgvSyntaxError as exc:
        raise ConfigInvalid(
            f"CmdLine cannot be read as a qemu command: {exc}",
            hint="podman cannot start this machine either; recreate it with `podman machine init`.",
        ) from None
    return argv


def is_emulated(content: JsonObject) -> bool:
    return os.path.basename(str(content["CmdLine"][0])).startswith("qemu-system-aarch64")


def plan_conversion(content: JsonObject, layout: Layout, options: ConversionOptions) -> Plan:
    argv = _checked_argv(content)
    if is_emulated(content):
        raise ConversionStateError(
            f"machine {content['Name']!r} already runs qemu-system-aarch64 ({argv[0]})",
            hint="It is already emulated. To change its options, `podman-emu revert` it first, then convert again.",
        )
    vars_path, disk_path = derived_paths(content, layout, options.disk_container)
    if os.path.abspath(options.disk_source) == os.path.abspath(_image_path(content, layout)):
        raise ConversionStateError(
            "--image is the machine's own native disk",
            hint="Give an aarch64 disk image (e.g. fedora-coreos-…-qemu.aarch64.qcow2.xz).",
        )
    new_argv, notes = rewrite_argv(argv, options, vars_path, disk_path)
    after = _with_image_path(content, layout, disk_path)
    after["CmdLine"] = new_argv
    files = [FileAction("disk", disk_path, options.disk_source, f"copy of {options.disk_source}")]
    if not options.firmware.bios:
        template = options.firmware.vars_template
        files.insert(
            0,
            FileAction("vars", vars_path, template, f"copy of {template}" if template else "blank 64 MiB vars file"),
        )
    files.append(FileAction("console", options.console_log, None, "serial console log, written by qemu"))
    notes.insert(0, f"cpu {options.profile.cpu}: {options.profile.reason}")
    if options.firmware.bios:
        notes.append(
            f"firmware {options.firmware.code} is not 64 MiB: loaded with -bios, UEFI variables will not persist"
        )
    return Plan("convert", str(content["Name"]), copy.deepcopy(content), after, files, notes=notes)


@dataclass(frozen=True)
class NativeConfig:
    """What revert restores, recorded by convert."""

    cmdline: list[str]
    image_path: str


def _carry_over(native_argv: list[str], current_argv: list[str]) -> list[str]:
    """The native argv with the -m/-smp values podman's `set` may have changed since conversion,
    edited exactly the way podman's editCmdLine does (first exact match; appended when absent)."""
    result = list(native_argv)
    for flag in ("-m", "-smp"):
        current = first_value(current_argv, flag)
        if current is None:
            continue
        for index, element in enumerate(result[:-1]):
            if element == flag:
                result[index + 1] = current
                break
        else:
            result += [flag, current]
    return result


def plan_revert(content: JsonObject, layout: Layout, native: NativeConfig, created: Sequence[str]) -> Plan:
    current_argv = _checked_argv(content)
    after = _with_image_path(content, layout, native.image_path)
    after["CmdLine"] = _carry_over(native.cmdline, current_argv)
    notes = []
    for flag, label in (("-m", "memory"), ("-smp", "cpus")):
        before_value, after_value = first_value(native.cmdline, flag), first_value(after["CmdLine"], flag)
        if before_value != after_value:
            notes.append(f"kept {label} {after_value} set after the conversion (was {before_value})")
    return Plan("revert", str(content["Name"]), copy.deepcopy(content), after, removals=list(created), notes=notes)

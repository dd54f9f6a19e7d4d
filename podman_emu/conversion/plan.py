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

from podman_emu.conversion.artifacts import is_emulated, kept_disk_name, refuse_native_arm64
from podman_emu.conversion.helper_registry import QemuRoute
from podman_emu.conversion.rewrite import DiskContainer, rewrite_argv, rewrite_routed_argv
from podman_emu.errors import ConfigInvalid, ConversionStateError
from podman_emu.host.capabilities import Firmware
from podman_emu.host.cpu_profile import TcgProfile
from podman_emu.podman.layout import image_path, with_image_path
from podman_emu.podman.podman5 import podman5_argv
from podman_emu.qemu.argv import first_value, machine_options

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class FileAction:
    """A file apply creates (and revert removes)."""

    role: Literal["vars", "disk", "console"]
    destination: str
    source: str | None = None  # vars template or disk image; None = blank vars / qemu-created log
    detail: str = ""


@dataclass(frozen=True)
class PlanInputs:
    """Everything the conversion plan depends on besides the document."""

    qemu_binary: str
    profile: TcgProfile
    firmware: Firmware
    disk_source: str
    disk_container: DiskContainer
    console_log: str
    # Where the vars file and aarch64 disk go when the native disk's directory is not podman's
    # data dir (an --image-path disk elsewhere, a `..` or a symlink in ImagePath); None: beside it.
    files_dir: str | None = None
    host_cpus: int = 1  # os.cpu_count() of the host, for the vCPU advice


# benchmarks/first_container.py on a 2-core x86_64 host (README, "Start to the first arm64
# container"): `podman machine start` to the first container's output, the real Debian guest.
BENCHMARK_FIRST_OUTPUT_S = {1: 220, 2: 130}


def vcpu_advice(argv: Sequence[str], host_cpus: int, name: str) -> str | None:
    """Under TCG every vCPU is one host thread (MTTCG): a 1-vCPU machine, podman's default,
    leaves the other cores of the host idle through the whole emulated boot."""
    smp = first_value(argv, "-smp")
    try:
        vcpus = int((smp or "1").split(",")[0].removeprefix("cpus="))
    except ValueError:
        return None
    if vcpus != 1 or host_cpus < 2:
        return None
    one, two = BENCHMARK_FIRST_OUTPUT_S[1], BENCHMARK_FIRST_OUTPUT_S[2]
    return (
        f"1 vCPU: under TCG each vCPU is one host thread and this host has {host_cpus} CPUs; with 2 vCPUs the "
        f"benchmark's first start to the first arm64 container took {two} s instead of {one} s on 2 host cores. "
        f"While the machine is stopped: podman machine set --cpus 2 {name}"
    )


@dataclass
class Plan:
    kind: Literal["convert", "revert"]
    machine: str
    before: JsonObject
    after: JsonObject
    files: list[FileAction] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # podman 5: the config stores no argv. What podman builds (before) and what podman-emu's qemu
    # wrapper runs instead (after), and the route that makes the wrapper do it.
    built_argvs: tuple[list[str], list[str]] | None = None
    qemu_route: QemuRoute | None = None

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

    def to_json(self, *, applied: bool) -> JsonObject:
        """The part of convert's and revert's --json output that the plan decides."""
        return {"schema": 1, "machine": self.machine, "applied": applied, "patch": self.patch, "notes": self.notes}

    @property
    def argv_before(self) -> list[str]:
        return list(self.built_argvs[0] if self.built_argvs else self.before["CmdLine"])

    @property
    def argv_after(self) -> list[str]:
        return list(self.built_argvs[1] if self.built_argvs else self.after["CmdLine"])


def aarch64_file_paths(
    content: JsonObject, disk_container: DiskContainer, files_dir: str | None = None
) -> tuple[str, str]:
    """Where the vars file and the aarch64 disk go: beside the native disk in podman's data dir,
    the vars file under the name podman itself uses on darwin/arm64."""
    name = content["Name"]
    image = image_path(content)
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
    image_dir = files_dir or os.path.dirname(image)
    suffix = "qcow2" if disk_container == "qcow2" else "raw"
    return (
        os.path.join(image_dir, f"{name}_ovmf_vars.fd"),
        os.path.join(image_dir, kept_disk_name(name, suffix)),
    )


def _conversion_notes(inputs: PlanInputs, argv: Sequence[str], name: str, rewrite_notes: Sequence[str]) -> list[str]:
    notes = [f"cpu {inputs.profile.cpu}: {inputs.profile.reason}", *rewrite_notes]
    advice = vcpu_advice(argv, inputs.host_cpus, name)
    if advice is not None:
        notes.append(advice)
    if inputs.firmware.bios:
        notes.append(
            f"firmware {inputs.firmware.code} is not 64 MiB: loaded with -bios, UEFI variables will not persist"
        )
    return notes


def _created_files(inputs: PlanInputs, vars_path: str, disk_path: str) -> list[FileAction]:
    files = [FileAction("disk", disk_path, inputs.disk_source, f"copy of {inputs.disk_source}")]
    if not inputs.firmware.bios:
        template = inputs.firmware.vars_template
        files.insert(
            0,
            FileAction("vars", vars_path, template, f"copy of {template}" if template else "blank 64 MiB vars file"),
        )
    files.append(FileAction("console", inputs.console_log, None, "serial console log, written by qemu"))
    return files


def _refuse_own_disk(content: JsonObject, inputs: PlanInputs) -> None:
    if os.path.abspath(inputs.disk_source) == os.path.abspath(image_path(content)):
        raise ConversionStateError(
            "--image is the machine's own native disk",
            hint="Give an aarch64 disk image (e.g. fedora-coreos-…-qemu.aarch64.qcow2.xz).",
        )


def _refuse_emulated(content: JsonObject, what: str) -> None:
    if is_emulated(content):
        raise ConversionStateError(
            f"machine {content['Name']!r} {what}",
            hint="It is already emulated. To change its options, `podman-emu revert` it first, then convert again.",
        )


def _plan_podman5(content: JsonObject, inputs: PlanInputs) -> Plan:
    """A podman 5 machine: the config gets only the aarch64 disk at ImagePath; the rest of the
    aarch64 argv is the route the qemu wrapper applies at every start."""
    name = str(content["Name"])
    _refuse_emulated(content, f"already boots an aarch64 disk ({image_path(content)})")
    vars_path, disk_path = aarch64_file_paths(content, inputs.disk_container, inputs.files_dir)
    _refuse_own_disk(content, inputs)
    after = with_image_path(content, disk_path)
    route = QemuRoute(
        pid_file=str(content["QEMUHypervisor"]["QEMUPidPath"]["Path"]),
        qemu_binary=inputs.qemu_binary,
        accel=inputs.profile.accel,
        cpu=inputs.profile.cpu,
        machine=inputs.profile.machine,
        firmware_arguments=inputs.firmware.arguments(vars_path),
        disk_container=inputs.disk_container,
    )
    native = podman5_argv(content)
    emulated = rewrite_routed_argv(podman5_argv(after), route, inputs.console_log)
    notes = _conversion_notes(
        inputs,
        native,
        name,
        ["podman 5 stores no qemu command: podman-emu's qemu-system-x86_64 wrapper runs this machine as shown"],
    )
    files = _created_files(inputs, vars_path, disk_path)
    return Plan(
        "convert",
        name,
        copy.deepcopy(content),
        after,
        files,
        notes=notes,
        built_argvs=(native, emulated),
        qemu_route=route,
    )


def plan_conversion(content: JsonObject, inputs: PlanInputs) -> Plan:
    if "CmdLine" not in content:
        return _plan_podman5(content, inputs)
    argv = list(content["CmdLine"])
    machine_options(argv)
    refuse_native_arm64(content)
    _refuse_emulated(content, f"already runs qemu-system-aarch64 ({argv[0]})")
    vars_path, disk_path = aarch64_file_paths(content, inputs.disk_container, inputs.files_dir)
    _refuse_own_disk(content, inputs)
    rewritten = rewrite_argv(
        argv,
        qemu_binary=inputs.qemu_binary,
        profile=inputs.profile,
        firmware_arguments=inputs.firmware.arguments(vars_path),
        console_log=inputs.console_log,
        disk_path=disk_path,
        disk_container=inputs.disk_container,
    )
    after = with_image_path(content, disk_path)
    after["CmdLine"] = rewritten.argv
    notes = _conversion_notes(inputs, argv, str(content["Name"]), rewritten.notes)
    files = _created_files(inputs, vars_path, disk_path)
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


def plan_revert(
    content: JsonObject, native: NativeConfig, created: Sequence[str], routed_argv: Sequence[str] | None = None
) -> Plan:
    """`routed_argv`: for a podman 5 machine, what the qemu wrapper runs it with now."""
    if "CmdLine" not in content:
        # Only the disk goes back: whatever podman wrote since (LastUp, Starting, the SSH port,
        # `set --cpus`) stays, and the qemu wrapper stops taking the machine once unregistered.
        after = with_image_path(content, native.image_path)
        plan = Plan("revert", str(content["Name"]), copy.deepcopy(content), after, removals=list(created))
        plan.built_argvs = (list(routed_argv or podman5_argv(content)), podman5_argv(after))
        return plan
    current_argv = list(content["CmdLine"])
    machine_options(current_argv)
    after = with_image_path(content, native.image_path)
    after["CmdLine"] = _carry_over(native.cmdline, current_argv)
    notes = []
    for flag, label in (("-m", "memory"), ("-smp", "cpus")):
        before_value, after_value = first_value(native.cmdline, flag), first_value(after["CmdLine"], flag)
        if before_value != after_value:
            notes.append(f"kept {label} {after_value} set after the conversion (was {before_value})")
    return Plan("revert", str(content["Name"]), copy.deepcopy(content), after, removals=list(created), notes=notes)

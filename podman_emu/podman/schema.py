"""Pydantic models of podman's machine JSON, one per layout, and `validate_machine`.

The models validate; they are never serialised back (the raw document is). Types are strict the
way Go's decoder is strict: `"Memory": 2048.0` or `"ImagePath": "/x"` in a 4.1+ file fail in
podman too. Unknown keys are allowed and kept, as podman ignores them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from podman_emu.errors import ConfigInvalid
from podman_emu.podman.layout import PODMAN5_KEYS, PODMAN_KEYS, Layout, detect_layout, refuse_case_variants
from podman_emu.podman.podman5 import podman5_argv
from podman_emu.qemu.argv import machine_options

# Go's uint64 and int (64-bit): a value outside makes podman's decoder fail too.
Uint64 = Annotated[StrictInt, Field(ge=0, le=2**64 - 1)]
Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]

_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-](\d{2}):(\d{2}))")


def _go_time(value: str) -> str:
    """time.Time's UnmarshalJSON (Go's strict RFC 3339: a period before any number of fraction
    digits, Z or ±hh:mm, every field in range; year 0000 exists), or podman's decoder fails on
    the whole file."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError("not an RFC 3339 time as Go writes it (2006-01-02T15:04:05.999999999Z07:00)")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    zone_hour, zone_minute = (int(part) for part in match.groups()[8:10]) if match.group(9) else (0, 0)
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    if not (1 <= month <= 12 and 1 <= day <= days[month - 1]):
        raise ValueError("its date does not exist")
    if hour > 23 or minute > 59 or second > 59 or zone_hour > 23 or zone_minute > 59:
        raise ValueError("its time of day is out of range")
    return value


GoTime = Annotated[StrictStr, AfterValidator(_go_time)]


class _PodmanStruct(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class VMFile(_PodmanStruct):
    Path: StrictStr
    symlink: StrictStr | None = None


class MonitorV1(_PodmanStruct):
    Address: StrictStr
    Network: StrictStr
    Timeout: Int64


class MonitorV2(_PodmanStruct):
    Address: VMFile
    Network: StrictStr
    Timeout: Int64


class MountV2(_PodmanStruct):
    ReadOnly: StrictBool
    Source: StrictStr
    Tag: StrictStr
    Target: StrictStr
    Type: StrictStr


class MountV1(_PodmanStruct):
    Type: StrictStr
    Tag: StrictStr
    Source: StrictStr
    Target: StrictStr
    ReadOnly: StrictBool


class USBConfig(_PodmanStruct):
    Bus: StrictStr
    DevNumber: StrictStr
    Vendor: Int64
    Product: Int64


class _CommonMachine(_PodmanStruct):
    CmdLine: list[StrictStr] = Field(min_length=1)
    Name: StrictStr = Field(min_length=1)
    CPUs: Uint64
    Memory: Uint64
    IdentityPath: StrictStr
    Port: Int64
    RemoteUsername: StrictStr


class MachineV1(_CommonMachine):
    """podman 3.3 / 3.4 / 4.0 (`MachineVMV1`): paths are plain strings."""

    # Keys older releases did not write (Go gives a missing key its zero value, and podman 4.x
    # loads and migrates such files): ImageStream arrived in 3.4.5 (commit 2b2ea4da59) and 4.0.0,
    # DiskSize in 3.4.0. Without DiskSize the new disk is not resized.
    DiskSize: Uint64 | None = None
    ImageStream: StrictStr | None = None
    IgnitionFilePath: StrictStr
    ImagePath: StrictStr
    QMPMonitor: MonitorV1
    Mounts: list[MountV1] | None = None
    Rootful: StrictBool | None = None
    UID: Int64 | None = None

    @property
    def image_path(self) -> str:
        return self.ImagePath

    @property
    def qmp_socket(self) -> str:
        return self.QMPMonitor.Address

    @property
    def pid_files(self) -> list[str]:
        return []

    @property
    def vm_pid_file(self) -> str | None:
        return None

    @property
    def starting(self) -> bool:
        return False


class MachineV2(_CommonMachine):
    """podman 4.1 – 4.9 (`MachineVM`): paths are `{"Path": …}` objects."""

    ConfigPath: VMFile
    Rootful: StrictBool
    # Never optional: podman pre-sets UID=-1 and only the file overrides it; a file without UID
    # makes the machine "incompatible" (podman v4.9.5 pkg/machine/qemu/config.go:205-207).
    UID: Int64
    HostUserModified: StrictBool | None = None
    IgnitionFilePath: VMFile
    ImageStream: StrictStr
    ImagePath: VMFile
    Mounts: list[MountV2] | None
    PidFilePath: VMFile
    VMPidFilePath: VMFile | None = None
    QMPMonitor: MonitorV2
    ReadySocket: VMFile
    DiskSize: Uint64
    USBs: list[USBConfig] | None = None
    Starting: StrictBool
    Created: GoTime
    LastUp: GoTime

    @property
    def image_path(self) -> str:
        return self.ImagePath.Path

    @property
    def qmp_socket(self) -> str:
        return self.QMPMonitor.Address.Path

    @property
    def pid_files(self) -> list[str]:
        files = [self.PidFilePath.Path]
        if self.VMPidFilePath is not None:
            files.append(self.VMPidFilePath.Path)
        return files

    @property
    def vm_pid_file(self) -> str | None:
        """qemu's own pid file (PidFilePath is gvproxy's)."""
        return self.VMPidFilePath.Path if self.VMPidFilePath is not None else None

    @property
    def starting(self) -> bool:
        return self.Starting


class Resources5(_PodmanStruct):
    CPUs: Uint64
    DiskSize: Uint64
    Memory: Uint64
    USBs: list[USBConfig] | None = None


class SSH5(_PodmanStruct):
    IdentityPath: StrictStr
    Port: Int64
    RemoteUsername: StrictStr


class QEMUHypervisor5(_PodmanStruct):
    QMPMonitor: MonitorV2
    QEMUPidPath: VMFile


class Mount5(MountV2):
    VSockNumber: Uint64 | None = None
    OriginalInput: StrictStr | None = None


# The rest of podman 5's MachineConfig (v5.4.2/v5.8.2 pkg/machine/vmconfigs/config.go): podman-emu
# does not use these, but Go's decoder rejects a wrong type in them, so podman-emu does too
# rather than convert a file podman cannot load. Go takes null (and absence) for any of them.
class GvProxy5(_PodmanStruct):
    Debug: StrictBool | None = None
    MTU: Int64 | None = None
    LogFile: StrictStr | None = None
    PidFile: StrictStr | None = None
    SSHPort: Int64 | None = None


class HostUser5(_PodmanStruct):
    Rootful: StrictBool | None = None
    UID: Int64 | None = None
    HostUserModified: StrictBool | None = None


class Ansible5(_PodmanStruct):
    PlaybookPath: StrictStr | None = None
    Contents: StrictStr | None = None
    User: StrictStr | None = None


class MachineV5(_PodmanStruct):
    """podman 5.x (`vmconfigs.MachineConfig`) of the qemu provider. It stores no command line:
    `CmdLine` is the one podman builds from it at every start (podman5_argv), read the way the
    4.x models' stored one is read."""

    Version: Uint64
    Name: StrictStr = Field(min_length=1)
    Resources: Resources5
    SSH: SSH5
    ImagePath: VMFile
    QEMUHypervisor: QEMUHypervisor5
    Mounts: list[Mount5] | None = None
    Starting: StrictBool
    Created: GoTime
    LastUp: GoTime
    GvProxy: GvProxy5 | None = None
    HostUser: HostUser5 | None = None
    Swap: Uint64 | None = None  # 5.6+
    Rosetta: StrictBool | None = None
    Ansible: Ansible5 | None = None

    @property
    def CmdLine(self) -> list[str]:
        return podman5_argv(self.model_dump())

    @property
    def CPUs(self) -> int:
        return self.Resources.CPUs

    @property
    def Memory(self) -> int:
        return self.Resources.Memory

    @property
    def DiskSize(self) -> int:
        return self.Resources.DiskSize

    @property
    def image_path(self) -> str:
        return self.ImagePath.Path

    @property
    def qmp_socket(self) -> str:
        return self.QEMUHypervisor.QMPMonitor.Address.Path

    @property
    def pid_files(self) -> list[str]:
        return [self.QEMUHypervisor.QEMUPidPath.Path]

    @property
    def vm_pid_file(self) -> str | None:
        return self.QEMUHypervisor.QEMUPidPath.Path

    @property
    def starting(self) -> bool:
        return self.Starting


Machine = MachineV1 | MachineV2 | MachineV5


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validation_message(path: Path, error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        location = "/".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "missing":
            problems.append(f"key {location!r} is missing")
        else:
            problems.append(
                f"key {location!r}: {item['msg'][:1].lower() + item['msg'][1:]}, found {_describe(item.get('input'))}"
            )
    more = error.error_count() - len(problems)
    suffix = f" (and {more} more)" if more > 0 else ""
    return f"{path}: not a valid podman machine config: " + "; ".join(problems) + suffix


def validate_machine(path: Path, content: dict[str, Any]) -> tuple[Layout, Machine]:
    layout = detect_layout(path, content)
    refuse_case_variants(path, content, PODMAN5_KEYS if layout is Layout.V5 else PODMAN_KEYS)
    models: dict[Layout, type[MachineV1] | type[MachineV2] | type[MachineV5]] = {
        Layout.V1: MachineV1,
        Layout.V2: MachineV2,
        Layout.V5: MachineV5,
    }
    model = models[layout]
    try:
        machine = model.model_validate(content)
    except ValidationError as exc:
        hint = "podman fails on this file too. Restore it from a backup or recreate the machine."
        if layout is Layout.V2 and any(e["loc"] == ("UID",) for e in exc.errors()):
            hint = (
                "Without UID podman treats the machine as incompatible (it starts for recovery only). "
                'Add "UID": <your uid> back, or recreate the machine.'
            )
        raise ConfigInvalid(validation_message(path, exc), hint=hint) from None
    # Every reader (list, inspect, status, plan) walks CmdLine as qemu options.
    machine_options(machine.CmdLine, path=path)
    return layout, machine

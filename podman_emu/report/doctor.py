"""`podman-emu doctor`: can this host run an emulated machine, what blocks it, how to fix it;
and what removed machines left behind."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from podman_emu import paths, proc
from podman_emu.conversion.artifacts import configured_console_log, machine_kind
from podman_emu.conversion.helper_registry import RegistryDamaged, read_registry
from podman_emu.conversion.leftovers import Leftover, find_leftovers
from podman_emu.errors import HostNotReady, PodmanEmuError
from podman_emu.fsutil import stale_temp_files
from podman_emu.host.capabilities import QemuCapabilities
from podman_emu.host.containers_conf import effective_helper_dirs
from podman_emu.host.cpu_profile import choose_profile, lacks_lpa2_off
from podman_emu.host.firmware import find_firmware
from podman_emu.host.qemu import NIC_ROM, find_qemu, find_qemu_img, missing_nic_rom, probe_qemu
from podman_emu.observe.console_log import console_log_fix, console_log_problem
from podman_emu.observe.network import network_report
from podman_emu.podman.layout import Layout
from podman_emu.podman.machines import LoadedMachine, load_machine
from podman_emu.podman.podman5 import ARM64_CHECK
from podman_emu.podman.running import run_state
from podman_emu.qemu.argv import first_value
from podman_emu.report.inventory import inspect_loaded

Level = Literal["ok", "warn", "fail", "info"]
PODMAN_TIMEOUT_S = 10


@dataclass(frozen=True)
class Check:
    topic: str
    level: Level
    detail: str
    fix: str | None = None


def _host_checks(native_binary: str | None) -> list[Check]:
    checks: list[Check] = []
    capabilities: QemuCapabilities | None = None
    try:
        qemu = find_qemu(None, native_binary)
        capabilities = probe_qemu(qemu)
        checks.append(Check("qemu", "ok", f"{qemu} ({capabilities.version_text})"))
    except PodmanEmuError as error:
        checks.append(Check("qemu", "fail", error.message, error.hint))
        qemu = None
    if capabilities is not None:
        if "tcg" not in capabilities.accelerators:
            checks.append(
                Check(
                    "accelerator", "fail", f"{capabilities.path} has no TCG accelerator", "Install a full qemu build."
                )
            )
        profile = choose_profile(capabilities)
        checks.append(Check("cpu", "ok", f"-cpu {profile.cpu}: {profile.reason}"))
        checks.append(_nic_rom_check(Path(capabilities.path)))
        if capabilities.version[:2] == (8, 2) and capabilities.version[2] == 0:
            checks.append(
                Check(
                    "qemu",
                    "warn",
                    "QEMU 8.2.0's bundled edk2 fails to boot many aarch64 images (QEMU issue 1990)",
                    "Upgrade to QEMU 8.2.1 or newer.",
                )
            )
    try:
        firmware = find_firmware(qemu)
        level: Level = "warn" if firmware.bios else "ok"
        vars_note = firmware.vars_template or "a blank 64 MiB vars file"
        detail = f"{firmware.code} + {vars_note} ({firmware.source})"
        fix = "Install 64 MiB pflash firmware (qemu-efi-aarch64 / edk2-aarch64)." if firmware.bios else None
        checks.append(Check("firmware", level, detail, fix))
    except PodmanEmuError as error:
        checks.append(Check("firmware", "fail", error.message, error.hint))
    try:
        checks.append(Check("qemu-img", "ok", str(find_qemu_img(qemu))))
    except PodmanEmuError as error:
        checks.append(Check("qemu-img", "fail", error.message, error.hint))
    checks.append(_podman_check())
    return checks


def _nic_rom_check(qemu: Path) -> Check:
    searched = missing_nic_rom(qemu)
    if searched is None:
        return Check("network ROM", "ok", f"{NIC_ROM} for the machine's virtio-net-pci")
    return Check(
        "network ROM",
        "fail",
        f"no {NIC_ROM} in {', '.join(searched)}: qemu exits at start with "
        f'`failed to find romfile "{NIC_ROM}"` for the virtio-net-pci every podman machine has',
        "Install it: `apt install ipxe-qemu` (Debian/Ubuntu; only recommended by qemu-system-arm).",
    )


def _podman_check() -> Check:
    podman = shutil.which("podman")
    if podman is None:
        return Check("podman", "info", "podman is not on PATH (only needed to run the machines)")
    try:
        output = proc.run([podman, "--version"], timeout=PODMAN_TIMEOUT_S, what="asking podman its version").stdout
    except HostNotReady:
        return Check("podman", "warn", f"{podman} --version did not answer")
    version = output.strip().rsplit(" ", 1)[-1]
    if version.startswith(("3.", "4.")):
        return Check("podman", "ok", f"{podman} {version}")
    if sys.platform == "darwin":
        return Check(
            "podman",
            "warn",
            f"{podman} {version}: podman 5 has no qemu provider on macOS (applehv and libkrun run the "
            "host's own architecture only), so it cannot run a fully emulated machine",
            f"arm64 containers already run in its machine through user-mode emulation: `{ARM64_CHECK}`. "
            "For a full aarch64 machine, use podman 4.9 (qemu provider).",
        )
    return Check(
        "podman",
        "ok",
        f"{podman} {version}: emulated machines of its qemu provider run through podman-emu's qemu wrapper",
    )


def _machine_checks(name: str, machine: LoadedMachine) -> list[Check]:
    try:
        report = inspect_loaded(machine)
    except PodmanEmuError as error:
        return [Check(f"machine {name}", "fail", error.message, error.hint)]
    row = report.row
    checks = [Check(f"machine {name}", "ok", f"podman {row.podman} layout, {row.emulation}, {row.state.value}")]
    argv = report.cmdline
    checks += [Check(f"machine {name}", "info", note) for note in report.notes]
    kind = machine_kind(machine.document.content)
    # A native arm64 machine's binary lives on the Apple-silicon Mac it was made for; the notes
    # above already say there is nothing to convert. A native podman 5 machine names no binary:
    # podman looks it up at start.
    podman5_native = machine.layout is Layout.V5 and kind == "native"
    if (
        kind != "native-arm64"
        and not podman5_native
        and (not os.path.isabs(argv[0]) or not os.access(argv[0], os.X_OK))
    ):
        checks.append(_missing_binary_check(name, argv[0], native=kind == "native"))
    console_log = configured_console_log(argv)
    if console_log is not None:
        problem = console_log_problem(Path(console_log))
        if problem is not None:
            checks.append(Check("console log", "fail", problem, console_log_fix(Path(console_log), name)))
    for created in report.journal.created if report.journal is not None else []:
        if created.role != "console" and not os.path.exists(created.path):
            checks.append(
                Check("files", "fail", f"{created.role} file {created.path} is missing", f"`podman-emu revert {name}`")
            )
    if kind == "emulated":
        checks += _start_checks(machine)
        checks += [
            check
            for check in (_helper_dirs_check(name, machine.layout, report.image), _lpa2_check(name, argv, report.image))
            if check is not None
        ]
    if not report.podman_formatted:
        checks.append(
            Check(
                "format",
                "info",
                "the file is not in podman's own byte format (edited by hand?); podman-emu writes podman's format",
            )
        )
    return checks


def _start_checks(machine: LoadedMachine) -> list[Check]:
    """The start path podman itself does not report on: gvproxy, the launcher, the API forward."""
    network = network_report(machine, run_state(machine.config))
    if network.problem:
        return [Check("start", "warn", network.problem, f"`{network.recovery}`" if network.recovery else None)]
    return [Check("start", "ok", f"gvproxy through podman-emu's launcher; API forward: {network.forward_text}")]


def _helper_dirs_check(name: str, layout: Layout, disk: str) -> Check | None:
    """podman runs podman-emu's helpers only while podman-emu's directory is the first it
    searches; an environment variable or a containers.conf read after the drop-in can take that
    away without touching any file podman-emu wrote."""
    try:
        registry = read_registry()
    except RegistryDamaged:
        return None  # the start check names the damage
    if registry is None:
        return None
    own = os.path.abspath(registry.helper_dir)
    if layout is Layout.V5:
        consequence = f"machine {name} would boot its aarch64 disk in the native qemu-system-x86_64"
    else:
        consequence = f"machine {name} would start without podman-emu's gvproxy launcher and time out on a slow boot"
    # FindHelperBinary looks in this directory before any containers.conf list.
    override_dir = os.environ.get("CONTAINERS_HELPER_BINARY_DIR")
    if override_dir and os.path.abspath(override_dir) != own:
        return Check(
            "helper dirs",
            "warn",
            f"CONTAINERS_HELPER_BINARY_DIR={override_dir} comes before podman-emu's {own}: {consequence}",
            "Unset CONTAINERS_HELPER_BINARY_DIR where `podman machine start` runs.",
        )
    effective = effective_helper_dirs()
    if effective.dirs and os.path.abspath(effective.dirs[0]) == own:
        return Check("helper dirs", "ok", f"podman finds podman-emu's helpers first ({own})")
    if not os.path.isfile(registry.dropin):
        return Check(
            "helper dirs",
            "fail",
            f"podman-emu's containers.conf drop-in {registry.dropin} is gone: {consequence}",
            _convert_again(name, disk, "writes the drop-in again"),
        )
    if effective.conf_override:
        return Check(
            "helper dirs",
            "warn",
            f"CONTAINERS_CONF={effective.conf_override} makes podman read that file alone, not podman-emu's "
            f"drop-in {registry.dropin}: {consequence}",
            "Unset CONTAINERS_CONF (or use CONTAINERS_CONF_OVERRIDE) where `podman machine start` runs.",
        )
    return Check(
        "helper dirs",
        "warn",
        f"{effective.source} sets [engine] helper_binaries_dir after podman-emu's drop-in, without "
        f"{own} first: {consequence}",
        f"Put {own!r} first in that list, or remove the setting from {effective.source}.",
    )


def _lpa2_check(name: str, argv: list[str], disk: str) -> Check | None:
    """A machine converted with a bare `max` (by an older podman-emu, by --cpu, by hand) boots
    until a firmware upgrade brings edk2 2025.11, then hangs before its boot menu."""
    cpu = first_value(argv, "-cpu")
    if cpu is None:
        return None
    try:
        capabilities = probe_qemu(Path(argv[0]))
    except (PodmanEmuError, OSError):
        return None  # the binary check says what is wrong with it
    if not lacks_lpa2_off(capabilities, cpu):
        return None
    return Check(
        "cpu",
        "warn",
        f"-cpu {cpu} offers the guest FEAT_LPA2: with edk2 2025.11 firmware the machine hangs before "
        "it boots (edk2 issue 11962)",
        _convert_again(name, disk, "the new -cpu says lpa2=off"),
    )


def _convert_again(name: str, disk: str, gain: str) -> str:
    quoted = shlex.quote(name)
    return (
        f"`podman-emu revert {quoted}`, then `podman-emu convert {quoted} --image {shlex.quote(disk)}` "
        f"(keeps the disk; {gain})"
    )


def _missing_binary_check(name: str, binary: str, *, native: bool) -> Check:
    if native:
        # Nothing to convert is lost: convert puts the probed qemu-system-aarch64 in CmdLine[0].
        return Check(
            "binary",
            "warn",
            f"CmdLine[0] {binary} is not an executable file: podman cannot start it natively on this host",
            f"`podman-emu convert {name}` replaces it with qemu-system-aarch64.",
        )
    return Check(
        "binary",
        "fail",
        f"CmdLine[0] {binary} is not an executable file: podman would silently run its host-arch qemu",
        f"`podman-emu revert {name}`, then convert again.",
    )


def _stale_temp_files_check() -> Check | None:
    stale = [str(p) for p in stale_temp_files(paths.podman_config_dir()) + stale_temp_files(paths.podman_data_dir())]
    if not stale:
        return None
    return Check(
        "temp files",
        "warn",
        "left by an interrupted podman-emu: " + ", ".join(stale),
        "Delete them; no machine uses them.",
    )


@dataclass(frozen=True)
class DoctorReport:
    checks: list[Check]
    leftovers: list[Leftover]

    @property
    def ok(self) -> bool:
        return not any(check.level == "fail" for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "checks": [asdict(check) for check in self.checks],
            "leftovers": [dict(asdict(item), command=item.command) for item in self.leftovers],
            "ok": self.ok,
        }


def run_doctor(name: str | None) -> DoctorReport:
    """The host checks, then (with `name`) the machine's, loaded and validated once."""
    machine: LoadedMachine | None = None
    machine_checks: list[Check] = []
    if name:
        try:
            machine = load_machine(name)
        except PodmanEmuError as error:
            machine_checks = [Check(f"machine {name}", "fail", error.message, error.hint)]
        else:
            machine_checks = _machine_checks(name, machine)
    checks = _host_checks(machine.config.CmdLine[0] if machine is not None else None) + machine_checks
    stale = _stale_temp_files_check()
    if stale is not None:
        checks.append(stale)
    try:
        leftovers = find_leftovers()
    except PodmanEmuError as error:
        checks.append(Check("state", "fail", error.message, error.hint))
        leftovers = []
    return DoctorReport(checks, leftovers)

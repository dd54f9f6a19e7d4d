"""`podman-emu convert`: load -> choose the host's qemu and firmware -> inspect the disk source -> plan ->
(dry run | stage + apply)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podman_emu import paths
from podman_emu.conversion import journal as journals
from podman_emu.conversion.apply import apply_conversion, effective_journal, machine_journal, repair_interrupted
from podman_emu.conversion.artifacts import console_log_path, refuse_native_arm64, within
from podman_emu.conversion.helper_registry import RegisteredMachine
from podman_emu.conversion.journal import Journal
from podman_emu.conversion.plan import Plan, PlanInputs, plan_conversion
from podman_emu.conversion.staging import StagedFile, discard_staged, refuse_existing_destinations, stage_files
from podman_emu.conversion.start_helpers import HostPlan, with_machine, without_machine
from podman_emu.errors import ConversionStateError, IoFailed, UsageError
from podman_emu.fsutil import private_dir
from podman_emu.host.capabilities import Firmware, QemuCapabilities
from podman_emu.host.cpu_profile import TcgProfile, choose_profile
from podman_emu.host.firmware import find_firmware
from podman_emu.host.qemu import find_qemu, find_qemu_img, probe_qemu, refuse_cpu_qemu_rejects
from podman_emu.images.arch import ArchVerdict, detect_disk_arch
from podman_emu.images.formats import DiskFormat, sniff_disk
from podman_emu.images.install import DiskInstall, DiskSource, check_arch
from podman_emu.images.stream import resolve_stream_image
from podman_emu.podman.machines import LoadedMachine, load_machine
from podman_emu.podman.running import refuse_if_busy


@dataclass(frozen=True)
class ConvertRequest:
    name: str
    image: str | None = None
    sha256: str | None = None
    stream: str | None = None
    stream_url: str | None = None
    qemu: str | None = None
    firmware: str | None = None
    vars_template: str | None = None
    cpu: str | None = None
    force: bool = False
    dry_run: bool = False
    progress: bool = False


@dataclass
class ConvertOutcome:
    plan: Plan
    machine: LoadedMachine
    profile: TcgProfile
    firmware: Firmware
    disk_format: DiskFormat
    arch: ArchVerdict
    warnings: list[str]
    journal: Journal | None = None
    host: HostPlan | None = None

    @property
    def applied(self) -> bool:
        return self.journal is not None

    def to_json(self) -> dict[str, Any]:
        plan = self.plan
        return {
            **plan.to_json(applied=self.applied),
            "files": [
                {"role": action.role, "path": action.destination, "source": action.source, "detail": action.detail}
                for action in plan.files
            ],
            "argv_before": plan.argv_before,
            "argv_after": plan.argv_after,
            "cpu": self.profile.cpu,
            "firmware": self.firmware.code,
            "disk_format": self.disk_format.describe(),
            "arch_check": {"arch": self.arch.arch, "reason": self.arch.reason},
            "host_changes": [edit.to_json() for edit in self.host.edits] if self.host else [],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class HostChoice:
    """The host's side of a conversion: which qemu, what it can do, the CPU profile and firmware."""

    qemu: Path
    capabilities: QemuCapabilities
    profile: TcgProfile
    firmware: Firmware
    qemu_img: Path


@dataclass(frozen=True)
class InspectedSource:
    """The disk source and what could be told about it before copying."""

    source: DiskSource
    format: DiskFormat
    arch: ArchVerdict  # for a compressed image: decided once decompressed, while staging


def _refuse_converted(machine: LoadedMachine) -> None:
    journal = effective_journal(machine, machine_journal(machine))
    if journal is None:
        return
    if journal.status == "reverting":
        raise ConversionStateError(
            f"a revert of machine {machine.name!r} was interrupted",
            hint=f"Run `podman-emu revert {machine.name}` to finish it, then convert again.",
        )
    raise ConversionStateError(
        f"machine {machine.name!r} is already converted (since {journal.timestamp})",
        hint=f"`podman-emu revert {machine.name}` first to convert it again with other options.",
    )


def _resolve_image(request: ConvertRequest, warn: Callable[[str], None]) -> DiskSource:
    if request.image and request.stream:
        raise UsageError("--image and --stream exclude each other", hint="Give one source for the aarch64 disk.")
    if request.stream:
        if request.sha256:
            raise UsageError(
                "--sha256 goes with --image", hint="Stream images are verified against the stream's own checksums."
            )
        cached = resolve_stream_image(
            request.stream, stream_url=request.stream_url, progress=request.progress, notice=warn
        )
        if cached.offline_reason:
            warn(f"using the cached {cached.stream} image {cached.release}: {cached.offline_reason}")
        return DiskSource(
            cached.path, cached.sha256, cached.uncompressed_sha256, f"Fedora CoreOS {cached.stream} {cached.release}"
        )
    if not request.image:
        raise UsageError(
            "convert needs an aarch64 disk: --image PATH or --stream stable|testing|next",
            hint="The machine's own disk is x86_64 and would hang in the aarch64 firmware. Fedora CoreOS "
            "aarch64 images: `--stream testing` (podman's default stream) or a downloaded "
            "fedora-coreos-…-qemu.aarch64.qcow2.xz with --image.",
        )
    path = Path(os.path.abspath(os.path.expanduser(request.image)))
    return DiskSource(path, request.sha256, None, str(path))


def _check_arch_early(path: Path, disk_format: DiskFormat, force: bool) -> ArchVerdict:
    """Refuse a plain x86_64 disk before anything is copied; a compressed one is checked once
    decompressed, before it is placed (images.install_disk)."""
    if disk_format.compression is not None:
        return ArchVerdict(None, "checked after decompression")
    verdict = detect_disk_arch(path)
    check_arch(verdict, str(path), force=force)
    return verdict


def _warn_about_arch(verdict: ArchVerdict, path: Path, warn: Callable[[str], None]) -> None:
    if verdict.arch is None:
        warn(f"could not confirm that {path.name} is an aarch64 disk: {verdict.reason}")
    elif verdict.arch == "x86_64":
        warn(f"{path.name} looks like an x86_64 disk ({verdict.reason}); converting anyway because of --force")


def _refuse_foreign_owner(machine: LoadedMachine) -> None:
    """As root on another user's machine, the disk, vars file and journal would belong to root:
    the machine would not start for its owner, who could not revert it either."""
    owner = machine.config_path.stat().st_uid
    if os.geteuid() == 0 and owner != 0:
        raise UsageError(
            f"{machine.config_path} belongs to uid {owner}, and podman-emu runs as root",
            hint="Run podman-emu as the machine's owner, like podman itself (podman machine refuses root): "
            f"e.g. `sudo -u '#{owner}' podman-emu convert {machine.name} …`.",
        )


def _load_convertible(request: ConvertRequest) -> LoadedMachine:
    machine = load_machine(request.name)
    # Before anything about the host: whatever this host has, such a machine needs no conversion.
    refuse_native_arm64(machine.document.content)
    _refuse_foreign_owner(machine)
    # A running machine is refused first: whatever else is true, nothing can change while it runs.
    refuse_if_busy(machine.name, machine.config, "convert")
    if not request.dry_run:
        repair_interrupted(machine)  # the only write before the plan: settles a crashed run
    _refuse_converted(machine)
    return machine


def _choose_host(request: ConvertRequest, machine: LoadedMachine) -> HostChoice:
    qemu = find_qemu(request.qemu, machine.config.CmdLine[0])
    capabilities = probe_qemu(qemu)
    profile = choose_profile(capabilities, request.cpu)
    if request.cpu:
        refuse_cpu_qemu_rejects(qemu, profile.cpu)
    return HostChoice(
        qemu=qemu,
        capabilities=capabilities,
        profile=profile,
        firmware=find_firmware(qemu, code_override=request.firmware, vars_override=request.vars_template),
        qemu_img=find_qemu_img(qemu),
    )


def _inspect_disk_source(request: ConvertRequest, warn: Callable[[str], None]) -> InspectedSource:
    source = _resolve_image(request, warn)
    disk_format = sniff_disk(source.path)
    verdict = _check_arch_early(source.path, disk_format, request.force)
    if disk_format.compression is None:
        _warn_about_arch(verdict, source.path, warn)
    return InspectedSource(source, disk_format, verdict)


def _refuse_existing_or_overtaken(plan: Plan, machine: LoadedMachine) -> None:
    try:
        refuse_existing_destinations(plan)
    except ConversionStateError:
        # A stale journal was settled above and a finished conversion refused: a journal now
        # means another podman-emu is converting this machine, and the files are its own.
        if journals.load_journal(machine.config_path) is not None:
            raise ConversionStateError(
                f"another podman-emu process is converting (or just converted) machine {machine.name!r}",
                hint="Nothing was changed by this one. Wait for the other to finish; `podman-emu list` "
                "shows the result.",
            ) from None
        raise


def _stage_and_apply(
    outcome: ConvertOutcome,
    request: ConvertRequest,
    host: HostChoice,
    inspected: InspectedSource,
    warn: Callable[[str], None],
) -> ConvertOutcome:
    machine, plan = outcome.machine, outcome.plan
    _refuse_existing_or_overtaken(plan, machine)
    disk = DiskInstall(
        source=inspected.source,
        size_gib=machine.config.DiskSize,
        qemu_img=str(host.qemu_img),
        force=request.force,
        progress=request.progress,
    )
    try:
        # Before the multi-GB copy: a state dir that cannot be written would fail only after it.
        private_dir(paths.state_dir())
    except OSError as exc:
        raise IoFailed.of(exc, "create podman-emu's state dir") from None
    with_machine(_registration(machine, plan), dry_run=True)  # a foreign drop-in refuses before the copy
    staged = stage_files(plan, disk)
    if inspected.format.compression is not None:
        disk_arch = next(item.arch for item in staged if item.action.role == "disk")
        assert disk_arch is not None
        outcome.arch = disk_arch
        _warn_about_arch(disk_arch, inspected.source.path, warn)
    # The launcher goes in before the config names qemu-system-aarch64, so no start of the
    # converted machine can miss it; it hands any machine not yet emulated to the real gvproxy.
    try:
        outcome.host = with_machine(_registration(machine, plan), dry_run=False)
    except BaseException:
        discard_staged(staged)
        raise
    for message in outcome.host.warnings:
        warn(message)
    try:
        outcome.journal = _apply(machine, plan, staged, host, inspected)
    except BaseException:
        without_machine(machine.config_path, dry_run=False)
        raise
    return outcome


def _registration(machine: LoadedMachine, plan: Plan) -> RegisteredMachine:
    return RegisteredMachine(
        machine.name, str(machine.config_path), str(console_log_path(machine.config_path)), plan.qemu_route
    )


def _apply(
    machine: LoadedMachine, plan: Plan, staged: list[StagedFile], host: HostChoice, inspected: InspectedSource
) -> Journal:
    return apply_conversion(
        machine,
        plan,
        staged,
        {
            "qemu": str(host.qemu),
            "qemu_version": host.capabilities.version_string,
            "cpu": host.profile.cpu,
            "firmware": host.firmware.code,
            "image_source": inspected.source.description,
            "image_format": inspected.format.describe(),
        },
    )


def _files_dir(machine: LoadedMachine) -> str | None:
    """podman's data dir when the native disk lies elsewhere: podman-emu creates files in
    podman's machine dirs and its own, nowhere else (an --image-path disk may sit in ~/Downloads,
    a `..` or a symlink in ImagePath may lead anywhere)."""
    image = machine.config.image_path
    if within(image, [paths.podman_data_dir()]):
        return None
    return str(paths.podman_data_dir())


def convert_machine(request: ConvertRequest, warn: Callable[[str], None]) -> ConvertOutcome:
    """Convert machine `request.name`, or only plan it with `dry_run`. `warn` hears each warning
    as it comes (the outcome keeps them too)."""
    warnings: list[str] = []

    def keep(message: str) -> None:
        warnings.append(message)
        warn(message)

    machine = _load_convertible(request)
    host = _choose_host(request, machine)
    inspected = _inspect_disk_source(request, keep)
    inputs = PlanInputs(
        qemu_binary=str(host.qemu),
        profile=host.profile,
        firmware=host.firmware,
        disk_source=str(inspected.source.path),
        disk_container=inspected.format.container,
        console_log=str(console_log_path(machine.config_path)),
        files_dir=_files_dir(machine),
        host_cpus=os.cpu_count() or 1,
    )
    plan = plan_conversion(machine.document.content, inputs)
    outcome = ConvertOutcome(plan, machine, host.profile, host.firmware, inspected.format, inspected.arch, warnings)
    if request.dry_run:
        outcome.host = with_machine(_registration(machine, plan), dry_run=True)
        for message in outcome.host.warnings:
            keep(message)
        return outcome
    return _stage_and_apply(outcome, request, host, inspected, keep)

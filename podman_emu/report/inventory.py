"""What `list` and `inspect` report, as typed rows that the CLI renders as tables or JSON.

Read-only: nothing here writes, not even to finish an interrupted operation (`convert`/`revert`
do that); an interrupted state is reported as such. The one exception is podman-emu's own
console log, which `list` keeps bounded (observe.console_log.rotate_if_large).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from podman_emu.conversion import journal as journals
from podman_emu.conversion.artifacts import (
    configured_console_log,
    console_log_path,
    journal_path,
    machine_kind,
    native_arm64_explanation,
)
from podman_emu.conversion.journal import emulation_status, stranger_reason
from podman_emu.conversion.routes import machine_argv
from podman_emu.errors import ConversionStateError
from podman_emu.observe.boot_stage import last_boot
from podman_emu.observe.console_log import console_log_to_read, rotate_if_large
from podman_emu.paths import podman_config_dir
from podman_emu.podman import list_cache
from podman_emu.podman.machines import (
    BrokenMachine,
    ConfiguredQemu,
    ListedMachine,
    LoadedMachine,
    load_machine,
)
from podman_emu.podman.podman5 import NATIVE_QEMU
from podman_emu.podman.running import RunCheck, RunState, run_state

LIST_WINDOW_BYTES = 128 * 1024


@dataclass(frozen=True)
class MachineRow:
    """One machine as `list` shows it (and the head of `inspect`)."""

    name: str
    config: Path
    layout: str
    podman: str
    emulation: str
    state: RunState
    configured: ConfiguredQemu
    disk_gib: int | None  # None: podman 3.3 wrote no DiskSize
    boot_stage: str | None = None  # list only: how far a running machine's boot got

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": str(self.config),
            "layout": self.layout,
            "podman": self.podman,
            "emulation": self.emulation,
            "state": self.state.value,
            **self.configured.to_json(),
            "disk_gib": self.disk_gib,
        }


@dataclass(frozen=True)
class BrokenRow:
    """A config in podman's dir that cannot be loaded, listed with the reason."""

    name: str
    config: Path
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "config": str(self.config), "error": self.error}


@dataclass(frozen=True)
class MachineList:
    rows: list[MachineRow | BrokenRow]
    config_dir: Path  # where the machines were looked for, for the "no machines" line

    def to_json(self) -> list[dict[str, Any]]:
        return [
            row.to_json() | ({"boot_stage": row.boot_stage} if isinstance(row, MachineRow) else {}) for row in self.rows
        ]


EARLIER_MACHINE = " (journal of an earlier machine)"


def _machine_row(
    machine: LoadedMachine | ListedMachine, journal: journals.Journal | None, check: RunCheck, argv: list[str]
) -> MachineRow:
    """`argv`: routes.machine_argv(machine), which the caller needs too."""
    suffix = ""
    if journal is not None and stranger_reason(journal, machine.document.content, machine.document.sha256):
        # The journal describes a machine that was removed; for this one it says nothing.
        journal, suffix = None, EARLIER_MACHINE
    emulation = (
        emulation_status(journal, current_sha256=machine.document.sha256, kind=machine_kind(machine.document.content))
        + suffix
    )
    return MachineRow(
        name=machine.name,
        config=machine.config_path,
        layout=machine.layout.value,
        podman=machine.podman_version,
        emulation=emulation,
        state=check.state,
        configured=ConfiguredQemu.of(machine.config, argv),
        disk_gib=machine.config.DiskSize,
    )


def _listed_row(machine: ListedMachine) -> MachineRow:
    argv = machine_argv(machine)
    try:
        journal = journals.load_journal(machine.config_path)
    except ConversionStateError:
        # One damaged journal must not hide the other machines; convert, revert and inspect
        # name the problem and what to do.
        row = replace(
            _machine_row(machine, None, run_state(machine.config), argv), emulation="unknown (damaged journal)"
        )
    else:
        row = _machine_row(machine, journal, run_state(machine.config), argv)
    own = console_log_path(machine.config_path)
    rotate_if_large(own)
    log = console_log_to_read(configured_console_log(argv), own)
    if log is None:
        return row
    if row.state is RunState.STOPPED:
        return row
    # A short look at the end of the log: enough to name the stage, cheap for list.
    stage = last_boot(log, window=LIST_WINDOW_BYTES).stage
    return replace(row, boot_stage=stage)


def list_machines() -> MachineList:
    rows: list[MachineRow | BrokenRow] = [
        BrokenRow(item.name, item.config_path, item.error.message)
        if isinstance(item, BrokenMachine)
        else _listed_row(item)
        for item in list_cache.scan()
    ]
    return MachineList(rows, podman_config_dir())


@dataclass(frozen=True)
class CreatedEntry:
    role: str
    path: str


@dataclass(frozen=True)
class JournalSummary:
    path: Path
    status: str
    converted_at: str
    native_qemu: str
    native_image: str
    unchanged_since_convert: bool
    created: list[CreatedEntry]
    options: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "status": self.status,
            "converted_at": self.converted_at,
            "native_qemu": self.native_qemu,
            "native_image": self.native_image,
            "unchanged_since_convert": self.unchanged_since_convert,
            "created": [{"role": item.role, "path": item.path} for item in self.created],
            "options": self.options,
        }


@dataclass(frozen=True)
class InspectReport:
    """`inspect`: the row, why the machine is in that state, its files, journal and command."""

    row: MachineRow
    state_evidence: list[str]
    image: str
    console_log: str | None
    trailing_newline: bool
    podman_formatted: bool
    journal: JournalSummary | None
    cmdline: list[str]
    config_model: dict[str, Any] = field(repr=False)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        report: dict[str, Any] = {"schema": 1, **self.row.to_json()}
        report["state_evidence"] = list(self.state_evidence)
        report["image"] = self.image
        report["console_log"] = self.console_log
        report["byte_format"] = {"trailing_newline": self.trailing_newline, "podman_formatted": self.podman_formatted}
        if self.journal is not None:
            report["journal"] = self.journal.to_json()
        report["cmdline"] = list(self.cmdline)
        report["config_model"] = self.config_model
        report["notes"] = list(self.notes)
        return report


def _journal_summary(machine: LoadedMachine, journal: journals.Journal) -> JournalSummary:
    return JournalSummary(
        path=journal_path(machine.config_path),
        status=journal.status,
        converted_at=journal.timestamp,
        native_qemu=journal.native_cmdline[0]
        if journal.native_cmdline
        else f"{NATIVE_QEMU} (podman 5 finds it at start)",
        native_image=journal.native_image_path,
        unchanged_since_convert=machine.document.sha256 == journal.converted_sha256,
        created=[CreatedEntry(item.role, item.path) for item in journal.created],
        options=dict(journal.options),
    )


def inspect_loaded(machine: LoadedMachine) -> InspectReport:
    journal = journals.load_journal(machine.config_path)
    check = run_state(machine.config)
    argv = machine_argv(machine)
    console_log = configured_console_log(argv) or (
        str(console_log_path(machine.config_path)) if journal is not None else None
    )
    return InspectReport(
        row=_machine_row(machine, journal, check, argv),
        state_evidence=list(check.evidence),
        image=machine.config.image_path,
        console_log=console_log,
        trailing_newline=machine.document.byte_format.trailing_newline,
        podman_formatted=machine.document.is_podman_formatted,
        journal=_journal_summary(machine, journal) if journal is not None else None,
        cmdline=argv,
        config_model=machine.config.model_dump(mode="json"),
        notes=_notes(machine),
    )


def _notes(machine: LoadedMachine) -> list[str]:
    if machine_kind(machine.document.content) == "native-arm64":
        return ["machine " + native_arm64_explanation(machine.name, machine.config.CmdLine)]
    return []


def inspect_machine(name: str) -> InspectReport:
    return inspect_loaded(load_machine(name))

"""What `list` and `inspect` report: plain dicts, rendered by the CLI as tables or JSON.

Read-only: nothing here writes, not even to finish an interrupted operation (`convert`/`revert`
do that); an interrupted state is reported as such. The one exception is podman-emu's own
console log, which `list` keeps bounded (console.rotate_if_large).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from podman_emu import journal as journals
from podman_emu.console import console_log_path, last_boot, rotate_if_large
from podman_emu.machines import BrokenMachine, ListedMachine, LoadedMachine, discover_listing, load_machine
from podman_emu.plan import CONSOLE_CHARDEV_ID, is_emulated
from podman_emu.qemu.argv import first_value, suboption
from podman_emu.state import machine_state

LIST_WINDOW_BYTES = 128 * 1024


def emulation_status(machine: LoadedMachine | ListedMachine, journal: journals.Journal | None) -> str:
    """native, emulated, emulated-unmanaged (aarch64 without a journal), or an interrupted state."""
    emulated = is_emulated(machine.document.content)
    if journal is None:
        return "emulated-unmanaged" if emulated else "native"
    if journal.status == "converting":
        if machine.document.sha256 == journal.original_sha256:
            return "native (interrupted convert)"
        return "emulated" if emulated else "native (interrupted convert)"
    if journal.status == "reverting":
        return "emulated (interrupted revert)" if emulated else "native (interrupted revert)"
    return "emulated" if emulated else "native (podman rewrote it; stale journal)"


def _console_log(machine: LoadedMachine | ListedMachine) -> str | None:
    argv = machine.model.CmdLine
    for index, element in enumerate(argv[:-1]):
        if element == "-chardev" and suboption(argv[index + 1], "id") == CONSOLE_CHARDEV_ID:
            return suboption(argv[index + 1], "path")
    return None


def summary(machine: LoadedMachine | ListedMachine) -> dict[str, Any]:
    journal = journals.load_journal(machine.config_path)
    argv = machine.model.CmdLine
    state = machine_state(machine.model)
    return {
        "name": machine.name,
        "config": str(machine.config_path),
        "layout": machine.layout.value,
        "podman": machine.podman_version,
        "emulation": emulation_status(machine, journal),
        "state": state.state.value,
        "qemu": argv[0],
        "cpu": first_value(argv, "-cpu"),
        "cpus": machine.model.CPUs,
        "memory_mib": machine.model.Memory,
        "disk_gib": machine.model.DiskSize,
    }


def list_machines() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for item in discover_listing():
        if isinstance(item, BrokenMachine):
            rows.append({"name": item.name, "config": str(item.config_path), "error": item.error.message})
        else:
            row = summary(item)
            row["boot_stage"] = None
            log = _console_log(item)
            if log is not None:
                rotate_if_large(Path(log))
                if row["state"] != "stopped":
                    # A short look at the end of the log: enough to name the stage, cheap for list.
                    row["boot_stage"] = last_boot(Path(log), window=LIST_WINDOW_BYTES).stage
            rows.append(row)
    return rows


def inspect_machine(name: str) -> dict[str, Any]:
    machine = load_machine(name)
    journal = journals.load_journal(machine.config_path)
    report = summary(machine)
    state = machine_state(machine.model)
    report["state_evidence"] = list(state.evidence)
    report["image"] = machine.model.image_path
    report["console_log"] = _console_log(machine) or (
        str(console_log_path(machine.config_path)) if journal is not None else None
    )
    report["byte_format"] = {
        "trailing_newline": machine.document.byte_format.trailing_newline,
        "podman_formatted": machine.document.is_podman_formatted,
    }
    if journal is not None:
        report["journal"] = {
            "path": str(journals.journal_path(machine.config_path)),
            "status": journal.status,
            "converted_at": journal.timestamp,
            "native_qemu": journal.native_cmdline[0],
            "native_image": journal.native_image_path,
            "unchanged_since_convert": machine.document.sha256 == journal.converted_sha256,
            "created": [{"role": item.role, "path": item.path} for item in journal.created],
            "options": journal.options,
        }
    report["cmdline"] = list(machine.model.CmdLine)
    report["config_model"] = machine.model.model_dump(mode="json")
    return report

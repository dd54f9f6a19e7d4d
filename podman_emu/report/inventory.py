"""What `list` and `inspect` report: plain dicts, rendered by the CLI as tables or JSON.

Read-only: nothing here writes, not even to finish an interrupted operation (`convert`/`revert`
do that); an interrupted state is reported as such. The one exception is podman-emu's own
console log, which `list` keeps bounded (observe.console_log.rotate_if_large).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from podman_emu.conversion import journal as journals
from podman_emu.conversion.artifacts import configured_console_log, console_log_path, is_emulated, journal_path
from podman_emu.conversion.journal import emulation_status
from podman_emu.observe.boot_stage import last_boot
from podman_emu.observe.console_log import rotate_if_large
from podman_emu.podman import list_cache
from podman_emu.podman.machines import BrokenMachine, ListedMachine, LoadedMachine, load_machine
from podman_emu.podman.running import run_state
from podman_emu.qemu.argv import first_value

LIST_WINDOW_BYTES = 128 * 1024


def _emulation(machine: LoadedMachine | ListedMachine, journal: journals.Journal | None) -> str:
    return emulation_status(
        journal, current_sha256=machine.document.sha256, emulated=is_emulated(machine.document.content)
    )


def machine_row(machine: LoadedMachine | ListedMachine) -> dict[str, Any]:
    journal = journals.load_journal(machine.config_path)
    argv = machine.config.CmdLine
    state = run_state(machine.config)
    return {
        "name": machine.name,
        "config": str(machine.config_path),
        "layout": machine.layout.value,
        "podman": machine.podman_version,
        "emulation": _emulation(machine, journal),
        "state": state.state.value,
        "qemu": argv[0],
        "cpu": first_value(argv, "-cpu"),
        "cpus": machine.config.CPUs,
        "memory_mib": machine.config.Memory,
        "disk_gib": machine.config.DiskSize,
    }


def list_machines() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for item in list_cache.scan():
        if isinstance(item, BrokenMachine):
            rows.append({"name": item.name, "config": str(item.config_path), "error": item.error.message})
        else:
            row = machine_row(item)
            row["boot_stage"] = None
            log = configured_console_log(item.config.CmdLine)
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
    report = machine_row(machine)
    state = run_state(machine.config)
    report["state_evidence"] = list(state.evidence)
    report["image"] = machine.config.image_path
    report["console_log"] = configured_console_log(machine.config.CmdLine) or (
        str(console_log_path(machine.config_path)) if journal is not None else None
    )
    report["byte_format"] = {
        "trailing_newline": machine.document.byte_format.trailing_newline,
        "podman_formatted": machine.document.is_podman_formatted,
    }
    if journal is not None:
        report["journal"] = {
            "path": str(journal_path(machine.config_path)),
            "status": journal.status,
            "converted_at": journal.timestamp,
            "native_qemu": journal.native_cmdline[0],
            "native_image": journal.native_image_path,
            "unchanged_since_convert": machine.document.sha256 == journal.converted_sha256,
            "created": [{"role": item.role, "path": item.path} for item in journal.created],
            "options": journal.options,
        }
    report["cmdline"] = list(machine.config.CmdLine)
    report["config_model"] = machine.config.model_dump(mode="json")
    return report

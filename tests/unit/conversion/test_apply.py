"""apply: under podman's lock, re-check, journal, move the staged files in, write; and undo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podman_emu.conversion import apply
from podman_emu.conversion import journal as journals
from podman_emu.conversion.artifacts import console_log_path
from podman_emu.conversion.plan import NativeConfig, Plan, PlanInputs, plan_conversion, plan_revert
from podman_emu.conversion.staging import StagedFile
from podman_emu.errors import MachineBusy
from podman_emu.fsutil import temp_name
from podman_emu.host.capabilities import Firmware
from podman_emu.host.cpu_profile import ACCEL, MACHINE, TcgProfile
from podman_emu.podman.document import sha256_bytes
from podman_emu.podman.machines import LoadedMachine, load_machine
from testing.fixtures import image_path_of
from testing.podman_home import Sandbox

FIXTURE = "podman-4.9-linux-amd64.json"  # 4 CPUs; `podman machine set --cpus 3` is the change below
OPTIONS = {"qemu": "/usr/bin/qemu-system-aarch64", "cpu": "max,pauth-impdef=on"}


def podman_set_cpus(data: bytes) -> bytes:
    changed = data.replace(b'"CPUs": 4', b'"CPUs": 3')
    assert changed != data
    return changed


def plan_for(box: Sandbox, machine: LoadedMachine) -> Plan:
    inputs = PlanInputs(
        qemu_binary="/usr/bin/qemu-system-aarch64",
        profile=TcgProfile("max,pauth-impdef=on", ACCEL, MACHINE, "test"),
        firmware=Firmware("/fw/CODE.fd", "raw", None, "raw", "test"),
        disk_source=str(box.root / "source.qcow2"),
        disk_container="qcow2",
        console_log=str(console_log_path(machine.config_path)),
    )
    return plan_conversion(machine.document.content, inputs)


def staged(plan: Plan) -> list[StagedFile]:
    """What staging leaves: each big file complete under its temp name; qemu makes the log."""
    files = []
    for action in plan.files:
        if action.role == "console":
            files.append(StagedFile(action, None))
            continue
        temporary = temp_name(Path(action.destination))
        temporary.write_bytes(f"{action.role} bytes".encode())
        files.append(StagedFile(action, temporary))
    return files


@pytest.fixture
def machine(podman_home: Sandbox) -> LoadedMachine:
    podman_home.install(FIXTURE, "m")
    return load_machine("m")


def test_a_conversion_writes_podmans_format_places_the_files_and_journals_it(
    podman_home: Sandbox, machine: LoadedMachine
) -> None:
    plan = plan_for(podman_home, machine)
    journal = apply.apply_conversion(machine, plan, staged(plan), OPTIONS)
    assert journal.status == "converted" and journals.load_journal(machine.config_path) == journal
    written = machine.config_path.read_bytes()
    assert written == machine.document.render(plan.after) and journal.converted_sha256 == sha256_bytes(written)
    assert json.loads(written)["CmdLine"][0] == "/usr/bin/qemu-system-aarch64"
    for action in plan.files:
        if action.role != "console":
            assert Path(action.destination).read_bytes() == f"{action.role} bytes".encode()
    assert journal.original_bytes == machine.document.data
    assert not [p for p in podman_home.data_dir.iterdir() if p.name.startswith(".")], "a temp file was left"


def test_a_config_changed_since_it_was_loaded_is_refused_and_nothing_changes(
    podman_home: Sandbox, machine: LoadedMachine
) -> None:
    plan = plan_for(podman_home, machine)
    files = staged(plan)
    changed = podman_set_cpus(machine.document.data)
    machine.config_path.write_bytes(changed)
    with pytest.raises(MachineBusy, match="changed while"):
        apply.apply_conversion(machine, plan, files, OPTIONS)
    assert machine.config_path.read_bytes() == changed
    assert journals.load_journal(machine.config_path) is None
    native_disk = Path(image_path_of(machine.document.content)).name
    assert sorted(p.name for p in podman_home.data_dir.iterdir()) == [native_disk]


def test_a_change_that_lands_after_the_recheck_is_still_not_overwritten(
    podman_home: Sandbox, machine: LoadedMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """podman 4.3 writes in place without a lock: a `machine set` may land after apply's first
    re-check, while the journal and files are written. The comparison right before the rename
    must catch it, undo the conversion and keep podman's bytes."""
    plan = plan_for(podman_home, machine)
    podmans = podman_set_cpus(machine.document.data)
    real_write = apply._write_config

    def podman_writes_first(loaded: LoadedMachine, new_bytes: bytes, action: str) -> None:
        with open(loaded.config_path, "r+b") as config:  # in place, as podman 4.3 does
            config.write(podmans)
            config.truncate()
        real_write(loaded, new_bytes, action)

    monkeypatch.setattr(apply, "_write_config", podman_writes_first)
    with pytest.raises(MachineBusy, match="changed while"):
        apply.apply_conversion(machine, plan, staged(plan), OPTIONS)
    assert machine.config_path.read_bytes() == podmans
    assert journals.load_journal(machine.config_path) is None
    for action in plan.files:
        assert not Path(action.destination).exists(), f"{action.role} file left behind"


def test_an_interrupted_conversion_is_settled_by_the_configs_bytes(
    podman_home: Sandbox, machine: LoadedMachine
) -> None:
    plan = plan_for(podman_home, machine)
    journal = apply.apply_conversion(machine, plan, staged(plan), OPTIONS)
    # A crash after the journal said "converting" and the files were placed, before the JSON:
    machine.config_path.write_bytes(machine.document.data)
    journals.save_journal(journals.Journal(**{**journal.__dict__, "status": "converting"}))
    apply.repair_interrupted(load_machine("m"))
    assert journals.load_journal(machine.config_path) is None
    assert not any(Path(action.destination).exists() for action in plan.files if action.role != "console")


def test_a_conversion_whose_json_was_written_is_completed(podman_home: Sandbox, machine: LoadedMachine) -> None:
    plan = plan_for(podman_home, machine)
    journal = apply.apply_conversion(machine, plan, staged(plan), OPTIONS)
    journals.save_journal(journals.Journal(**{**journal.__dict__, "status": "converting"}))
    apply.repair_interrupted(load_machine("m"))
    settled = journals.load_journal(machine.config_path)
    assert settled is not None and settled.status == "converted"


def test_revert_restores_the_original_bytes_and_removes_what_it_created(
    podman_home: Sandbox, machine: LoadedMachine
) -> None:
    plan = plan_for(podman_home, machine)
    journal = apply.apply_conversion(machine, plan, staged(plan), OPTIONS)
    converted = load_machine("m")
    native = NativeConfig(journal.native_cmdline, journal.native_image_path)
    created = [item.path for item in journal.created]
    revert = plan_revert(converted.document.content, native, created)
    removed, protected = apply.apply_revert(converted, revert, journal, delete_disk=True)
    assert protected == []
    assert machine.config_path.read_bytes() == machine.document.data
    assert journals.load_journal(machine.config_path) is None
    assert {str(Path(item.path)) for item in journal.created if item.role != "console"} <= set(removed)


def test_a_revert_overtaken_by_podman_keeps_the_journal_as_it_was(
    podman_home: Sandbox, machine: LoadedMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_for(podman_home, machine)
    journal = apply.apply_conversion(machine, plan, staged(plan), OPTIONS)
    converted = load_machine("m")
    native = NativeConfig(journal.native_cmdline, journal.native_image_path)
    revert = plan_revert(converted.document.content, native, [])
    podmans = podman_set_cpus(converted.document.data)
    real_write = apply._write_config

    def podman_writes_first(loaded: LoadedMachine, new_bytes: bytes, action: str) -> None:
        loaded.config_path.write_bytes(podmans)
        real_write(loaded, new_bytes, action)

    monkeypatch.setattr(apply, "_write_config", podman_writes_first)
    with pytest.raises(MachineBusy):
        apply.apply_revert(converted, revert, journal, delete_disk=False)
    assert machine.config_path.read_bytes() == podmans
    kept = journals.load_journal(machine.config_path)
    assert kept is not None and kept.status == "converted"

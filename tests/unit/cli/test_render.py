"""The renderer: the plain list table that serves `list` without rich."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podman_emu.cli import render
from podman_emu.podman.machines import ConfiguredQemu
from podman_emu.podman.running import RunState
from podman_emu.report.inventory import BrokenRow, MachineList, MachineRow


def row(name: str, cpu: str | None, stage: str | None = None, state: RunState = RunState.STOPPED) -> MachineRow:
    configured = ConfiguredQemu("/usr/bin/qemu-system-aarch64", cpu, 4, 2048)
    return MachineRow(name, Path(f"/c/{name}.json"), "v2", "4.8+", "emulated", state, configured, 100, stage)


def test_columns_are_padded_never_cut_and_notes_run_on() -> None:
    text = render.plain_table(("A", "LONG HEADER"), [["x", "1"], ["wider cell", ""]], [("bad", "error: a long reason")])
    assert text.splitlines() == [
        "A           LONG HEADER",
        "x           1",
        "wider cell",
        "bad         error: a long reason",
    ]


def test_the_machine_list(capsys: pytest.CaptureFixture[str]) -> None:
    listing = MachineList(
        [
            row("emu", "max,pauth-impdef=on,with-a-long-tail", "kernel", RunState.RUNNING),
            BrokenRow("junk", Path("/c/junk.json"), "/c/junk.json: not valid JSON"),
            row("plain", None),
        ],
        Path("/c"),
    )
    render.print_machine_list(listing, as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "EMULATION", "STATE", "PODMAN", "CPUS", "MEMORY", "CPU", "MODEL"]
    long_cpu = "max,pauth-impdef=on,with-a-long-tail"
    assert lines[1].split() == ["emu", "emulated", "running", "(kernel)", "4.8+", "4", "2048", "MiB", long_cpu]
    assert lines[2].split() == ["plain", "emulated", "stopped", "4.8+", "4", "2048", "MiB"]
    assert lines[3] == "junk   error: /c/junk.json: not valid JSON"
    assert lines[0].index("EMULATION") == lines[1].index("emulated") == lines[2].index("emulated")


def test_no_machines_names_the_dir(capsys: pytest.CaptureFixture[str]) -> None:
    render.print_machine_list(MachineList([], Path("/c")), as_json=False)
    assert capsys.readouterr().out == "No machines in /c\n"


def test_the_json_list_keeps_its_keys(capsys: pytest.CaptureFixture[str]) -> None:
    render.print_machine_list(MachineList([row("emu", "max")], Path("/c")), as_json=True)
    [item] = json.loads(capsys.readouterr().out)
    assert list(item) == [
        "name", "config", "layout", "podman", "emulation", "state", "qemu", "cpu", "cpus", "memory_mib", "disk_gib",
        "boot_stage",
    ]  # fmt: skip

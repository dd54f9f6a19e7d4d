"""What list and inspect report, as typed rows."""

from __future__ import annotations

from podman_emu.podman.running import RunState
from podman_emu.report.inventory import BrokenRow, MachineRow, inspect_machine, list_machines
from testing.podman_home import Sandbox


def test_list_rows_native_v1_and_v2_and_a_broken_config(podman_home: Sandbox) -> None:
    podman_home.install("podman-4.9-linux-amd64.json", "a")
    podman_home.install("podman-3.4-darwin-amd64.json", "b")
    (podman_home.config_dir / "junk.json").write_text("{")
    listing = list_machines()
    rows = {row.name: row for row in listing.rows}
    assert listing.config_dir == podman_home.config_dir
    a, b, junk = rows["a"], rows["b"], rows["junk"]
    assert isinstance(a, MachineRow) and isinstance(b, MachineRow) and isinstance(junk, BrokenRow)
    assert (a.layout, a.podman, a.emulation, a.state) == ("v2", "4.8+", "native", RunState.STOPPED)
    assert (b.layout, b.podman) == ("v1", "3.4")
    assert a.configured.qemu.endswith("qemu-system-x86_64") and a.boot_stage is None
    assert "not valid JSON" in junk.error
    assert [row["name"] for row in listing.to_json()] == ["a", "b", "junk"]


def test_inspect_reports_the_files_format_and_command(podman_home: Sandbox) -> None:
    config = podman_home.install("podman-4.9-linux-amd64.json", "a")
    report = inspect_machine("a")
    assert report.row.config == config and report.journal is None and report.console_log is None
    assert report.trailing_newline and report.podman_formatted
    assert report.cmdline[0].endswith("qemu-system-x86_64")
    data = report.to_json()
    assert data["schema"] == 1 and data["name"] == "a" and "journal" not in data
    assert data["byte_format"] == {"trailing_newline": True, "podman_formatted": True}
    assert data["config_model"]["Name"] == "a"

"""What status and doctor say about an emulated machine's start path when it went wrong."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from podman_emu.cli.app import app
from podman_emu.observe.network import network_report
from podman_emu.podman.machines import load_machine
from podman_emu.podman.running import run_state
from testing.podman_home import Sandbox


def converted(podman_home: Sandbox, disk: Path) -> Path:
    config = podman_home.install("podman-4.9-linux-amd64.json", "m")
    result = CliRunner().invoke(app, ["convert", "m", "--image", str(disk)])
    assert result.exit_code == 0, result.stderr
    return config


def test_a_stopped_converted_machine_has_no_problem(podman_home: Sandbox, blank_aarch64_disk: Path) -> None:
    converted(podman_home, blank_aarch64_disk)
    machine = load_machine("m")
    report = network_report(machine, run_state(machine.config))
    assert report.launcher_registered and report.problem is None and report.gvproxy_pid is None


def test_qemu_alive_without_gvproxy_is_named_with_the_command_that_recovers(
    podman_home: Sandbox, blank_aarch64_disk: Path
) -> None:
    config = converted(podman_home, blank_aarch64_disk)
    vm_pid_file = Path(json.loads(config.read_bytes())["VMPidFilePath"]["Path"])
    vm_pid_file.parent.mkdir(parents=True, exist_ok=True)
    vm_pid_file.write_text(f"{os.getpid()}\n")  # a live process stands for qemu
    shown = CliRunner().invoke(app, ["status", "m"]).stdout
    assert "gvproxy is gone" in shown and "podman machine stop m && podman machine start m" in shown
    doctor = CliRunner().invoke(app, ["doctor", "m", "--json"])
    start = next(c for c in json.loads(doctor.stdout)["checks"] if c["topic"] == "start")
    assert start["level"] == "warn" and "gvproxy is gone" in start["detail"]


def test_a_machine_podman_emu_did_not_register_is_said_to_risk_the_hang(
    podman_home: Sandbox, blank_aarch64_disk: Path
) -> None:
    converted(podman_home, blank_aarch64_disk)
    (podman_home.state_dir / "start-helpers" / "registry.json").unlink()
    machine = load_machine("m")
    report = network_report(machine, run_state(machine.config))
    assert not report.launcher_registered
    assert report.problem is not None and "hang" in report.problem

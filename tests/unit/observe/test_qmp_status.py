"""`podman-emu status` against a real qemu-system-aarch64 running the converted command line.

qemu is launched the way podman launches it (fd 3 = the network socket, the ignition file in
place); `-S` keeps the guest from running where only QMP matters. The boot test runs the real
aarch64 test guest (Debian kernel + busybox initramfs from testing/guest) through UEFI and plays
podman's part in the ready handshake.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from podman_emu.cli.app import app
from podman_emu.conversion.artifacts import rotated_path
from podman_emu.observe.console_log import CONSOLE_LIMIT_BYTES
from podman_emu.observe.qmp_status import QMP_TOTAL_TIMEOUT_S, ask_qemu, machine_status, socket_path
from podman_emu.qemu.argv import iter_options, suboption
from testing.cli import run_module
from testing.guest import GuestToolMissing, build_guest_image
from testing.podman_home import Sandbox
from testing.tools import unavailable

pytestmark = pytest.mark.usefixtures("aavmf")


class RunningMachine:
    """qemu started from a machine's converted CmdLine, as podman would start it."""

    def __init__(self, config: Path, extra: list[str]) -> None:
        self.content = json.loads(config.read_bytes())
        argv = [self.content["CmdLine"][0]]
        for option in iter_options(self.content["CmdLine"]):
            if option.name == "-fw_cfg" and option.value and (ignition := suboption(option.value, "file")):
                Path(ignition).write_text('{"ignition": {"version": "3.2.0"}}')  # podman writes it at init
            argv += option.elements()
        address = self.content["QMPMonitor"]["Address"]
        self.qmp = socket_path(address if isinstance(address, str) else address["Path"])
        ready = next(e for e in argv if e.startswith("socket,path=") and "_ready" in e)
        self.ready_socket = suboption(ready, "path") or ""
        Path(self.qmp).parent.mkdir(parents=True, exist_ok=True)
        self.network, guest_end = socket.socketpair()
        os.set_inheritable(guest_end.fileno(), True)
        self.process = subprocess.Popen(
            [*argv, *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(guest_end.fileno(), 3),
            preexec_fn=lambda: os.dup2(guest_end.fileno(), 3),  # podman hands qemu the network as fd 3
        )
        guest_end.close()
        deadline = time.monotonic() + 20
        while not os.path.exists(self.qmp):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"qemu did not start: {self.process.stderr.read().decode() if self.process.stderr else ''}")
            time.sleep(0.05)

    def qmp_command(self, command: str) -> Any:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            client.connect(self.qmp)
            stream = client.makefile("rw")
            json.loads(stream.readline())  # greeting
            for name in ("qmp_capabilities", command):
                stream.write(json.dumps({"execute": name}) + "\n")
                stream.flush()
                while "return" not in (reply := json.loads(stream.readline())) and "error" not in reply:
                    pass  # events
            return reply

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        if self.process.stderr:
            self.process.stderr.close()
        self.network.close()


@pytest.fixture
def launch(podman_home: Sandbox) -> Iterator[Any]:
    machines: list[RunningMachine] = []

    def start(name: str, *extra: str) -> RunningMachine:
        machine = RunningMachine(podman_home.config(name), list(extra))
        machines.append(machine)
        return machine

    yield start
    for machine in machines:
        machine.stop()


def convert(podman_home: Sandbox, fixture: str, disk: Path, *options: str) -> None:
    podman_home.install(fixture, "emu")
    result = CliRunner().invoke(app, ["convert", "emu", "--image", str(disk), *options])
    assert result.exit_code == 0, result.stderr


def status_json() -> dict[str, Any]:
    result = run_module("status", "emu", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def qemu_version(binary: str) -> str:
    """What `qemu-system-aarch64 --version` says, as QMP reports it (major.minor.micro)."""
    text = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    match = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", text)
    assert match, text
    return f"{match.group(1)}.{match.group(2)}.{match.group(3) or 0}"


def test_status_asks_qemu_what_it_runs(
    podman_home: Sandbox, blank_aarch64_disk: Path, launch: Any, qemu_aarch64: str
) -> None:
    # After `podman machine set --cpus 3 --memory 3000`: qemu must report what it was started with.
    convert(podman_home, "podman-4.3-linux-amd64-after-set.json", blank_aarch64_disk)
    machine = launch("emu", "-S")
    report = status_json()
    assert report["state"] == "running"
    qemu = report["qemu"]
    assert qemu["reachable"] and qemu["error"] is None
    assert qemu["version"] == qemu_version(qemu_aarch64)
    assert qemu["run_state"] == "prelaunch"
    assert qemu["arch"] == "aarch64"
    assert qemu["machine"].startswith("virt-")
    assert (qemu["cpu"], qemu["pauth"]) == ("max", "impdef")
    assert qemu["vcpus"] == 3
    assert qemu["accelerator"] == "tcg"
    assert qemu["tcg_threads"] == "multi"
    assert qemu["memory_mib"] == 3000
    assert qemu["pid"] == machine.process.pid
    assert 0 <= qemu["uptime_s"] < 120
    assert report["console"]["log"].startswith(str(podman_home.state_dir / "consoles"))

    text = run_module("status", "emu")
    assert text.returncode == 0, text.stderr
    assert "max (pointer auth: impdef), 3 vCPUs, aarch64, virt-" in text.stdout
    assert "tcg (one host thread per vCPU)" in text.stdout
    assert "3000 MiB" in text.stdout


@pytest.mark.parametrize(
    ("cpu", "model", "pauth"),
    [("cortex-a57", "cortex-a57", None), ("max,pauth=off", "max", "off"), ("neoverse-n1", "neoverse-n1", None)],
)
def test_status_reports_the_cpu_model_qemu_runs(
    podman_home: Sandbox, blank_aarch64_disk: Path, launch: Any, cpu: str, model: str, pauth: str | None
) -> None:
    convert(podman_home, "podman-4.9-linux-amd64.json", blank_aarch64_disk, "--cpu", cpu)
    launch("emu", "-S")
    facts = machine_status("emu").to_json()["qemu"]
    assert (facts["cpu"], facts["pauth"]) == (model, pauth)
    assert facts["tcg_threads"] is None or facts["vcpus"] > 1


def test_status_does_not_wait_for_a_busy_qmp_socket(
    podman_home: Sandbox, blank_aarch64_disk: Path, launch: Any
) -> None:
    """QMP serves one client at a time; podman holds it while it starts or stops a machine."""
    convert(podman_home, "podman-4.3-linux-amd64.json", blank_aarch64_disk)
    machine = launch("emu", "-S")
    with socket.socket(socket.AF_UNIX) as podman:
        podman.settimeout(10)
        podman.connect(machine.qmp)
        assert b"QMP" in podman.recv(4096)  # podman has the session now
        started = time.monotonic()
        report = status_json()
        elapsed = time.monotonic() - started
        text = run_module("status", "emu")
    assert elapsed < QMP_TOTAL_TIMEOUT_S + 5
    assert report["state"] == "running"
    assert report["qemu"]["reachable"] is False
    assert "another client" in report["qemu"]["error"]
    assert report["qemu"]["pid"] == machine.process.pid
    assert "not answering" in text.stdout and text.returncode == 0
    # Once podman lets go, status gets its answers again.
    assert ask_qemu(machine.qmp).run_state == "prelaunch"


def test_status_of_a_frozen_qemu_returns(podman_home: Sandbox, blank_aarch64_disk: Path, launch: Any) -> None:
    convert(podman_home, "podman-4.3-linux-amd64.json", blank_aarch64_disk)
    machine = launch("emu", "-S")
    os.kill(machine.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        facts = ask_qemu(machine.qmp, timeout=3)
        assert time.monotonic() - started < 6
    finally:
        os.kill(machine.process.pid, signal.SIGCONT)
    assert not facts.reachable and facts.error


def test_status_of_a_stopped_machine(podman_home: Sandbox, blank_aarch64_disk: Path, launch: Any) -> None:
    convert(podman_home, "podman-4.3-linux-amd64.json", blank_aarch64_disk)
    report = status_json()
    assert report["state"] == "stopped"
    assert report["qemu"]["reachable"] is False and report["qemu"]["pid"] is None
    assert report["console"]["exists"] is False
    assert "no console output yet" in run_module("status", "emu").stdout
    # qemu killed hard: its QMP socket file and pid file stay behind, and must not fool status.
    machine = launch("emu", "-S")
    machine.process.kill()
    machine.process.wait(timeout=30)
    assert os.path.exists(machine.qmp)
    started = time.monotonic()
    report = status_json()
    assert time.monotonic() - started < 10
    assert report["state"] == "stopped"
    assert report["qemu"]["pid"] is None
    assert ask_qemu(machine.qmp).error is not None


def test_status_of_a_native_machine_and_of_no_machine(podman_home: Sandbox) -> None:
    podman_home.install("podman-4.3-linux-amd64.json", "native")
    result = run_module("status", "native", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["emulation"] == "native" and report["state"] == "stopped"
    assert report["console"] == {"log": None, "exists": False, "boot": None}
    assert "not logged" in run_module("status", "native").stdout
    missing = run_module("status", "nosuch")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "no machine config" in missing.stderr


def test_list_and_status_keep_the_console_log_bounded(podman_home: Sandbox, blank_aarch64_disk: Path) -> None:
    convert(podman_home, "podman-4.3-linux-amd64.json", blank_aarch64_disk)
    log = Path(status_json()["console"]["log"])
    log.write_bytes(b"UEFI firmware (version x)\r\n" + b"k" * CONSOLE_LIMIT_BYTES)
    listed = json.loads(run_module("list", "--json").stdout)
    assert [(row["emulation"], row["state"], row["boot_stage"]) for row in listed] == [("emulated", "stopped", None)]
    assert not log.exists() and rotated_path(log).stat().st_size > CONSOLE_LIMIT_BYTES
    log.write_bytes(b"x" * (CONSOLE_LIMIT_BYTES + 1))
    report = status_json()
    assert rotated_path(log).stat().st_size == CONSOLE_LIMIT_BYTES + 1  # the newer log replaced it
    assert report["console"]["files"] == [str(rotated_path(log))]


@pytest.fixture(scope="module")
def guest_disk() -> Path:
    try:
        return build_guest_image().disk
    except (GuestToolMissing, subprocess.CalledProcessError) as exc:
        unavailable(f"cannot build the aarch64 test guest: {exc}")
        raise


def test_a_boot_watched_stage_by_stage(podman_home: Sandbox, guest_disk: Path, launch: Any) -> None:
    convert(podman_home, "podman-4.3-linux-amd64.json", guest_disk)
    machine = launch("emu")
    seen: list[str] = []
    deadline = time.monotonic() + 240
    ready_line = b""
    while time.monotonic() < deadline and machine.process.poll() is None:
        stage = machine_status("emu").to_json()["console"]["boot"]
        if stage and stage["stage"] and (not seen or seen[-1] != stage["stage"]):
            seen.append(stage["stage"])
        if seen and seen[-1] == "init" and not ready_line:
            # podman's side of the handshake: connect to the ready socket and read one line.
            with socket.socket(socket.AF_UNIX) as ready:
                ready.settimeout(120)
                ready.connect(machine.ready_socket)
                ready_line = ready.makefile("rb").readline()
        if seen and seen[-1] == "ready":
            break
        time.sleep(0.2)
    assert ready_line == b"Ready\n"
    assert seen[-1] == "ready", seen
    order = ["firmware", "bootloader", "kernel", "init", "ready"]
    assert seen == sorted(seen, key=order.index), seen
    assert seen[0] in ("firmware", "bootloader"), seen  # the firmware alone takes seconds under TCG

    running = machine_status("emu").to_json()
    assert running["qemu"]["run_state"] == "running"
    boot = running["console"]["boot"]
    assert boot["boot_start_seen"] and "READY-SENT" in boot["line"]
    text = run_module("status", "emu").stdout
    assert "ready: the guest sent Ready to podman" in text
    listed = json.loads(run_module("list", "--json").stdout)
    assert [(row["name"], row["state"], row["boot_stage"]) for row in listed] == [("emu", "running", "ready")]
    assert "running (ready)" in run_module("list").stdout

    # `podman machine stop`: ACPI power button; the test guest powers off.
    machine.qmp_command("system_powerdown")
    machine.process.wait(timeout=120)
    stopped = status_json()
    assert stopped["state"] == "stopped"
    assert stopped["console"]["boot"]["stage"] == "ready"
    assert [event["event"] for event in stopped["console"]["boot"]["events"]] == ["powered off"]
    assert "last boot" in run_module("status", "emu").stdout
    logs = run_module("logs", "emu")
    assert logs.returncode == 0
    assert "Booting Linux on physical CPU" in logs.stdout
    assert "\x1b" not in logs.stdout and "\r" not in logs.stdout

"""The gvproxy launcher with real processes: what the program podman runs as `gvproxy` hands to
the real one. The "real gvproxy" here is a recorder script (it writes its argv and pid and waits):
the arguments and the pid are what podman depends on; the real gvproxy 0.8.1 runs in tests/e2e."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podman_emu.conversion import start_helpers
from podman_emu.conversion.helper_registry import RegisteredMachine, forward_state_path, read_registry
from podman_emu.helpers.gvproxy_shim import parse_call
from testing.podman_home import Sandbox

RECORDER = """#!/bin/sh
printf '%s\\n' "$$" "$@" > "{out}"
exec sleep "{linger}"
"""


def podman_431_args(sandbox: Sandbox, name: str) -> list[str]:
    """gvproxy's command line as podman 4.3.1 builds it (pkg/machine/qemu/machine.go)."""
    run = sandbox.runtime_dir / "podman"
    pid_file = json.loads(sandbox.config(name).read_bytes())["PidFilePath"]["Path"]
    return [
        "-listen-qemu",
        f"unix://{run}/qmp_{name}.sock",
        "-pid-file",
        pid_file,
        "-ssh-port",
        "34561",
        "-forward-sock",
        f"{run}/podman.sock",
        "-forward-dest",
        "/run/user/1000/podman/podman.sock",
        "-forward-user",
        "core",
        "-forward-identity",
        f"{sandbox.home}/.ssh/{name}",
    ]


def install_recorder(directory: Path, out: Path, linger: float = 30) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "gvproxy"
    script.write_text(RECORDER.format(out=out, linger=linger))
    script.chmod(0o755)


def read_record(out: Path) -> tuple[int, list[str]]:
    deadline = time.monotonic() + 15
    while not out.exists() or not out.read_text().endswith("\n"):
        assert time.monotonic() < deadline, "the real gvproxy was never started"
        time.sleep(0.05)
    pid, *args = out.read_text().splitlines()
    return int(pid), args


@pytest.fixture
def real_gvproxy_dir(podman_home: Sandbox) -> Path:
    """A helper dir the user's containers.conf names, holding the 'real' gvproxy."""
    directory = podman_home.root / "libexec-podman"
    conf = podman_home.home / ".config" / "containers" / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'# mine\n[engine]\nhelper_binaries_dir = ["{directory}"]  # keep\n')
    return directory


def register(sandbox: Sandbox, fixture: str, name: str) -> Path:
    config = sandbox.install(fixture, name)
    machine = RegisteredMachine(name, str(config), str(sandbox.state_dir / "consoles" / f"{name}.log"))
    start_helpers.with_machine(machine, dry_run=False)
    return config


def emulate(config: Path) -> None:
    content = json.loads(config.read_bytes())
    content["CmdLine"][0] = "/usr/bin/qemu-system-aarch64"
    config.write_text(json.dumps(content, indent=1))


def launch(args: list[str]) -> subprocess.Popen[bytes]:
    registry = read_registry()
    assert registry is not None
    launcher = Path(registry.helper_dir) / "gvproxy"
    return subprocess.Popen([str(launcher), *args], env=os.environ.copy())


def test_parse_call_takes_out_the_forward_groups_and_keeps_the_rest_in_order(podman_home: Sandbox) -> None:
    podman_home.install("podman-4.3-linux-amd64.json", "m")
    args = podman_431_args(podman_home, "m")
    call = parse_call(args)
    assert call.kept == args[:6]
    assert call.pid_file == args[3] and call.ssh_port == "34561"
    assert call.forwards["-forward-user"] == ["core"]
    assert parse_call(["--ssh-port=22", "-debug"]).kept == ["--ssh-port=22", "-debug"]


def test_a_native_machine_gets_the_real_gvproxy_with_its_arguments_and_pid(
    podman_home: Sandbox, real_gvproxy_dir: Path
) -> None:
    out = podman_home.root / "record"
    install_recorder(real_gvproxy_dir, out)
    register(podman_home, "podman-4.3-linux-amd64.json", "emu")  # another machine is emulated
    emulate(podman_home.config("emu"))
    podman_home.install("podman-4.9-linux-amd64.json", "native")
    args = podman_431_args(podman_home, "native")
    process = launch(args)
    try:
        pid, seen = read_record(out)
        assert pid == process.pid  # podman signals this pid at `machine stop`
        assert seen == args
    finally:
        process.kill()
        process.wait()


def test_an_emulated_machine_gets_gvproxy_without_the_forward_and_a_forwarder_that_follows_it(
    podman_home: Sandbox, real_gvproxy_dir: Path
) -> None:
    out = podman_home.root / "record"
    install_recorder(real_gvproxy_dir, out, linger=120)
    config = register(podman_home, "podman-4.3-linux-amd64.json", "emu")
    emulate(config)
    args = podman_431_args(podman_home, "emu")
    process = launch(args)
    pid, seen = read_record(out)
    assert pid == process.pid
    assert seen == args[:6]
    state_file = forward_state_path(config)
    deadline = time.monotonic() + 10
    while not state_file.exists():
        assert time.monotonic() < deadline, "no forwarder started"
        time.sleep(0.1)
    state = json.loads(state_file.read_text())
    assert state["phase"] == "waiting-for-sshd" and state["gvproxy_pid"] == process.pid
    process.terminate()  # what podman does at `machine stop`
    process.wait(timeout=30)
    deadline = time.monotonic() + 20
    while json.loads(state_file.read_text())["phase"] == "waiting-for-sshd":
        assert time.monotonic() < deadline, "the forwarder outlived gvproxy"
        time.sleep(0.2)
    assert json.loads(state_file.read_text())["phase"] == "stopped"
    assert (podman_home.state_dir / "consoles").is_dir()  # recreated before qemu needs it


def test_the_launcher_hands_over_to_the_real_gvproxy_when_podman_emu_is_gone(
    podman_home: Sandbox, real_gvproxy_dir: Path
) -> None:
    out = podman_home.root / "record"
    install_recorder(real_gvproxy_dir, out)
    registry = podman_home.state_dir / "registry.json"
    launcher = podman_home.root / "gvproxy"
    # The system python has no podman_emu: the import fails, as after `pip uninstall podman-emu`.
    launcher.write_bytes(start_helpers.launcher_source(registry, [str(real_gvproxy_dir)], "/usr/bin/python3"))
    launcher.chmod(0o755)
    process = subprocess.Popen([str(launcher), "-debug", "-ssh-port", "1"])
    try:
        pid, seen = read_record(out)
        assert (pid, seen) == (process.pid, ["-debug", "-ssh-port", "1"])
    finally:
        process.kill()
        process.wait()


def test_no_real_gvproxy_is_an_error_naming_where_it_looked(podman_home: Sandbox, real_gvproxy_dir: Path) -> None:
    register(podman_home, "podman-4.3-linux-amd64.json", "emu")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from podman_emu.helpers.gvproxy_shim import main;"
            f"sys.exit(main({str(podman_home.state_dir / 'start-helpers' / 'registry.json')!r}, ['-debug']))",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 127
    assert str(real_gvproxy_dir) in done.stderr.decode()


def podman_542_args(runtime: Path, name: str, identity: str) -> list[str]:
    """gvproxy's command line as the real podman 5.4.2 ran it (ps of a `podman machine start`):
    one -pid-file for every machine of the user; the qemu socket names the machine."""
    run = runtime / "podman"
    return [
        "-mtu", "1500", "-ssh-port", "44071", "-listen-qemu", f"unix://{run}/{name}-gvproxy.sock",
        "-forward-sock", f"{run}/{name}-api.sock", "-forward-dest", "/run/user/1000/podman/podman.sock",
        "-forward-user", "core", "-forward-identity", identity,
        "-pid-file", f"{run}/gvproxy.pid", "-log-file", f"{run}/gvproxy.log",
    ]  # fmt: skip


def test_a_podman5_machine_with_a_qemu_route_is_told_by_its_qemu_socket(
    podman_home: Sandbox, real_gvproxy_dir: Path
) -> None:
    from podman_emu.conversion.helper_registry import QemuRoute

    out = podman_home.root / "record"
    install_recorder(real_gvproxy_dir, out, linger=120)
    config = podman_home.home / ".config/containers/podman/machine/qemu/t1.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("{}")
    run = podman_home.runtime_dir / "podman"
    route = QemuRoute(str(run / "t1_vm.pid"), "/usr/bin/qemu-system-aarch64", "tcg", "max", "virt", [], "qcow2")
    machine = RegisteredMachine("t1", str(config), str(podman_home.state_dir / "consoles" / "t1.log"), route)
    start_helpers.with_machine(machine, dry_run=False)

    native = podman_542_args(podman_home.runtime_dir, "t2", str(podman_home.home / "machine"))
    process = launch(native)
    assert read_record(out) == (process.pid, native)  # another machine: untouched
    process.kill()
    process.wait()
    out.unlink()

    args = podman_542_args(podman_home.runtime_dir, "t1", str(podman_home.home / "machine"))
    process = launch(args)
    try:
        pid, seen = read_record(out)
        assert pid == process.pid
        assert seen == args[:6] + args[-4:]  # the forward groups go to the forwarder
        state_file = forward_state_path(config)
        deadline = time.monotonic() + 30  # a fresh Python on a loaded 2-core box
        while not state_file.exists():
            assert time.monotonic() < deadline, "no forwarder started"
            time.sleep(0.1)
        assert json.loads(state_file.read_text())["socks"] == [str(run / "t1-api.sock")]
    finally:
        process.kill()
        process.wait()

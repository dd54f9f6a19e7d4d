"""The qemu wrapper with real processes: what podman 5 runs as `qemu-system-x86_64` from
podman-emu's helper dir, fed the real podman 5.4.2 argv (testing.podman5_qemu). An emulated
machine becomes the real qemu-system-aarch64 under the pid podman waits on; any other machine
reaches the real qemu-system-x86_64 (or a recorder standing in its place, to compare the exact
argv) with its arguments untouched."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podman_emu.conversion import start_helpers
from podman_emu.conversion.helper_registry import QemuRoute, RegisteredMachine, read_registry
from podman_emu.host.cpu_profile import choose_profile
from podman_emu.host.firmware import find_firmware
from podman_emu.host.qemu import probe_qemu
from testing.podman5_qemu import (
    Podman5Dirs,
    podman5_dirs,
    qemu_peers,
    qmp,
    qmp_socket,
    values_of,
    wait_for_firmware,
)
from testing.podman_home import Sandbox
from testing.tools import require_tool

RECORDER = """#!/bin/sh
printf '%s\\n' "$$" "$@" > "{out}"
"""


@pytest.fixture
def dirs() -> Iterator[Podman5Dirs]:
    with podman5_dirs() as made:
        yield made


@pytest.fixture
def real_qemu_dir(podman_home: Sandbox) -> Path:
    """A helper dir the user's containers.conf names, holding a recorder as the 'real' qemu."""
    directory = podman_home.root / "libexec-podman"
    directory.mkdir()
    conf = podman_home.home / ".config" / "containers" / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'[engine]\nhelper_binaries_dir = ["{directory}"]\n')
    return directory


def install_recorder(directory: Path, out: Path) -> None:
    script = directory / "qemu-system-x86_64"
    script.write_text(RECORDER.format(out=out))
    script.chmod(0o755)


def register_emulated(dirs: Podman5Dirs, aavmf: str, qemu_aarch64: str) -> RegisteredMachine:
    """What `convert` records for a podman 5 machine: the route the wrapper takes at each start."""
    profile = choose_profile(probe_qemu(Path(qemu_aarch64)))
    vars_file = dirs.home / "t1_ovmf_vars.fd"
    vars_file.write_bytes(bytes(64 << 20))
    config = json.loads(dirs.config().read_bytes())
    route = QemuRoute(
        pid_file=config["QEMUHypervisor"]["QEMUPidPath"]["Path"],
        qemu_binary=qemu_aarch64,
        accel=profile.accel,
        cpu=profile.cpu,
        machine=profile.machine,
        firmware_arguments=find_firmware(Path(qemu_aarch64), code_override=aavmf).arguments(str(vars_file)),
        disk_container="qcow2",
    )
    machine = RegisteredMachine("t1", str(dirs.config()), str(dirs.runtime / "consoles" / "t1.log"), route)
    start_helpers.with_machine(machine, dry_run=False)
    return machine


def wrapper() -> Path:
    registry = read_registry()
    assert registry is not None
    path = Path(registry.helper_dir) / "qemu-system-x86_64"
    assert os.access(path, os.X_OK)
    return path


def another_machines_argv(dirs: Podman5Dirs) -> list[str]:
    """The same command line for a native machine `t2` of the same user."""
    return [element.replace("t1", "t2") for element in dirs.argv()[1:]]


def read_record(out: Path) -> tuple[int, list[str]]:
    deadline = time.monotonic() + 15
    while not out.exists() or not out.read_text().endswith("\n"):
        assert time.monotonic() < deadline, "the real qemu was never started"
        time.sleep(0.05)
    pid, *args = out.read_text().splitlines()
    return int(pid), args


def test_an_emulated_podman5_machine_runs_as_qemu_system_aarch64_under_podmans_pid(
    podman_home: Sandbox, dirs: Podman5Dirs, aavmf: str, qemu_aarch64: str, qemu_img: str
) -> None:
    machine = register_emulated(dirs, aavmf, qemu_aarch64)
    argv = dirs.argv()
    with qemu_peers(argv, qemu_img, dirs.home) as gvproxy:
        process = subprocess.Popen([str(wrapper()), *argv[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            connection, _ = gvproxy.accept()
            connection.close()
            wait_for_firmware(Path(machine.console_log), process)
            assert qmp(qmp_socket(argv), "query-target") == {"arch": "aarch64"}
            # exec, not a child: the pid podman waits on and qemu's pid file are one process
            assert Path(values_of(argv, "-pidfile")[0]).read_text().strip() == str(process.pid)
            assert os.readlink(f"/proc/{process.pid}/exe") == os.path.realpath(qemu_aarch64)
        finally:
            process.kill()
            process.wait(timeout=30)


def test_a_native_podman5_machine_gets_the_real_qemu_with_its_arguments_and_pid(
    podman_home: Sandbox, dirs: Podman5Dirs, real_qemu_dir: Path, aavmf: str, qemu_aarch64: str
) -> None:
    register_emulated(dirs, aavmf, qemu_aarch64)  # t1 is emulated; t2 is not
    out = podman_home.root / "record"
    install_recorder(real_qemu_dir, out)
    args = another_machines_argv(dirs)
    process = subprocess.Popen([str(wrapper()), *args])
    process.wait(timeout=30)
    assert read_record(out) == (process.pid, args)


def test_without_a_helper_dir_qemu_the_real_one_comes_from_path(
    podman_home: Sandbox, dirs: Podman5Dirs, aavmf: str, qemu_aarch64: str
) -> None:
    """podman's FindHelperBinary(qemu, searchPATH=true): after the helper dirs, $PATH."""
    qemu_x86 = require_tool("qemu-system-x86_64", debian="qemu-system-x86")
    register_emulated(dirs, aavmf, qemu_aarch64)
    # a pid file of a machine podman-emu did not convert, and a question only the x86 qemu answers
    args = ["-pidfile", str(dirs.runtime / "podman/t2_vm.pid"), "-machine", "help"]
    done = subprocess.run([str(wrapper()), *args], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "q35" in done.stdout.decode()  # x86's machine types: the real qemu-system-x86_64 answered
    assert os.path.exists(qemu_x86)


def test_without_podman_emu_an_emulated_machine_is_refused_and_a_native_one_handed_over(
    podman_home: Sandbox, dirs: Podman5Dirs, real_qemu_dir: Path, aavmf: str, qemu_aarch64: str
) -> None:
    register_emulated(dirs, aavmf, qemu_aarch64)
    registry = read_registry()
    assert registry is not None
    out = podman_home.root / "record"
    install_recorder(real_qemu_dir, out)
    orphan = podman_home.root / "qemu-system-x86_64"
    # The system python has no podman_emu: the import fails, as after `pip uninstall podman-emu`.
    source = start_helpers.qemu_wrapper_source(
        podman_home.state_dir / "start-helpers" / "registry.json", registry.next_helper_dirs, "/usr/bin/python3"
    )
    orphan.write_bytes(source)
    orphan.chmod(0o755)

    refused = subprocess.run([str(orphan), *dirs.argv()[1:]], capture_output=True, timeout=30, check=False)
    assert refused.returncode == 1 and not out.exists()  # never the x86 qemu on an aarch64 disk
    assert "machine 't1' is emulated" in refused.stderr.decode()

    args = another_machines_argv(dirs)
    process = subprocess.Popen([str(orphan), *args])
    process.wait(timeout=30)
    assert read_record(out) == (process.pid, args)


def test_an_argv_the_wrapper_cannot_rewrite_stops_the_start_with_the_reason(
    podman_home: Sandbox, dirs: Podman5Dirs, real_qemu_dir: Path, aavmf: str, qemu_aarch64: str
) -> None:
    register_emulated(dirs, aavmf, qemu_aarch64)
    out = podman_home.root / "record"
    install_recorder(real_qemu_dir, out)
    args = [element for element in dirs.argv()[1:] if not element.startswith("if=virtio")]
    args.remove("-drive")
    done = subprocess.run([str(wrapper()), *args], capture_output=True, timeout=30, check=False)
    assert done.returncode == 1 and not out.exists()
    message = done.stderr.decode()
    assert "cannot start machine 't1' emulated" in message and "podman-emu revert t1" in message


def test_a_damaged_registry_keeps_native_machines_starting_and_stops_a_machine_it_names(
    podman_home: Sandbox, dirs: Podman5Dirs, real_qemu_dir: Path, aavmf: str, qemu_aarch64: str
) -> None:
    register_emulated(dirs, aavmf, qemu_aarch64)
    path = wrapper()
    registry_file = podman_home.state_dir / "start-helpers" / "registry.json"
    registry_file.write_bytes(registry_file.read_bytes()[:-40])  # torn: no longer JSON
    out = podman_home.root / "record"
    install_recorder(real_qemu_dir, out)

    refused = subprocess.run([str(path), *dirs.argv()[1:]], capture_output=True, timeout=30, check=False)
    assert refused.returncode == 1 and not out.exists(), refused.stderr
    assert "damaged and names this machine" in refused.stderr.decode()

    args = another_machines_argv(dirs)
    process = subprocess.Popen([str(path), *args], stderr=subprocess.PIPE)
    _, said = process.communicate(timeout=30)
    assert read_record(out) == (process.pid, args)
    assert b"ignoring its start-helper registry" in said


def test_the_wrapper_exists_while_a_podman5_machine_is_registered_and_goes_with_it(
    podman_home: Sandbox, dirs: Podman5Dirs, aavmf: str, qemu_aarch64: str
) -> None:
    podman_home.install("podman-4.3-linux-amd64.json", "m4")
    m4 = RegisteredMachine("m4", str(podman_home.config("m4")), str(podman_home.state_dir / "consoles" / "m4.log"))
    start_helpers.with_machine(m4, dry_run=False)
    registry = read_registry()
    assert registry is not None
    wrapper_path = Path(registry.helper_dir) / "qemu-system-x86_64"
    assert not wrapper_path.exists()  # podman 4.x machines carry their qemu's path: no wrapper needed
    register_emulated(dirs, aavmf, qemu_aarch64)
    assert wrapper_path.exists()
    plan = start_helpers.without_machine(dirs.config(), dry_run=True)
    assert [(edit.role, edit.action) for edit in plan.edits if edit.role == "qemu wrapper"] == [
        ("qemu wrapper", "remove")
    ]
    assert wrapper_path.exists()  # a dry run
    start_helpers.without_machine(dirs.config(), dry_run=False)
    assert not wrapper_path.exists() and (Path(registry.helper_dir) / "gvproxy").exists()  # m4 is still emulated

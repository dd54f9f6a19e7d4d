"""A running or starting machine is never touched: convert and revert refuse and change nothing.

"Running" is shown with a real qemu-system-aarch64 listening on the machine's QMP socket (a
minimal paused machine, and the machine's own converted command line as podman would launch
it), with live pid files, and with `"Starting": true`. Negative controls show each signal is
what makes the difference: a stale socket file or a dead pid does not block.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from robustness.harness import (
    Sandbox,
    assert_clean_refusal,
    assert_success,
    diff_snapshots,
    image_path_of,
    invoke,
    needs_qemu,
    read_journal,
    run_cli,
    running_qemu,
    snapshot,
    wait_for,
)

FIXTURES = {
    "v2": "podman-4.9-linux-amd64.json",
    "v1": "podman-3.4-linux-amd64.json",
    "real-4.3": "podman-4.3-linux-amd64.json",
}


def qmp_path(config: Path) -> str:
    address = json.loads(config.read_bytes())["QMPMonitor"]["Address"]
    return address if isinstance(address, str) else address["Path"]


def pid_files(config: Path) -> list[str]:
    content = json.loads(config.read_bytes())
    return [content[key]["Path"] for key in ("PidFilePath", "VMPidFilePath") if content.get(key, {}).get("Path")]


@pytest.fixture
def machine(box: Sandbox, request: pytest.FixtureRequest) -> Iterator[tuple[Sandbox, Path]]:
    config = box.install(FIXTURES[getattr(request, "param", "v2")], name="busy")
    yield box, config


def refuses_untouched(box: Sandbox, *command: str, reason: str, evidence: str) -> None:
    """The command exits 1, says why (and names the evidence), and no byte changes anywhere."""
    before = snapshot(box.root)
    for result in (invoke(box, *command), run_cli(box, *command)):
        assert_clean_refusal(result, reason, evidence)
        changes = diff_snapshots(before, snapshot(box.root), strict=True, own_dirs=box.state_dir)
        assert not changes, f"refused `{' '.join(command)}` changed: {changes}"


@needs_qemu
@pytest.mark.parametrize("machine", sorted(FIXTURES), indirect=True)
def test_convert_refuses_while_qemu_serves_the_qmp_socket(machine, aarch64_disk: Path) -> None:
    box, config = machine
    socket_path = qmp_path(config)
    with running_qemu(socket_path):
        refuses_untouched(
            box, "convert", "busy", "--image", str(aarch64_disk), reason="is running", evidence=socket_path
        )
    # Control: the same command succeeds once qemu is gone (its socket file removed, as podman does).
    assert_success(invoke(box, "convert", "busy", "--image", str(aarch64_disk)))


def _runnable(argv: list[str]) -> list[str]:
    """The converted argv as podman would start it here: the ignition file podman creates at
    init must exist, and the shared directories too."""
    for index, element in enumerate(argv):
        if element.startswith("name=opt/com.coreos/config,file="):
            Path(element.split("file=", 1)[1]).write_text('{"ignition": {"version": "3.2.0"}}')
        if argv[index - 1] == "-virtfs":
            Path(element.split("path=", 1)[1].split(",")[0]).mkdir(parents=True, exist_ok=True)
    return argv


@needs_qemu
def test_revert_refuses_while_the_converted_machine_runs(machine, aarch64_disk: Path) -> None:
    """The emulated machine itself, launched from its converted CmdLine (pid file and all)."""
    box, config = machine
    assert_success(invoke(box, "convert", "busy", "--image", str(aarch64_disk)))
    converted = config.read_bytes()
    argv = _runnable(json.loads(converted)["CmdLine"])
    socket_path = qmp_path(config)
    vm_pid_file = json.loads(converted)["VMPidFilePath"]["Path"]
    with running_qemu(socket_path, argv) as pid:
        wait_for(lambda: os.path.exists(vm_pid_file), 10, "qemu's -pidfile")
        assert int(Path(vm_pid_file).read_text()) == pid
        refuses_untouched(box, "revert", "busy", reason="is running", evidence=socket_path)
        refuses_untouched(box, "revert", "busy", "--delete-disk", reason="is running", evidence=vm_pid_file)
        # A second convert is refused for the running machine before anything else.
        refuses_untouched(box, "convert", "busy", "--image", str(aarch64_disk), reason="is running", evidence="QMP")
    assert config.read_bytes() == converted
    os.unlink(vm_pid_file)  # qemu was killed; podman would remove its pid file on stop
    assert_success(invoke(box, "revert", "busy"))
    assert read_journal(box) is None


@pytest.mark.parametrize("which", ["PidFilePath", "VMPidFilePath"])
def test_a_live_pid_file_blocks(machine, aarch64_disk: Path, which: str) -> None:
    box, config = machine
    path = json.loads(config.read_bytes())[which]["Path"]
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        Path(path).write_text(f"{sleeper.pid}\n")
        refuses_untouched(box, "convert", "busy", "--image", str(aarch64_disk), reason="is running", evidence=path)
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
    # Control: the same pid file with a pid that has exited no longer blocks.
    assert_success(invoke(box, "convert", "busy", "--image", str(aarch64_disk)))


def test_a_live_pid_file_blocks_revert(machine, aarch64_disk: Path) -> None:
    box, config = machine
    assert_success(invoke(box, "convert", "busy", "--image", str(aarch64_disk)))
    path = json.loads(config.read_bytes())["VMPidFilePath"]["Path"]
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        Path(path).write_text(str(sleeper.pid))
        refuses_untouched(box, "revert", "busy", reason="is running", evidence=str(sleeper.pid))
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
    assert_success(invoke(box, "revert", "busy"))


def _set_starting(config: Path, value: bool) -> None:
    data = config.read_bytes()
    flag = b'"Starting": false' if value else b'"Starting": true'
    assert flag in data
    config.write_bytes(data.replace(flag, b'"Starting": true' if value else b'"Starting": false'))


def test_starting_true_blocks_convert_and_revert(machine, aarch64_disk: Path) -> None:
    box, config = machine
    _set_starting(config, True)
    refuses_untouched(
        box, "convert", "busy", "--image", str(aarch64_disk), reason="is starting", evidence='"Starting": true'
    )
    _set_starting(config, False)
    assert_success(invoke(box, "convert", "busy", "--image", str(aarch64_disk)))
    _set_starting(config, True)  # as podman writes it at `machine start`
    refuses_untouched(box, "revert", "busy", reason="is starting", evidence="Starting")


def test_a_stale_qmp_socket_does_not_block(machine, aarch64_disk: Path) -> None:
    """Control for the QMP check: a socket file nobody listens on (qemu was killed) is what
    podman itself treats as stopped (ECONNREFUSED)."""
    box, config = machine
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(qmp_path(config))
    assert os.path.exists(qmp_path(config))
    assert_success(invoke(box, "convert", "busy", "--image", str(aarch64_disk)))
    assert_success(invoke(box, "revert", "busy", "--delete-disk"))
    assert not os.path.exists(image_path_of(json.loads(config.read_bytes())).replace("x86_64", "aarch64"))

"""The real qemu-system-aarch64 accepts every command line podman-emu writes.

Launched the way podman launches it (fd 3 = the network socket, `-display none` appended) plus
`-S` so the guest never runs; "accepted" means qemu is still up after a few seconds and answers
on its QMP socket.
"""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from podman_emu.cli.app import app
from podman_emu.qemu.argv import iter_options, suboption
from testing.podman_home import Sandbox

pytestmark = pytest.mark.usefixtures("aavmf")


def qmp_status(path: str) -> str:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(5)
        client.connect(path)
        stream = client.makefile("rw")
        json.loads(stream.readline())  # greeting
        for command in ("qmp_capabilities", "query-status"):
            stream.write(json.dumps({"execute": command}) + "\n")
            stream.flush()
            reply = json.loads(stream.readline())
        return str(reply["return"]["status"])


def runnable_here(argv: list[str], podman_home: Sandbox) -> list[str]:
    """Host paths of a macOS fixture (/Users, /private) do not exist on this Linux host; their
    -virtfs shares are dropped, and the files podman would have created are created."""
    result = [argv[0]]
    for option in iter_options(argv):
        if option.name == "-virtfs" and option.value and not os.path.isdir(suboption(option.value, "path") or ""):
            continue
        if option.name == "-fw_cfg" and option.value and (ignition := suboption(option.value, "file")):
            Path(ignition).write_text('{"ignition": {"version": "3.2.0"}}')
        result += option.elements()
    return result


@pytest.mark.parametrize(
    "fixture",
    [
        "podman-4.3-linux-amd64.json",
        "podman-4.3-linux-amd64-odd-paths.json",
        "podman-4.9-linux-amd64.json",
        "podman-4.9-darwin-amd64.json",
        "podman-4.1-linux-amd64.json",
        "podman-3.4-darwin-amd64.json",
    ],
)
def test_real_qemu_accepts_the_converted_command(
    podman_home: Sandbox, blank_aarch64_disk: Path, fixture: str, tmp_path: Path
) -> None:
    config = podman_home.install(fixture, "m")
    result = CliRunner().invoke(app, ["convert", "m", "--image", str(blank_aarch64_disk)])
    assert result.exit_code == 0, result.stderr
    content = json.loads(config.read_bytes())
    argv = [*runnable_here(content["CmdLine"], podman_home), "-display", "none", "-S"]
    qmp = content["QMPMonitor"]["Address"]
    qmp_path = (qmp if isinstance(qmp, str) else qmp["Path"]).removeprefix("unix:")
    Path(qmp_path).parent.mkdir(parents=True, exist_ok=True)
    for element in argv:  # the odd-paths fixture shares directories that must exist
        if element.startswith("local,path="):
            Path(suboption(element, "path") or "").mkdir(parents=True, exist_ok=True)

    host_end, guest_end = socket.socketpair()
    os.set_inheritable(guest_end.fileno(), True)
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # fd 3 must be listed too: the child closes unlisted fds after preexec_fn has run.
        pass_fds=(guest_end.fileno(), 3),
        preexec_fn=lambda: os.dup2(guest_end.fileno(), 3),  # podman hands qemu the network as fd 3
    )
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        if process.poll() is not None:
            _, stderr = process.communicate(timeout=10)
            pytest.fail(f"qemu refused the command line: {stderr.decode(errors='replace')}")
        assert qmp_status(qmp_path) == "prelaunch"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)
        host_end.close()
        guest_end.close()

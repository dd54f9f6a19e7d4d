"""The qemu command line the real podman 5.4.2 builds at `podman machine start`, and the peers
qemu needs to run it outside podman: gvproxy's `-listen-qemu` socket, a virtiofsd per mount,
the ignition file, the disk.

tests/data/podman-5.4.2-linux-amd64-qemu-argv.txt is what the real podman 5.4.2 (Debian trixie)
passed to a `qemu-system-x86_64` wrapper found through `helper_binaries_dir = [DIR,
{append=true}]`, for a machine `t1` made by `podman machine init --image LOCAL.qcow2` (the
default `$HOME` volume) as user `tester`, UID 1000; the first line is the wrapper's own path.
fixtures/configs/podman-5.4.2-linux-amd64-qemu.json is that machine's config, as podman wrote it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from podman_emu.qemu.argv import canonical_name, iter_options, suboption
from testing.fixtures import FIXTURES
from testing.tools import unavailable

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
ARGV_FILE = DATA / "podman-5.4.2-linux-amd64-qemu-argv.txt"
CONFIG_FILE = FIXTURES / "podman-5.4.2-linux-amd64-qemu.json"
CAPTURED_HOME = "/home/tester"
CAPTURED_RUNTIME = "/run/user/1000"
# The C virtiofsd of Debian 12's qemu 7.2: a real vhost-user-fs backend. podman 5 runs the Rust
# one with other flags; qemu's side of the protocol is the same.
C_VIRTIOFSD = "/usr/lib/qemu/virtiofsd"


def relocate(text: str, home: str, runtime: str) -> str:
    return text.replace(CAPTURED_HOME, home).replace(CAPTURED_RUNTIME, runtime)


def captured_argv(home: str = CAPTURED_HOME, runtime: str = CAPTURED_RUNTIME) -> list[str]:
    return [relocate(line, home, runtime) for line in ARGV_FILE.read_text().splitlines()]


def captured_config(home: str, runtime: str) -> bytes:
    # Paths in this file are plain (no characters Go escapes), so a text replace keeps its format.
    return relocate(CONFIG_FILE.read_text(), home, runtime).encode()


def values_of(argv: list[str], name: str) -> list[str]:
    return [option.value or "" for option in iter_options(argv) if canonical_name(option.name) == name]


def virtio_disk(argv: list[str]) -> str:
    drives = values_of(argv, "-drive")
    return next(suboption(drive, "file") or "" for drive in drives if suboption(drive, "if") == "virtio")


def qmp(path: str, command: str, arguments: dict[str, str] | None = None) -> object:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(5)
        client.connect(path)
        stream = client.makefile("rw")
        json.loads(stream.readline())
        for request in ({"execute": "qmp_capabilities"}, {"execute": command, "arguments": arguments or {}}):
            stream.write(json.dumps(request) + "\n")
            stream.flush()
            reply = json.loads(stream.readline())
        return reply["return"]


def qmp_socket(argv: list[str]) -> str:
    return values_of(argv, "-qmp")[0].removeprefix("unix:").split(",")[0]


@dataclass(frozen=True)
class Podman5Dirs:
    """A home and a runtime dir laid out as podman 5 lays them out; short, for unix sockets."""

    home: Path
    runtime: Path

    def argv(self) -> list[str]:
        return captured_argv(str(self.home), str(self.runtime))

    def config(self) -> Path:
        return self.home / ".config/containers/podman/machine/qemu/t1.json"


@contextlib.contextmanager
def podman5_dirs() -> Iterator[Podman5Dirs]:
    root = Path("/tmp") / f"p5-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    dirs = Podman5Dirs(root / "h", root / "r")
    (dirs.runtime / "podman").mkdir(parents=True)
    (dirs.home / ".config/containers/podman/machine/qemu").mkdir(parents=True)
    (dirs.home / ".local/share/containers/podman/machine/qemu").mkdir(parents=True)
    dirs.config().write_bytes(captured_config(str(dirs.home), str(dirs.runtime)))
    try:
        yield dirs
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start_virtiofsd(socket_path: str, shared: Path) -> subprocess.Popen[bytes]:
    if not os.path.exists(C_VIRTIOFSD):
        unavailable(f"{C_VIRTIOFSD} is missing (Debian/Ubuntu: apt-get install qemu-system-common)")
    if os.geteuid() != 0:
        unavailable("the C virtiofsd needs root for its sandbox")
    process = subprocess.Popen(
        [C_VIRTIOFSD, f"--socket-path={socket_path}", "-o", f"source={shared}", "-o", "cache=none"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while not os.path.exists(socket_path):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"virtiofsd did not start: {process.communicate()[1].decode(errors='replace')}")
        time.sleep(0.05)
    return process


@contextlib.contextmanager
def qemu_peers(argv: list[str], qemu_img: str, shared: Path) -> Iterator[socket.socket]:
    """What podman has made by the time it runs qemu: the disk, the ignition file, gvproxy's
    listening socket (yielded: qemu dials it) and a virtiofsd serving each vhost-user-fs socket."""
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", virtio_disk(argv), "1G"], check=True, timeout=60)
    ignition = suboption(values_of(argv, "-fw_cfg")[0], "file") or ""
    Path(ignition).write_text('{"ignition": {"version": "3.4.0"}}')
    gvproxy = socket.socket(socket.AF_UNIX)
    gvproxy.bind(suboption(values_of(argv, "-netdev")[0], "addr.path") or "")
    gvproxy.listen(1)
    gvproxy.settimeout(20)
    daemons = [
        _start_virtiofsd(suboption(value, "path") or "", shared)
        for value in values_of(argv, "-chardev")
        if (suboption(value, "id") or "").startswith("virtiofschar")
    ]
    try:
        yield gvproxy
    finally:
        for daemon in daemons:
            daemon.kill()
            daemon.wait(timeout=30)
        gvproxy.close()


def wait_for_firmware(console: Path, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while b"UEFI" not in (console.read_bytes() if console.exists() else b""):
        if process.poll() is not None:
            raise AssertionError(
                f"qemu exited {process.returncode}: {process.communicate()[1].decode(errors='replace')}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"no firmware output on the PL011 console within {timeout_s:.0f} s")
        time.sleep(0.2)

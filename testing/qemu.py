"""Real qemu-system-aarch64 processes and disks for tests that need qemu itself."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

QEMU_AARCH64 = shutil.which("qemu-system-aarch64")
QEMU_IMG = shutil.which("qemu-img")


def make_aarch64_disk(directory: Path) -> Path:
    """A small qcow2 (no partitions, so the arch check only warns that it cannot tell)."""
    assert QEMU_IMG is not None
    path = directory / "blank-aarch64.qcow2"
    subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", str(path), "1G"], check=True, timeout=60)
    return path


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def qmp_accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def launch_like_podman(
    command: list[str], log: IO[bytes]
) -> tuple[subprocess.Popen[bytes], socket.socket, socket.socket]:
    """Start qemu the way podman 4.x does: fd 3 is one end of the network socket (gvproxy holds
    the other), stdin closed, in a session of its own. Returns qemu and both socket ends, which
    the caller closes once qemu is gone."""
    host_end, guest_end = socket.socketpair()
    os.set_inheritable(guest_end.fileno(), True)
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        # fd 3 must be listed too: the child closes unlisted fds after preexec_fn has run.
        pass_fds=(guest_end.fileno(), 3),
        preexec_fn=lambda: os.dup2(guest_end.fileno(), 3),
        start_new_session=True,
    )
    return process, host_end, guest_end


@contextlib.contextmanager
def running_qemu(qmp_socket: str, argv: list[str] | None = None) -> Iterator[int]:
    """A real qemu-system-aarch64, paused (-S), serving QMP on `qmp_socket`. Yields its pid.
    Without `argv` a minimal machine; with it, the given command line, launched the way podman
    launches it (fd 3 = the network socket, `-display none` appended)."""
    assert QEMU_AARCH64 is not None
    command = argv or [
        QEMU_AARCH64,
        "-M",
        "virt",
        "-nodefaults",
        "-qmp",
        f"unix:{qmp_socket},server=on,wait=off",
    ]
    command = [*command, "-S", "-display", "none"]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below, after qemu is gone
    process, host_end, guest_end = launch_like_podman(command, log)
    try:
        try:
            wait_for(
                lambda: process.poll() is not None or (os.path.exists(qmp_socket) and qmp_accepts(qmp_socket)),
                30,
                "qemu's QMP socket",
            )
        except AssertionError:
            log.seek(0)
            raise AssertionError(f"qemu did not come up: {log.read().decode(errors='replace')}") from None
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"qemu exited at once ({process.returncode}): {log.read().decode(errors='replace')}")
        yield process.pid
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        log.close()
        host_end.close()
        guest_end.close()
        with contextlib.suppress(OSError):
            os.unlink(qmp_socket)
